package lease

import (
	"context"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// etcdTable is what a consumer's table must end up as: every parseable key.
func etcdTable(t *testing.T, r *Registry) table {
	t.Helper()
	entries, _, err := r.list(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	tb := table{}
	for _, e := range entries {
		if e.err == nil {
			tb[e.subnet] = e.publicIP
		}
	}
	return tb
}

func routes(rs ...any) []Route {
	var out []Route
	for i := 0; i < len(rs); i += 3 {
		out = append(out, Route{Op: rs[i].(Op), Subnet: pfx(rs[i+1].(string)), PublicIP: ip(rs[i+2].(string))})
	}
	return out
}

func wantBatch(t *testing.T, ch <-chan Batch, want []Route) Batch {
	t.Helper()
	b := next(t, ch)
	if !slices.Equal(b.Routes, want) {
		t.Fatalf("batch %v\nwant      %v", b.Routes, want)
	}
	return b
}

func TestWatchRoutes(t *testing.T) {
	e := startEtcd(t)
	r := openRegistry(t, testOptions(t, e.ClientURL()))
	key := func(s string) string { return r.subnetKey(pfx(s)) }
	mustPut(t, r.cli, key("100.96.2.0/24"), leaseValue(ip("192.0.2.2")), clientv3.WithLease(mustGrant(t, r.cli, 600)))
	mustPut(t, r.cli, key("100.96.1.0/24"), `{"PublicIP":"192.0.2.1","PublicIPv6":null}`) // a reservation, flanneld's value
	mustPut(t, r.cli, r.configKey(), testConfig)                                          // not a subnet: not a route

	ctx, cancel := context.WithCancel(t.Context())
	ch := r.WatchRoutes(ctx, parsedConfig(t, testConfig))
	tb := table{}

	// The full list first, in subnet order.
	b := wantBatch(t, ch, routes(Add, "100.96.1.0/24", "192.0.2.1", Add, "100.96.2.0/24", "192.0.2.2"))
	tb.apply(b)

	// A lease that expires: Add, then Remove. 1s is etcd's shortest TTL here.
	mustPut(t, r.cli, key("100.96.3.0/24"), leaseValue(ip("192.0.2.3")), clientv3.WithLease(mustGrant(t, r.cli, 1)))
	tb.apply(wantBatch(t, ch, routes(Add, "100.96.3.0/24", "192.0.2.3")))
	tb.apply(wantBatch(t, ch, routes(Remove, "100.96.3.0/24", "192.0.2.3")))

	// A put that changes nothing (flanneld re-puts its key on every renewal)
	// sends nothing: the next batch is the next real change.
	mustPut(t, r.cli, key("100.96.2.0/24"), leaseValue(ip("192.0.2.2")), clientv3.WithLease(mustGrant(t, r.cli, 600)))
	mustPut(t, r.cli, key("100.96.4.0/24"), leaseValue(ip("192.0.2.4")))
	tb.apply(wantBatch(t, ch, routes(Add, "100.96.4.0/24", "192.0.2.4")))

	// A host that moved: Add with the new address replaces the route.
	mustPut(t, r.cli, key("100.96.4.0/24"), leaseValue(ip("192.0.2.44")))
	tb.apply(wantBatch(t, ch, routes(Add, "100.96.4.0/24", "192.0.2.44")))

	// A deleted lease: Remove, with the address it had.
	if _, err := r.cli.Delete(t.Context(), key("100.96.1.0/24")); err != nil {
		t.Fatal(err)
	}
	tb.apply(wantBatch(t, ch, routes(Remove, "100.96.1.0/24", "192.0.2.1")))

	// One etcd transaction is one watch response is one batch, in order.
	if _, err := r.cli.Txn(t.Context()).Then(
		clientv3.OpPut(key("100.96.5.0/24"), leaseValue(ip("192.0.2.5"))),
		clientv3.OpDelete(key("100.96.4.0/24")),
		clientv3.OpPut(key("100.96.6.0/24"), leaseValue(ip("192.0.2.6"))),
	).Commit(); err != nil {
		t.Fatal(err)
	}
	b = wantBatch(t, ch, routes(Add, "100.96.5.0/24", "192.0.2.5", Remove, "100.96.4.0/24", "192.0.2.44", Add, "100.96.6.0/24", "192.0.2.6"))
	tb.apply(b)

	if want := etcdTable(t, r); tb.String() != want.String() {
		t.Errorf("consumer has %v\netcd has     %v", tb, want)
	}
	resp, err := r.cli.Get(t.Context(), "x")
	if err != nil {
		t.Fatal(err)
	}
	if b.Revision != resp.Header.Revision {
		t.Errorf("last batch at revision %d, etcd at %d", b.Revision, resp.Header.Revision)
	}
	if !r.Connected() {
		t.Error("not Connected while watching")
	}

	cancel()
	select {
	case _, ok := <-ch:
		if ok {
			t.Error("a batch after ctx was done")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("route channel not closed after ctx was done")
	}
}

// TestWatchCompaction: the watcher is stopped while hosts come and go and
// etcd compacts its history; when it resumes it re-lists, and the consumer
// ends with exactly what etcd holds, having seen only the difference.
func TestWatchCompaction(t *testing.T) {
	e := startEtcd(t)
	opts := testOptions(t, e.ClientURL())
	r := openRegistry(t, opts)
	key := func(s string) string { return r.subnetKey(pfx(s)) }
	for i, s := range []string{"100.96.1.0/24", "100.96.2.0/24", "100.96.3.0/24"} {
		mustPut(t, r.cli, key(s), leaseValue(netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)})))
	}

	w := newRouteWatch(r, parsedConfig(t, testConfig))
	out := make(chan Batch)
	tb := table{}
	run := func(ctx context.Context) chan struct{} {
		done := make(chan struct{})
		go func() {
			defer close(done)
			w.run(ctx, out)
		}()
		return done
	}

	ctx1, stop := context.WithCancel(t.Context())
	done := run(ctx1)
	tb.apply(wantBatch(t, out, routes(Add, "100.96.1.0/24", "192.0.2.1", Add, "100.96.2.0/24", "192.0.2.2", Add, "100.96.3.0/24", "192.0.2.3")))
	stop()
	<-done

	// While it is stopped: a host leaves, one moves, one comes, one comes
	// and goes; then history is compacted away.
	if _, err := r.cli.Delete(t.Context(), key("100.96.1.0/24")); err != nil {
		t.Fatal(err)
	}
	mustPut(t, r.cli, key("100.96.2.0/24"), leaseValue(ip("192.0.2.22")))
	mustPut(t, r.cli, key("100.96.4.0/24"), leaseValue(ip("192.0.2.4")))
	mustPut(t, r.cli, key("100.96.5.0/24"), leaseValue(ip("192.0.2.5")))
	if _, err := r.cli.Delete(t.Context(), key("100.96.5.0/24")); err != nil {
		t.Fatal(err)
	}
	resp, err := r.cli.Get(t.Context(), "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.cli.Compact(t.Context(), resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}

	ctx2, stop2 := context.WithCancel(t.Context())
	defer func() { stop2(); <-done }()
	done = run(ctx2)
	tb.apply(wantBatch(t, out, routes(Remove, "100.96.1.0/24", "192.0.2.1", Add, "100.96.2.0/24", "192.0.2.22", Add, "100.96.4.0/24", "192.0.2.4")))
	if w.resyncs != 1 {
		t.Errorf("%d re-lists, want 1", w.resyncs)
	}
	if want := etcdTable(t, r); tb.String() != want.String() {
		t.Errorf("consumer has %v\netcd has     %v", tb, want)
	}

	// And it watches on from there.
	mustPut(t, r.cli, key("100.96.6.0/24"), leaseValue(ip("192.0.2.6")))
	tb.apply(wantBatch(t, out, routes(Add, "100.96.6.0/24", "192.0.2.6")))
}

func TestWatchMalformed(t *testing.T) {
	e := startEtcd(t)
	opts := testOptions(t, e.ClientURL())
	logs := capture(t, &opts)
	r := openRegistry(t, opts)
	dir := r.subnetsDir()
	good := r.subnetKey(pfx("100.96.1.0/24"))
	mustPut(t, r.cli, good, leaseValue(ip("192.0.2.1")))
	for k, v := range map[string]string{
		dir + "100.96.2.0-24":             `garbage`,
		dir + "100.96.3.0-24":             `{"PublicIP":"2001:db8::3"}`,
		dir + "not-a-subnet":              leaseValue(ip("192.0.2.4")),
		dir + "100.96.6.7-24":             leaseValue(ip("192.0.2.6")),
		dir + "deeper/100.96.7.0-24":      leaseValue(ip("192.0.2.7")),
		dir + "100.96.8.0-24":             `{"PublicIPv6":null}`,
		dir + "100.96.9.0-24":             ``,
		dir + "100.96.10.0-24":            `{"PublicIP":"192.0.2.10"`,
		dir + "100.96.11.0-24":            `null`,
		dir + "100.096.12.0-24":           leaseValue(ip("192.0.2.12")),
		dir + "100.96.13.0-24":            `{"PublicIP":"192.0.2.13","BackendType":7}`,
		dir + "100.96.14.0-24":            `{"PublicIP":"192.0.2.256"}`,
		dir + "100.96.15.0-24 ":           leaseValue(ip("192.0.2.15")),
		dir + "100.96.16.0-24\n":          leaseValue(ip("192.0.2.16")),
		dir + "100.96.17.0-24/":           leaseValue(ip("192.0.2.17")),
		dir + "100.96.18.0-0":             leaseValue(ip("192.0.2.18")),
		dir + "100.96.19.0-24&":           leaseValue(ip("192.0.2.19")),
		dir + "100.96.20.0-24\x00":        leaseValue(ip("192.0.2.20")),
		dir + "100.96.21.0-24\xff":        leaseValue(ip("192.0.2.21")),
		dir + "100.96.22.0-24&fc00::-129": leaseValue(ip("192.0.2.22")),
	} {
		mustPut(t, r.cli, k, v)
	}
	const bad = 20
	w := newRouteWatch(r, parsedConfig(t, testConfig))
	out := make(chan Batch)
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.run(ctx, out)
	}()
	defer func() { stop(); <-done }()

	wantBatch(t, out, routes(Add, "100.96.1.0/24", "192.0.2.1"))
	if n := r.Malformed(); n != bad {
		t.Errorf("Malformed() = %d, want %d", n, bad)
	}
	if n := logs.count("skipping a subnet key"); n != bad {
		t.Errorf("logged %d malformed keys, want %d", n, bad)
	}

	// A new bad value for a bad key: counted again, not logged again.
	mustPut(t, r.cli, dir+"100.96.2.0-24", `still garbage`)
	// A good key going bad: its route goes, as a re-list would drop it.
	mustPut(t, r.cli, good, `{"PublicIP":"oops"}`)
	wantBatch(t, out, routes(Remove, "100.96.1.0/24", "192.0.2.1"))
	if n, l := r.Malformed(), logs.count("skipping a subnet key"); n != bad+2 || l != bad+1 {
		t.Errorf("Malformed() = %d, logged %d; want %d and %d", n, l, bad+2, bad+1)
	}
	// A bad key fixed: an ordinary Add.
	mustPut(t, r.cli, dir+"100.96.2.0-24", leaseValue(ip("192.0.2.2")))
	wantBatch(t, out, routes(Add, "100.96.2.0/24", "192.0.2.2"))

	// A re-list sees the same bad keys again and neither counts nor logs them.
	entries, _, err := r.list(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if rs := w.resync(entries); len(rs) != 0 {
		t.Errorf("re-list of an unchanged registry gave %v", rs)
	}
	if n, l := r.Malformed(), logs.count("skipping a subnet key"); n != bad+2 || l != bad+1 {
		t.Errorf("after a re-list: Malformed() = %d, logged %d; want %d and %d", n, l, bad+2, bad+1)
	}
}

// proxy stands between the client and etcd, so a test can cut etcd off and
// bring it back in an instant, on the same address.
type proxy struct {
	t      *testing.T
	target string
	addr   string
	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]bool
	wg     sync.WaitGroup
}

