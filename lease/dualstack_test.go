package lease

import (
	"context"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// flannel's dual-stack hosts name their key "<v4>-<len>&<v6>-<len>" and put
// PublicIPv6 in the value.
const (
	dualKey   = "100.96.3.0-24&fd00:1:2:3::-64"
	dualValue = `{"PublicIP":"192.0.2.3","PublicIPv6":"2001:db8::3","BackendType":"udp"}`
)

// TestDualStackRoute: a dual-stack key is a route to its IPv4 subnet, and its
// deletion removes that route.
func TestDualStackRoute(t *testing.T) {
	e := startEtcd(t)
	r := openRegistry(t, testOptions(t, e.ClientURL()))
	mustPut(t, r.cli, r.subnetsDir()+dualKey, dualValue, onLease(t, r))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ch := r.WatchRoutes(ctx, parsedConfig(t, testConfig))
	wantBatch(t, ch, routes(Add, "100.96.3.0/24", "192.0.2.3"))
	if n := r.Malformed(); n != 0 {
		t.Errorf("Malformed() = %d, want 0", n)
	}
	if _, err := r.cli.Delete(t.Context(), r.subnetsDir()+dualKey); err != nil {
		t.Fatal(err)
	}
	wantBatch(t, ch, routes(Remove, "100.96.3.0/24", "192.0.2.3"))
}

// TestDualStackTaken: the IPv4 subnet of a dual-stack key is never
// allocated, neither as a free pick nor from the subnet file.
func TestDualStackTaken(t *testing.T) {
	e := startEtcd(t)
	r := openRegistry(t, testOptions(t, e.ClientURL()))
	mustPut(t, r.cli, r.subnetsDir()+dualKey, dualValue, onLease(t, r))

	only := parsedConfig(t, `{"Network":"100.96.0.0/16","SubnetMin":"100.96.3.0","SubnetMax":"100.96.3.0"}`)
	if l, err := r.Acquire(t.Context(), only, ip("192.0.2.1"), pfx("100.96.3.0/24")); err == nil || !strings.Contains(err.Error(), "no free") {
		t.Errorf("Acquire with only the dual-stack host's subnet in range: %+v, %v; want a 'no free subnet' error", l, err)
	}
	wide := parsedConfig(t, `{"Network":"100.96.0.0/16","SubnetMin":"100.96.3.0","SubnetMax":"100.96.4.0"}`)
	l, err := r.Acquire(t.Context(), wide, ip("192.0.2.1"), pfx("100.96.3.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	if l.Subnet != pfx("100.96.4.0/24") || l.Origin != OriginRandom {
		t.Errorf("Acquire gave %v (%v), want 100.96.4.0/24 (new)", l.Subnet, l.Origin)
	}
	// The dual-stack host restarting as weft takes its subnet back.
	back, err := r.Acquire(t.Context(), wide, ip("192.0.2.3"), pfx("100.96.4.0/24"))
	if err != nil || back.Subnet != pfx("100.96.3.0/24") || back.Origin != OriginPublicIP {
		t.Errorf("the dual-stack host's own Acquire: %+v, %v; want 100.96.3.0/24 reused by PublicIP", back, err)
	}
}

// onLease puts a key on a long etcd lease, as flanneld keeps its own.
func onLease(t *testing.T, r *Registry) clientv3.OpOption {
	return clientv3.WithLease(mustGrant(t, r.cli, 600))
}
