package lease

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestKeepWatchesOwnKey: with a lease far from its renewal, Keep still reacts
// to its key at once: deleted, or gone with a revoked etcd lease, the subnet
// is still free and Keep puts the key back; taken over by another host, Keep
// returns ErrLeaseLost. The test waits on those events, not on a clock.
func TestKeepWatchesOwnKey(t *testing.T) {
	e := startEtcd(t)
	opts := testOptions(t, e.ClientURL())
	opts.LeaseTTL, opts.RenewMargin = 10*time.Minute, time.Minute // no renewal due in this test
	r := openRegistry(t, opts)
	mustPut(t, r.cli, r.configKey(), testConfig)
	cfg, err := r.Config(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	l, err := r.Acquire(t.Context(), cfg, ip("192.0.2.1"), netip.Prefix{})
	if err != nil {
		t.Fatal(err)
	}
	first := l.id

	// The test's own watch on the key, from the acquisition on: each step
	// waits for the event that shows Keep's reaction.
	get, err := r.cli.Get(t.Context(), l.key)
	if err != nil {
		t.Fatal(err)
	}
	wctx, stopWatch := context.WithCancel(t.Context())
	defer stopWatch()
	events := r.cli.Watch(wctx, l.key, clientv3.WithRev(get.Header.Revision+1))
	nextEvent := func(what string) *clientv3.Event {
		t.Helper()
		select {
		case resp := <-events:
			if err := resp.Err(); err != nil || len(resp.Events) != 1 {
				t.Fatalf("%s: watch response %+v, %v", what, resp.Events, err)
			}
			return resp.Events[0]
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: nothing within 20s", what)
		}
		return nil
	}
	ours := func(ev *clientv3.Event) (clientv3.LeaseID, bool) {
		v, err := parseLeaseValue(ev.Kv.Value)
		return clientv3.LeaseID(ev.Kv.Lease), ev.Type == mvccpb.PUT && err == nil && v == l.PublicIP
	}

	done := make(chan error, 1)
	go func() { done <- l.Keep(t.Context()) }()

	// Deleted by an operator: put back on the same etcd lease.
	if _, err := r.cli.Delete(t.Context(), l.key); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent("the delete"); ev.Type != mvccpb.DELETE {
		t.Fatalf("first event %v, want the delete", ev.Type)
	}
	if id, ok := ours(nextEvent("re-creation after the delete")); !ok || id != first {
		t.Fatalf("after the delete: key on lease %x (ours %v), want ours on %x", id, ok, first)
	}

	// The etcd lease revoked (as if expired): etcd deletes the key; Keep puts
	// it back on a new etcd lease.
	if _, err := r.cli.Revoke(t.Context(), first); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent("the revocation"); ev.Type != mvccpb.DELETE {
		t.Fatalf("event %v, want the delete by the revocation", ev.Type)
	}
	if id, ok := ours(nextEvent("re-creation after the revocation")); !ok || id == first || id == 0 {
		t.Fatalf("after the revocation: key on lease %x (ours %v), want ours on a new lease", id, ok)
	}

	// Taken over by another host: Keep gives the subnet up.
	mustPut(t, r.cli, l.key, leaseValue(ip("192.0.2.66")), clientv3.WithLease(mustGrant(t, r.cli, 600)))
	select {
	case err := <-done:
		if !errors.Is(err, ErrLeaseLost) {
			t.Errorf("Keep returned %v, want ErrLeaseLost", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Keep did not notice within 20s that another host took the subnet")
	}
	resp, err := r.cli.Get(t.Context(), l.key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("key after the take-over: %v, %v", resp, err)
	}
	if v, _ := parseLeaseValue(resp.Kvs[0].Value); v != ip("192.0.2.66") {
		t.Errorf("the other host's key now says %v: Keep must not write over it", v)
	}
}