func startProxy(t *testing.T, target string) *proxy {
	p := &proxy{t: t, target: strings.TrimPrefix(target, "http://"), addr: "127.0.0.1:0", conns: map[net.Conn]bool{}}
	p.up()
	t.Cleanup(p.down)
	return p
}

func (p *proxy) url() string { return "http://" + p.addr }

func (p *proxy) up() {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatalf("proxy listen: %v", err)
	}
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			d, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns[c], p.conns[d] = true, true
			p.mu.Unlock()
			pipe := func(dst, src net.Conn) {
				io.Copy(dst, src)
				dst.Close()
				src.Close()
			}
			p.wg.Go(func() { pipe(c, d) })
			p.wg.Go(func() { pipe(d, c) })
		}
	})
}

func (p *proxy) down() {
	p.mu.Lock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
	p.mu.Unlock()
	p.wg.Wait()
}

// TestWatchEtcdUnreachable: etcd drops out of reach; the state change is
// logged once, the consumer gets nothing (so keeps its table), and when etcd
// is back the watch catches up with what happened meanwhile.
func TestWatchEtcdUnreachable(t *testing.T) {
	e := startEtcd(t)
	direct := openRegistry(t, testOptions(t, e.ClientURL()))
	key := func(s string) string { return direct.subnetKey(pfx(s)) }
	mustPut(t, direct.cli, key("100.96.1.0/24"), leaseValue(ip("192.0.2.1")))

	px := startProxy(t, e.ClientURL())
	opts := testOptions(t, px.url())
	opts.ProbeInterval, opts.RequestTimeout = 100*time.Millisecond, 300*time.Millisecond
	logs := capture(t, &opts)
	r := openRegistry(t, opts)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ch := r.WatchRoutes(ctx, parsedConfig(t, testConfig))
	tb := table{}
	tb.apply(wantBatch(t, ch, routes(Add, "100.96.1.0/24", "192.0.2.1")))

	px.down()
	eventually(t, "Connected() to turn false", func() bool { return !r.Connected() })
	// Meanwhile the registry changes, out of the watcher's sight.
	if _, err := direct.cli.Delete(t.Context(), key("100.96.1.0/24")); err != nil {
		t.Fatal(err)
	}
	mustPut(t, direct.cli, key("100.96.2.0/24"), leaseValue(ip("192.0.2.2")))
	// Several probes fail while it is down: logged once all the same, and
	// the consumer hears nothing.
	select {
	case b := <-ch:
		t.Fatalf("batch %v while etcd was unreachable", b)
	case <-time.After(time.Second):
	}
	if n := logs.count("etcd unreachable"); n != 1 {
		t.Errorf("logged 'etcd unreachable' %d times, want once", n)
	}

	px.up()
	// The two changes may come as one batch or two, depending on how etcd
	// catches the watch up.
	var got []Route
	for len(got) < 2 {
		b := next(t, ch)
		tb.apply(b)
		got = append(got, b.Routes...)
	}
	if want := routes(Remove, "100.96.1.0/24", "192.0.2.1", Add, "100.96.2.0/24", "192.0.2.2"); !slices.Equal(got, want) {
		t.Errorf("after the outage: %v\nwant %v", got, want)
	}
	eventually(t, "Connected() to turn true", r.Connected)
	if n := logs.count("etcd reachable again"); n != 1 {
		t.Errorf("logged 'etcd reachable again' %d times, want once", n)
	}
	if want := etcdTable(t, direct); tb.String() != want.String() {
		t.Errorf("consumer has %v\netcd has     %v", tb, want)
	}
}

