package lease

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Op is what a Route asks of the route table.
type Op int8

const (
	// Add sets the route for Subnet to PublicIP, replacing any route the
	// table has for Subnet.
	Add Op = iota + 1
	// Remove deletes the route for Subnet (PublicIP is the one it had).
	Remove
)

func (o Op) String() string {
	switch o {
	case Add:
		return "add"
	case Remove:
		return "remove"
	}
	return fmt.Sprintf("Op(%d)", int8(o))
}

// Route is one change to the subnet -> host table: packets for Subnet go to
// the host at PublicIP.
type Route struct {
	Op       Op
	Subnet   netip.Prefix
	PublicIP netip.Addr
}

// Batch is the route changes of one etcd watch response (or of one re-list),
// to be applied in order and as a whole. After it the consumer's table matches
// etcd at Revision.
type Batch struct {
	Routes   []Route
	Revision int64
}

// WatchRoutes streams the subnet leases in etcd as route changes, until ctx is
// done; then the channel is closed. The first batch holds every lease (it may
// be empty); later batches hold what changed: a put is an Add, a deleted or
// expired key a Remove. Leases include this host's own; a put that changes
// nothing (flannel re-puts its key on renewal) yields nothing.
//
// The watch resumes from the last revision it saw. If etcd has compacted that
// revision away, WatchRoutes lists the subnets again and sends the difference
// against what it sent before, so nothing is lost or repeated. A key whose name
// or value does not parse is skipped, logged once and counted (Malformed); if
// it used to hold a route, that route is removed, as a re-list would. A lease
// cfg could never have granted (a subnet outside cfg.Network, or not of
// cfg.SubnetLen) is no route either: it is ignored, logged once per key and
// counted by reason (Ignored).
// While etcd is unreachable it retries with backoff and sends nothing: the
// consumer keeps its last table. Connected tells the state.
func (r *Registry) WatchRoutes(ctx context.Context, cfg Config) <-chan Batch {
	out := make(chan Batch)
	w := newRouteWatch(r, cfg)
	go func() {
		defer close(out)
		w.run(ctx, out)
	}()
	return out
}

// routeWatch remembers what the consumer has, so that a re-list can be turned
// into a difference, and where in etcd's history it is.
type routeWatch struct {
	r       *Registry
	cfg     Config // the network config the leases are checked against
	table   map[netip.Prefix]netip.Addr
	bad     map[string]int64 // malformed key -> the ModRevision counted
	misfits map[string]int64 // key the config rules out -> the ModRevision counted
	rev     int64            // next revision to watch from; 0: list first
	sent    bool             // the initial batch went out
	resyncs int              // re-lists after a compaction (tests look)
}

func newRouteWatch(r *Registry, cfg Config) *routeWatch {
	return &routeWatch{r: r, cfg: cfg, table: make(map[netip.Prefix]netip.Addr),
		bad: make(map[string]int64), misfits: make(map[string]int64)}
}

// run lists (when needed) and follows the watch until ctx is done. It can be
// called again on the same routeWatch to resume where it stopped.
func (w *routeWatch) run(ctx context.Context, out chan<- Batch) {
	// The client re-connects a broken watch by itself, silently, and even
	// creating a watch blocks while etcd is away: the probe, beside the watch,
	// is what notices that etcd is gone while the subnets do not change.
	pctx, stop := context.WithCancel(ctx)
	var probing sync.WaitGroup
	probing.Go(func() { w.r.probeEvery(pctx, w.r.opts.ProbeInterval) })
	defer probing.Wait()
	defer stop()

	b := w.r.backoff(w.r.opts.retryMax)
	for ctx.Err() == nil {
		if w.rev == 0 {
			entries, rev, err := w.r.list(ctx)
			if err != nil {
				sleep(ctx, b.next())
				continue
			}
			routes := w.resync(entries)
			w.rev = rev + 1
			if len(routes) > 0 || !w.sent {
				if !send(ctx, out, Batch{Routes: routes, Revision: rev}) {
					return
				}
				w.sent = true
			}
		}
		progressed, err := w.follow(ctx, out)
		if progressed {
			b.reset()
		}
		if err != nil {
			w.r.log.Debug("subnet watch ended; resuming", "revision", w.rev, "err", err)
			sleep(ctx, b.next())
		}
	}
}

func send(ctx context.Context, out chan<- Batch, b Batch) bool {
	select {
	case out <- b:
		return true
	case <-ctx.Done():
		return false
	}
}

// follow watches from w.rev and forwards each response as a batch. It returns
// when ctx is done, when the watch ends with an error, or (with w.rev reset
// to 0) when the revision was compacted; progressed says whether any response
// came through.
func (w *routeWatch) follow(ctx context.Context, out chan<- Batch) (progressed bool, err error) {
	r := w.r
	// WithRequireLeader: a member cut off from the quorum ends the watch
	// instead of going silent, and the client resumes on another endpoint.
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := r.cli.Watch(wctx, r.subnetsDir(), clientv3.WithPrefix(), clientv3.WithRev(w.rev))
	for {
		select {
		case <-ctx.Done():
			return progressed, nil
		case resp, ok := <-wch:
			if !ok {
				if ctx.Err() != nil {
					return progressed, nil
				}
				return progressed, errors.New("watch channel closed")
			}
			if resp.CompactRevision != 0 {
				r.log.Warn("subnet watch fell behind etcd's compaction; listing the subnets again",
					"revision", w.rev, "compacted", resp.CompactRevision)
				w.rev = 0
				w.resyncs++
				return true, nil
			}
			if err := resp.Err(); err != nil {
				r.observe(ctx, err)
				return progressed, fmt.Errorf("watch %s: %w", r.subnetsDir(), err)
			}
			r.observe(ctx, nil)
			progressed = true
			if len(resp.Events) == 0 { // progress notification
				w.rev = max(w.rev, resp.Header.Revision+1)
				continue
			}
			routes := w.apply(resp.Events)
			// As the client itself does when it resumes a watch: from just after
			// the last event seen.
			last := resp.Events[len(resp.Events)-1].Kv.ModRevision
			w.rev = last + 1
			if len(routes) > 0 && !send(ctx, out, Batch{Routes: routes, Revision: last}) {
				return progressed, nil
			}
		}
	}
}

