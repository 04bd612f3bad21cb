package lease

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestFlannelRegistry loads what a real flanneld left in etcd
// (testdata/flannel/etcd-keys.txt) and runs weft against it: the config, the
// routes, a host coming back as weft, a new host, and the subnet file.
func TestFlannelRegistry(t *testing.T) {
	kv := flannelKeys(t)
	h1env := flannelFile(t, "subnet-h1.env")
	for _, leased := range []bool{true, false} {
		t.Run(fmt.Sprintf("leased=%v", leased), func(t *testing.T) {
			e := startEtcd(t)
			r := openRegistry(t, testOptions(t, e.ClientURL()))
			// flanneld keeps its keys on etcd leases; loaded without one,
			// they read as an operator's reservations.
			id := mustGrant(t, r.cli, 3600)
			for k, v := range kv {
				var o []clientv3.OpOption
				if leased && strings.HasPrefix(k, r.subnetsDir()) {
					o = append(o, clientv3.WithLease(id))
				}
				mustPut(t, r.cli, k, v, o...)
			}

			cfg, err := r.WaitConfig(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Network != pfx("100.96.0.0/16") || cfg.SubnetLen != 24 || cfg.Port != 8285 || cfg.SubnetMin != ip("100.96.1.0") || cfg.SubnetMax != ip("100.96.255.0") {
				t.Errorf("flanneld's config read as %+v", cfg)
			}

			ch := r.WatchRoutes(t.Context(), cfg)
			wantBatch(t, ch, routes(Add, "100.96.1.0/24", "192.0.2.1", Add, "100.96.2.0/24", "192.0.2.2"))
			if n := r.Malformed(); n != 0 {
				t.Errorf("%d of flanneld's keys counted malformed", n)
			}

			// h1 comes back as weft, with flanneld's subnet file.
			prev, err := PreviousSubnet(h1env)
			if err != nil {
				t.Fatal(err)
			}
			l1, err := r.Acquire(t.Context(), cfg, ip("192.0.2.1"), prev)
			if err != nil {
				t.Fatal(err)
			}
			wantOrigin := OriginReservation
			if leased {
				wantOrigin = OriginPublicIP
			}
			if l1.Subnet != pfx("100.96.1.0/24") || l1.Origin != wantOrigin {
				t.Errorf("h1 got %v (%v), want 100.96.1.0/24 (%v)", l1.Subnet, l1.Origin, wantOrigin)
			}

			// A new host whose stale subnet file names h2's subnet.
			l3, err := r.Acquire(t.Context(), cfg, ip("192.0.2.3"), pfx("100.96.2.0/24"))
			if err != nil {
				t.Fatal(err)
			}
			if l3.Origin != OriginRandom || l3.Subnet == pfx("100.96.1.0/24") || l3.Subnet == pfx("100.96.2.0/24") {
				t.Errorf("h3 got %v (%v)", l3.Subnet, l3.Origin)
			}
			// h1 rewriting its own key changes no route: the next batch is h3.
			wantBatch(t, ch, []Route{{Op: Add, Subnet: l3.Subnet, PublicIP: ip("192.0.2.3")}})

			// h1's subnet file, as flanneld wrote it.
			path := filepath.Join(t.TempDir(), "subnet.env")
			if err := WriteSubnetFile(path, SubnetFile{Network: cfg.Network, Subnet: l1.Subnet, MTU: 1472}); err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(path)
			want, _ := os.ReadFile(h1env)
			if !bytes.Equal(got, want) {
				t.Errorf("subnet file %q, flanneld's %q", got, want)
			}
		})
	}
}
