package lease

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestThreeMemberCluster: a client given all three endpoints keeps renewing
// its lease and watching the subnets after the leader is stopped.
func TestThreeMemberCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("three etcd members and an election: skipped with -short")
	}
	const n = 3
	var peers []string
	for i := range n {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		peers = append(peers, fmt.Sprintf("m%d=http://127.0.0.1:%d", i, port))
	}
	members := make([]*Etcd, n)
	errs := make([]error, n)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			// Each member waits for a quorum, so all start together.
			members[i], errs[i] = StartEtcd(ctx, EtcdOptions{
				Dir:            filepath.Join(t.TempDir(), "etcd"),
				ClientURL:      "http://127.0.0.1:0",
				PeerURL:        strings.SplitN(peers[i], "=", 2)[1],
				Logger:         testLogger(t),
				name:           fmt.Sprintf("m%d", i),
				initialCluster: strings.Join(peers, ","),
				tweak:          fastEtcd,
			})
		})
	}
	wg.Wait()
	var endpoints []string
	for i, m := range members {
		if errs[i] != nil {
			t.Fatalf("member %d: %v", i, errs[i])
		}
		t.Cleanup(m.Close)
		endpoints = append(endpoints, m.ClientURL())
	}

	opts := testOptions(t, endpoints...)
	opts.LeaseTTL, opts.RenewMargin = 3*time.Second, 2*time.Second
	opts.ProbeInterval = 200 * time.Millisecond
	r := openRegistry(t, opts)
	mustPut(t, r.cli, r.configKey(), testConfig)
	cfg, err := r.WaitConfig(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	l, err := r.Acquire(t.Context(), cfg, ip("192.0.2.1"), netip.Prefix{})
	if err != nil {
		t.Fatal(err)
	}
	id := l.id // Keep owns l.id from here on
	kctx, stopKeep := context.WithCancel(t.Context())
	kept := make(chan error, 1)
	go func() { kept <- l.Keep(kctx) }()
	defer func() { stopKeep(); <-kept }()
	ch := r.WatchRoutes(t.Context(), cfg)
	wantBatch(t, ch, []Route{{Op: Add, Subnet: l.Subnet, PublicIP: l.PublicIP}})

	// Stop the leader: the hardest member to lose.
	leader := -1
	for i, m := range members {
		if m.e.Server.Leader() == m.e.Server.MemberID() {
			leader = i
		}
	}
	if leader < 0 {
		t.Fatal("no member is the leader")
	}
	t.Logf("stopping the leader, m%d", leader)
	members[leader].Close() // waits for our open watch stream to be cut
	stopped, expiry := time.Now(), l.Expiry()

	// The watch goes on, from another member.
	mustPut(t, r.cli, r.subnetKey(pfx("100.96.200.0/24")), leaseValue(ip("192.0.2.200")))
	wantBatch(t, ch, routes(Add, "100.96.200.0/24", "192.0.2.200"))

	// Renewal goes on: the lease outlives a full TTL after the stop.
	eventually(t, "a renewal after the leader stopped", func() bool {
		return l.Expiry().After(expiry) && time.Since(stopped) > opts.LeaseTTL
	})
	resp, err := r.cli.Get(t.Context(), l.key)
	if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].Lease != int64(id) {
		t.Fatalf("lease key after the leader stopped: %v, %v", resp, err)
	}
	if !r.Connected() {
		t.Error("not Connected with two of three members up")
	}
}