// probeEvery asks etcd a trivial linearizable question every interval until
// ctx is done, so that Connected follows reality while the watch has nothing
// to say.
func (r *Registry) probeEvery(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			rctx, cancel := r.request(ctx)
			_, err := r.cli.Get(rctx, r.configKey(), clientv3.WithCountOnly())
			cancel()
			r.observe(ctx, err)
		}
	}
}

// apply turns watch events into route changes and updates the table.
func (w *routeWatch) apply(events []*clientv3.Event) []Route {
	routes := make([]Route, 0, len(events))
	for _, ev := range events {
		if ev.Type == mvccpb.DELETE {
			key := string(ev.Kv.Key)
			delete(w.bad, key)
			delete(w.misfits, key)
			if subnet, err := ParseSubnetKey(key[min(len(key), len(w.r.subnetsDir())):]); err == nil {
				routes = w.remove(routes, subnet)
			}
			continue
		}
		e := w.r.parseKV(ev.Kv)
		if e.err != nil {
			w.malformed(e)
			if e.subnet.IsValid() {
				routes = w.remove(routes, e.subnet)
			}
			continue
		}
		if len(w.bad) > 0 {
			delete(w.bad, e.key)
		}
		// The key's name fixes its subnet, and cfg does not change: a
		// misfit never had a route to remove.
		if reason, ok := w.cfg.misfit(e.subnet); ok {
			w.ignore(e, reason)
			continue
		}
		if old, ok := w.table[e.subnet]; ok && old == e.publicIP {
			continue
		}
		w.table[e.subnet] = e.publicIP
		routes = append(routes, Route{Op: Add, Subnet: e.subnet, PublicIP: e.publicIP})
	}
	return routes
}

func (w *routeWatch) remove(routes []Route, subnet netip.Prefix) []Route {
	ip, ok := w.table[subnet]
	if !ok {
		return routes
	}
	delete(w.table, subnet)
	return append(routes, Route{Op: Remove, Subnet: subnet, PublicIP: ip})
}

// resync makes the table match a fresh list and returns the difference:
// removals first, then additions, each in subnet order.
func (w *routeWatch) resync(entries []entry) []Route {
	want := make(map[netip.Prefix]netip.Addr, len(entries))
	skipped := make(map[string]bool)
	for _, e := range entries {
		if e.err != nil {
			w.malformed(e)
			skipped[e.key] = true
			continue
		}
		if reason, ok := w.cfg.misfit(e.subnet); ok {
			w.ignore(e, reason)
			skipped[e.key] = true
			continue
		}
		want[e.subnet] = e.publicIP
	}
	for _, m := range []map[string]int64{w.bad, w.misfits} {
		for k := range m {
			if !skipped[k] {
				delete(m, k)
			}
		}
	}
	var routes []Route
	for subnet := range w.table {
		if _, ok := want[subnet]; !ok {
			routes = w.remove(routes, subnet)
		}
	}
	removed := len(routes)
	for subnet, ip := range want {
		if old, ok := w.table[subnet]; !ok || old != ip {
			w.table[subnet] = ip
			routes = append(routes, Route{Op: Add, Subnet: subnet, PublicIP: ip})
		}
	}
	bySubnet := func(a, b Route) int {
		return cmp.Or(a.Subnet.Addr().Compare(b.Subnet.Addr()), cmp.Compare(a.Subnet.Bits(), b.Subnet.Bits()))
	}
	slices.SortFunc(routes[:removed], bySubnet)
	slices.SortFunc(routes[removed:], bySubnet)
	return routes
}

// malformed counts a key that does not parse once per revision of it (a
// re-list sees the same one again) and logs it once until it is fixed.
func (w *routeWatch) malformed(e entry) {
	rev, seen := w.bad[e.key]
	if seen && rev == e.modRev {
		return
	}
	w.bad[e.key] = e.modRev
	w.r.malformed.Add(1)
	if !seen {
		w.r.log.Warn("skipping a subnet key that does not parse", "key", e.key, "revision", e.modRev, "err", e.err)
	}
}

// ignore counts a lease the config rules out once per revision of its key
// (a re-list sees the same one again) and logs it once until the key goes.
func (w *routeWatch) ignore(e entry, reason IgnoreReason) {
	rev, seen := w.misfits[e.key]
	if seen && rev == e.modRev {
		return
	}
	w.misfits[e.key] = e.modRev
	w.r.ignored[reason].Add(1)
	if !seen {
		w.r.log.Warn("ignoring a subnet lease the network config rules out", "key", e.key, "subnet", e.subnet,
			"public_ip", e.publicIP, "reason", reason.String(), "network", w.cfg.Network, "subnet_len", w.cfg.SubnetLen)
	}
}