// TestWatchIgnoresMisfits: a well-formed lease the network config could never
// have granted (outside Network, or not of SubnetLen) is no route; it is
// logged once per key and counted once per revision, by reason.
func TestWatchIgnoresMisfits(t *testing.T) {
	e := startEtcd(t)
	opts := testOptions(t, e.ClientURL())
	logs := capture(t, &opts)
	r := openRegistry(t, opts)
	dir := r.subnetsDir()
	mustPut(t, r.cli, r.subnetKey(pfx("100.96.1.0/24")), leaseValue(ip("192.0.2.1")))
	misfits := map[string]IgnoreReason{
		"8.8.8.0-24":     IgnoredOutsideNetwork, // a peer claiming someone else's addresses
		"128.0.0.0-1":    IgnoredOutsideNetwork, // half the internet
		"100.0.0.0-8":    IgnoredOutsideNetwork, // wider than Network, around it
		"100.97.0.0-24":  IgnoredOutsideNetwork, // next door
		"100.96.0.0-16":  IgnoredSubnetLen,      // all of Network
		"100.96.9.0-25":  IgnoredSubnetLen,
		"100.96.10.0-23": IgnoredSubnetLen,
	}
	for k := range misfits {
		mustPut(t, r.cli, dir+k, leaseValue(ip("192.0.2.9")))
	}
	count := func(reason IgnoreReason) (n uint64) {
		for _, want := range misfits {
			if want == reason {
				n++
			}
		}
		return n
	}
	check := func(when string, extra uint64) {
		t.Helper()
		for _, reason := range IgnoreReasons() {
			want := count(reason)
			if reason == IgnoredOutsideNetwork {
				want += extra
			}
			if got := r.Ignored(reason); got != want {
				t.Errorf("%s: Ignored(%v) = %d, want %d", when, reason, got, want)
			}
		}
		if n := logs.count("ignoring a subnet lease"); n != len(misfits) {
			t.Errorf("%s: logged %d ignored leases, want %d (once per key)", when, n, len(misfits))
		}
		if n := r.Malformed(); n != 0 {
			t.Errorf("%s: %d keys counted malformed; they parse", when, n)
		}
	}

	w := newRouteWatch(r, parsedConfig(t, testConfig))
	out := make(chan Batch)
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.run(ctx, out)
	}()
	defer func() { stop(); <-done }()

	wantBatch(t, out, routes(Add, "100.96.1.0/24", "192.0.2.1"))
	check("after the list", 0)

	// Through the watch: a new value for a misfit is counted, not logged
	// again, and makes no route; the next batch is the next good lease.
	mustPut(t, r.cli, dir+"8.8.8.0-24", leaseValue(ip("192.0.2.8")))
	mustPut(t, r.cli, r.subnetKey(pfx("100.96.2.0/24")), leaseValue(ip("192.0.2.2")))
	wantBatch(t, out, routes(Add, "100.96.2.0/24", "192.0.2.2"))
	check("after a watched put", 1)

	// A re-list sees the same keys again: no route, no count, no log.
	entries, _, err := r.list(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if rs := w.resync(entries); len(rs) != 0 {
		t.Errorf("re-list of an unchanged registry gave %v", rs)
	}
	check("after a re-list", 1)
	for subnet := range w.table {
		if !pfx("100.96.0.0/16").Contains(subnet.Addr()) || subnet.Bits() != 24 {
			t.Errorf("route table holds %v", subnet)
		}
	}
}
