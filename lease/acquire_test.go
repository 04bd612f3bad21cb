package lease

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestAcquire(t *testing.T) {
	e := startEtcd(t)
	const me = "192.0.2.1"
	type seed struct {
		subnet, publicIP string
		reservation      bool   // no etcd lease
		value            string // instead of weft's value for publicIP
	}
	for i, tc := range []struct {
		name       string
		seeds      []seed
		previous   string // the subnet file's subnet
		want       string // "" = any free subnet but the seeds'
		wantOrigin Origin
		gone       []string // seeds that must have been deleted
	}{
		{name: "empty registry", wantOrigin: OriginRandom},
		{name: "our lease by PublicIP", seeds: []seed{{subnet: "100.96.5.0/24", publicIP: me}, {subnet: "100.96.6.0/24", publicIP: "192.0.2.2"}},
			previous: "100.96.7.0/24", want: "100.96.5.0/24", wantOrigin: OriginPublicIP},
		{name: "flanneld's lease by PublicIP", seeds: []seed{{subnet: "100.96.5.0/24", value: `{"PublicIP":"192.0.2.1","PublicIPv6":null}`}},
			want: "100.96.5.0/24", wantOrigin: OriginPublicIP},
		{name: "subnet file, free", previous: "100.96.7.0/24", want: "100.96.7.0/24", wantOrigin: OriginSubnetFile},
		{name: "subnet file as written (first address)", previous: "100.96.7.1/24", want: "100.96.7.0/24", wantOrigin: OriginSubnetFile},
		{name: "subnet file names a taken subnet", seeds: []seed{{subnet: "100.96.7.0/24", publicIP: "192.0.2.9"}},
			previous: "100.96.7.0/24", wantOrigin: OriginRandom},
		{name: "subnet file names a reserved subnet", seeds: []seed{{subnet: "100.96.7.0/24", publicIP: "192.0.2.9", reservation: true}},
			previous: "100.96.7.0/24", wantOrigin: OriginRandom},
		{name: "subnet file names an overlapping reservation", seeds: []seed{{subnet: "100.96.6.0/23", publicIP: "192.0.2.9", reservation: true}},
			previous: "100.96.7.0/24", wantOrigin: OriginRandom},
		{name: "subnet file names a subnet with a bad value", seeds: []seed{{subnet: "100.96.7.0/24", value: "garbage"}},
			previous: "100.96.7.0/24", wantOrigin: OriginRandom},
		{name: "subnet file of another length", previous: "100.96.7.0/25", wantOrigin: OriginRandom},
		{name: "subnet file outside the network", previous: "10.7.0.0/24", wantOrigin: OriginRandom},
		{name: "subnet file names the network's first subnet", previous: "100.96.0.0/24", wantOrigin: OriginRandom},
		{name: "our reservation", seeds: []seed{{subnet: "100.96.9.0/24", publicIP: me, reservation: true}},
			previous: "100.96.7.0/24", want: "100.96.9.0/24", wantOrigin: OriginReservation},
		{name: "our old lease outside the network is deleted", seeds: []seed{{subnet: "10.1.0.0/24", publicIP: me}},
			wantOrigin: OriginRandom, gone: []string{"10.1.0.0/24"}},
		{name: "our reservation outside the network is left alone", seeds: []seed{{subnet: "10.1.0.0/24", publicIP: me, reservation: true}},
			wantOrigin: OriginRandom},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := testOptions(t, e.ClientURL())
			opts.Prefix = fmt.Sprintf("/acquire/%d", i)
			r := openRegistry(t, opts)
			mustPut(t, r.cli, r.configKey(), testConfig)
			for _, s := range tc.seeds {
				v := s.value
				if v == "" {
					v = leaseValue(ip(s.publicIP))
				}
				var o []clientv3.OpOption
				if !s.reservation {
					o = append(o, clientv3.WithLease(mustGrant(t, r.cli, 3600)))
				}
				mustPut(t, r.cli, r.subnetKey(pfx(s.subnet)), v, o...)
			}
			cfg, err := r.Config(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			var prev netip.Prefix
			if tc.previous != "" {
				prev = pfx(tc.previous)
			}

			l, err := r.Acquire(t.Context(), cfg, ip(me), prev)
			if err != nil {
				t.Fatalf("Acquire: %v", err)
			}

			if l.Origin != tc.wantOrigin {
				t.Errorf("origin %v, want %v", l.Origin, tc.wantOrigin)
			}
			if tc.want != "" && l.Subnet != pfx(tc.want) {
				t.Errorf("subnet %v, want %s", l.Subnet, tc.want)
			}
			if !cfg.Fits(l.Subnet) {
				t.Errorf("subnet %v does not fit %+v", l.Subnet, cfg)
			}
			for _, s := range tc.seeds {
				if tc.want == "" && pfx(s.subnet).Overlaps(l.Subnet) {
					t.Errorf("got %v, which seed %s already holds", l.Subnet, s.subnet)
				}
			}
			resp, err := r.cli.Get(t.Context(), r.subnetKey(l.Subnet))
			if err != nil || len(resp.Kvs) != 1 {
				t.Fatalf("get our key: %v, %d keys", err, len(resp.Kvs))
			}
			kv := resp.Kvs[0]
			if got, err := parseLeaseValue(kv.Value); err != nil || got != ip(me) {
				t.Errorf("our key holds %s", kv.Value)
			}
			if l.Origin == OriginReservation {
				if kv.Lease != 0 || !l.Expiry().IsZero() {
					t.Errorf("reservation got etcd lease %x, expiry %v", kv.Lease, l.Expiry())
				}
				if string(kv.Value) != leaseValue(ip(me)) || kv.Version != 1 {
					t.Errorf("reservation was rewritten: %s, version %d", kv.Value, kv.Version)
				}
			} else {
				if string(kv.Value) != leaseValue(ip(me)) {
					t.Errorf("our key holds %s, want weft's value", kv.Value)
				}
				ttl, err := r.cli.TimeToLive(t.Context(), clientv3.LeaseID(kv.Lease))
				if err != nil || ttl.TTL < 23*3600 || ttl.GrantedTTL != 24*3600 {
					t.Errorf("our key's etcd lease: %+v, %v; want a 24h TTL", ttl, err)
				}
				if d := time.Until(l.Expiry()); d < 23*time.Hour || d > 24*time.Hour {
					t.Errorf("expiry in %v, want about 24h", d)
				}
			}
			for _, s := range tc.seeds {
				resp, err := r.cli.Get(t.Context(), r.subnetKey(pfx(s.subnet)))
				if err != nil {
					t.Fatal(err)
				}
				deleted := len(resp.Kvs) == 0
				wantDeleted := false
				for _, g := range tc.gone {
					wantDeleted = wantDeleted || g == s.subnet
				}
				if deleted != wantDeleted {
					t.Errorf("seed %s deleted = %v, want %v", s.subnet, deleted, wantDeleted)
				}
				if !deleted && s.reservation && resp.Kvs[0].Version != 1 {
					t.Errorf("reservation %s was written to", s.subnet)
				}
			}
		})
	}
}

// TestAcquireRace: hosts racing for one subnet. Exactly one wins, nobody's
// key is overwritten, and the losers pick again.
func TestAcquireRace(t *testing.T) {
	e := startEtcd(t)
	opts := testOptions(t, e.ClientURL())
	r := openRegistry(t, opts)

	t.Run("one key", func(t *testing.T) {
		key := r.subnetKey(pfx("100.96.42.0/24"))
		const n = 16
		var wg sync.WaitGroup
		won := make([]bool, n)
		for i := range n {
			wg.Go(func() {
				ok, err := r.putIfAbsent(t.Context(), key, ip(fmt.Sprintf("192.0.2.%d", i+1)), 0)
				if err != nil {
					t.Error(err)
				}
				won[i] = ok
			})
		}
		wg.Wait()
		winner := -1
		for i, ok := range won {
			if ok {
				if winner >= 0 {
					t.Fatalf("hosts %d and %d both created %s", winner, i, key)
				}
				winner = i
			}
		}
		if winner < 0 {
			t.Fatal("nobody created the key")
		}
		resp, err := r.cli.Get(t.Context(), key)
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatal(err)
		}
		if got, _ := parseLeaseValue(resp.Kvs[0].Value); got != ip(fmt.Sprintf("192.0.2.%d", winner+1)) || resp.Kvs[0].Version != 1 {
			t.Errorf("key holds %s (version %d), the winner was 192.0.2.%d", resp.Kvs[0].Value, resp.Kvs[0].Version, winner+1)
		}
	})

	t.Run("hosts with the same subnet file", func(t *testing.T) {
		// A /24 of /28s: 15 usable subnets for 8 hosts, so random picks
		// collide too.
		ropts := testOptions(t, e.ClientURL())
		ropts.Prefix = "/race"
		r := openRegistry(t, ropts)
		mustPut(t, r.cli, r.configKey(), `{"Network":"100.96.0.0/24","SubnetLen":28}`)
		cfg, err := r.Config(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		const n = 8
		leases := make([]*Lease, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				l, err := r.Acquire(t.Context(), cfg, ip(fmt.Sprintf("192.0.2.%d", i+1)), pfx("100.96.0.48/28"))
				if err != nil {
					t.Error(err)
				}
				leases[i] = l
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		holders := map[netip.Prefix]netip.Addr{}
		fromFile := 0
		for _, l := range leases {
			if other, dup := holders[l.Subnet]; dup {
				t.Errorf("%v given to both %v and %v", l.Subnet, other, l.PublicIP)
			}
			holders[l.Subnet] = l.PublicIP
			if l.Origin == OriginSubnetFile {
				fromFile++
				if l.Subnet != pfx("100.96.0.48/28") {
					t.Errorf("%v from the subnet file", l.Subnet)
				}
			}
		}
		if fromFile != 1 {
			t.Errorf("%d hosts got the subnet file's subnet, want exactly 1", fromFile)
		}
		entries, _, err := r.list(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != n {
			t.Errorf("%d keys in etcd, want %d", len(entries), n)
		}
		for _, en := range entries {
			if holders[en.subnet] != en.publicIP {
				t.Errorf("key %s holds %v, but Acquire gave it to %v", en.key, en.publicIP, holders[en.subnet])
			}
		}
	})
}

func TestAcquireFull(t *testing.T) {
	e := startEtcd(t)
	r := openRegistry(t, testOptions(t, e.ClientURL()))
	mustPut(t, r.cli, r.configKey(), `{"Network":"100.96.0.0/28"}`) // /30s: 3 usable
	cfg, err := r.Config(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := r.Acquire(t.Context(), cfg, ip(fmt.Sprintf("192.0.2.%d", i+1)), netip.Prefix{}); err != nil {
			t.Fatal(err)
		}
	}
	if l, err := r.Acquire(t.Context(), cfg, ip("192.0.2.99"), netip.Prefix{}); err == nil || !strings.Contains(err.Error(), "no free") {
		t.Errorf("fourth host got %+v, %v; want a 'no free subnet' error", l, err)
	}
	// A host that already holds a lease still gets it back.
	if l, err := r.Acquire(t.Context(), cfg, ip("192.0.2.2"), netip.Prefix{}); err != nil || l.Origin != OriginPublicIP {
		t.Errorf("restarted host: %+v, %v", l, err)
	}
}

// TestKeep renews a short lease well past its TTL, then stops without
// revoking it.
func TestKeep(t *testing.T) {
	e := startEtcd(t)
	opts := testOptions(t, e.ClientURL())
	opts.LeaseTTL, opts.RenewMargin = 3*time.Second, 2*time.Second // renew about every second
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
	acquired, first := time.Now(), l.Expiry()
	id := l.id

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- l.Keep(ctx) }()

	// Still held a second after the original TTL ran out.
	eventually(t, "the lease to outlive its first TTL", func() bool {
		return time.Since(acquired) > opts.LeaseTTL+time.Second
	})
	if !l.Expiry().After(first.Add(time.Second)) {
		t.Errorf("expiry %v, first expiry %v: not renewed", l.Expiry(), first)
	}
	resp, err := r.cli.Get(t.Context(), l.key)
	if err != nil || len(resp.Kvs) != 1 || clientv3.LeaseID(resp.Kvs[0].Lease) != id {
		t.Fatalf("key after renewals: %v, %v", resp, err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Keep returned %v after ctx was done, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Keep did not return after ctx was done")
	}
	ttl, err := r.cli.TimeToLive(t.Context(), id)
	if err != nil || ttl.TTL <= 0 {
		t.Errorf("lease after Keep stopped: %+v, %v; want it left to run out, not revoked", ttl, err)
	}
}

// TestKeepRecovers: the key deleted or the lease expired (revoked here, which
// etcd treats the same) while the subnet is still free: Keep puts it back.
// The subnet taken by someone else: Keep reports ErrLeaseLost.
func TestKeepRecovers(t *testing.T) {
	e := startEtcd(t)
	opts := testOptions(t, e.ClientURL())
	opts.LeaseTTL, opts.RenewMargin = 3*time.Second, 2*time.Second
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
	done := make(chan error, 1)
	go func() { done <- l.Keep(t.Context()) }()

	ourKey := func() (clientv3.LeaseID, bool) {
		resp, err := r.cli.Get(t.Context(), l.key)
		if err != nil || len(resp.Kvs) == 0 {
			return 0, false
		}
		v, _ := parseLeaseValue(resp.Kvs[0].Value)
		return clientv3.LeaseID(resp.Kvs[0].Lease), v == l.PublicIP
	}

	if _, err := r.cli.Delete(t.Context(), l.key); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the deleted key to be re-created", func() bool { _, ok := ourKey(); return ok })

	old, _ := ourKey()
	if _, err := r.cli.Revoke(t.Context(), old); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the key to be re-created on a new lease", func() bool {
		id, ok := ourKey()
		return ok && id != old && id != 0
	})

	mustPut(t, r.cli, l.key, leaseValue(ip("192.0.2.66")), clientv3.WithLease(mustGrant(t, r.cli, 60)))
	select {
	case err := <-done:
		if !errors.Is(err, ErrLeaseLost) {
			t.Errorf("Keep returned %v, want ErrLeaseLost", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Keep did not notice the subnet was taken")
	}
}

func TestReservationKeep(t *testing.T) {
	e := startEtcd(t)
	r := openRegistry(t, testOptions(t, e.ClientURL()))
	mustPut(t, r.cli, r.configKey(), testConfig)
	mustPut(t, r.cli, r.subnetKey(pfx("100.96.9.0/24")), `{"PublicIP":"192.0.2.1","PublicIPv6":null}`)
	cfg, err := r.Config(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	l, err := r.Acquire(t.Context(), cfg, ip("192.0.2.1"), netip.Prefix{})
	if err != nil || l.Origin != OriginReservation {
		t.Fatalf("Acquire: %+v, %v", l, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if err := l.Keep(ctx); err != nil {
		t.Errorf("Keep of a reservation: %v", err)
	}
	resp, err := r.cli.Get(t.Context(), l.key)
	if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].Version != 1 || resp.Kvs[0].Lease != 0 {
		t.Errorf("reservation touched: %+v, %v", resp.Kvs, err)
	}
}

func TestWaitConfig(t *testing.T) {
	e := startEtcd(t)
	opts := testOptions(t, e.ClientURL())
	logs := capture(t, &opts)
	r := openRegistry(t, opts)

	if _, err := r.Config(t.Context()); !errors.Is(err, ErrNoConfig) {
		t.Errorf("Config with no key: %v, want ErrNoConfig", err)
	}
	type result struct {
		c   Config
		err error
	}
	got := make(chan result, 1)
	go func() {
		c, err := r.WaitConfig(t.Context())
		got <- result{c, err}
	}()
	// Let it retry several times (backoff tops out at 200ms here).
	time.Sleep(time.Second)
	if n := logs.count("waiting for the network config"); n != 1 {
		t.Errorf("logged the wait %d times, want once", n)
	}
	mustPut(t, r.cli, r.configKey(), testConfig)
	select {
	case res := <-got:
		if res.err != nil || res.c.Network != pfx("100.96.0.0/16") {
			t.Errorf("WaitConfig = %+v, %v", res.c, res.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("WaitConfig did not return after the config was written")
	}

	mustPut(t, r.cli, r.configKey(), `{"Network":"100.96.0.0/16","SubnetLen":33}`)
	_, err := r.WaitConfig(t.Context())
	if err == nil || !strings.Contains(err.Error(), r.configKey()) || !strings.Contains(err.Error(), "SubnetLen") {
		t.Errorf("WaitConfig of an invalid config: %v; want an error naming the key and SubnetLen", err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if _, err := r.cli.Delete(t.Context(), r.configKey()); err != nil {
		t.Fatal(err)
	}
	if _, err := r.WaitConfig(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitConfig with ctx done: %v", err)
	}
}

func TestWriteDefaultConfig(t *testing.T) {
	e := startEtcd(t)
	r := openRegistry(t, testOptions(t, e.ClientURL()))
	const n = 5
	wrote := make(chan bool, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			ok, err := r.WriteDefaultConfig(t.Context(), pfx("100.96.0.0/16"))
			if err != nil {
				t.Error(err)
			}
			wrote <- ok
		})
	}
	wg.Wait()
	close(wrote)
	count := 0
	for ok := range wrote {
		if ok {
			count++
		}
	}
	if count != 1 {
		t.Errorf("%d writers wrote the default config, want 1", count)
	}
	resp, err := r.cli.Get(t.Context(), r.configKey())
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != testConfig {
		t.Fatalf("config key: %v, %v; want %s", resp, err, testConfig)
	}

	// An operator's config is never overwritten.
	mine := `{"Network":"10.0.0.0/8","SubnetLen":20}`
	mustPut(t, r.cli, r.configKey(), mine)
	if ok, err := r.WriteDefaultConfig(t.Context(), pfx("100.96.0.0/16")); ok || err != nil {
		t.Errorf("WriteDefaultConfig over an existing config: %v, %v", ok, err)
	}
	if resp, _ := r.cli.Get(t.Context(), r.configKey()); string(resp.Kvs[0].Value) != mine {
		t.Errorf("config overwritten: %s", resp.Kvs[0].Value)
	}
}

func TestOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"margin not below TTL", Options{LeaseTTL: time.Hour, RenewMargin: time.Hour}},
		{"TTL under 2s", Options{LeaseTTL: time.Second, RenewMargin: time.Millisecond}},
		{"cert without key", Options{CertFile: "c.pem"}},
		{"missing CA file", Options{CAFile: "/nonexistent/ca.pem"}},
	} {
		if r, err := Open(tc.o); err == nil {
			r.Close()
			t.Errorf("%s: Open succeeded", tc.name)
		}
	}
}

func TestAcquirePrefersReservation(t *testing.T) {
	e := startEtcd(t)
	r := openRegistry(t, testOptions(t, e.ClientURL()))
	mustPut(t, r.cli, r.configKey(), testConfig)
	// A lease left from before, listed first, and a reservation made since.
	mustPut(t, r.cli, r.subnetKey(pfx("100.96.1.0/24")), leaseValue(ip("192.0.2.1")), clientv3.WithLease(mustGrant(t, r.cli, 600)))
	mustPut(t, r.cli, r.subnetKey(pfx("100.96.9.0/24")), leaseValue(ip("192.0.2.1")))
	cfg, err := r.Config(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	l, err := r.Acquire(t.Context(), cfg, ip("192.0.2.1"), netip.Prefix{})
	if err != nil || l.Subnet != pfx("100.96.9.0/24") || l.Origin != OriginReservation {
		t.Errorf("Acquire = %+v, %v; want the reservation 100.96.9.0/24", l, err)
	}
}

func TestPrefixKeys(t *testing.T) {
	for _, tc := range []struct{ prefix, config, subnet string }{
		{"", "/coreos.com/network/config", "/coreos.com/network/subnets/10.0.1.0-24"},
		{"/coreos.com/network/", "/coreos.com/network/config", "/coreos.com/network/subnets/10.0.1.0-24"},
		{"/weft", "/weft/config", "/weft/subnets/10.0.1.0-24"},
		{"coreos.com/network", "coreos.com/network/config", "coreos.com/network/subnets/10.0.1.0-24"}, // as flannel's path.Join
	} {
		o := Options{Prefix: tc.prefix}
		if err := o.setDefaults(); err != nil {
			t.Fatal(err)
		}
		r := newRegistry(nil, o)
		if r.configKey() != tc.config || r.subnetKey(pfx("10.0.1.0/24")) != tc.subnet {
			t.Errorf("prefix %q: keys %q, %q; want %q, %q", tc.prefix, r.configKey(), r.subnetKey(pfx("10.0.1.0/24")), tc.config, tc.subnet)
		}
	}
}
