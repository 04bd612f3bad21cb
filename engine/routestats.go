package engine

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weft-dev/weft/encap"

	"github.com/weft-dev/weft/ipv4"
)

// Per-route counters, for `weft routes`. A Route stays a plain value (the
// table compares them), so the counters live beside the table: a map from
// each of its *Route to a routeCounter, rebuilt when the table is swapped,
// carrying the counters of every route whose subnet and peer are unchanged.
//
// The loops count once per batch, after it is built (batchRoutes): most
// packets cost a mask and a compare, and each route the batch carried two
// atomic adds. No lock, no allocation.

// routeCounter counts the traffic of one route.
type routeCounter struct {
	base, mask uint32 // the subnet, to tell whether a packet is in it
	since      time.Time

	txPackets, txBytes atomic.Uint64
	rxPackets, rxBytes atomic.Uint64
}

// routeCounters are the counters of one table's routes.
type routeCounters struct {
	table   *Table
	byRoute map[*Route]routeSlot
}

// routeSlot is a route's counter in one table. A leaf route has no
// narrower route inside its subnet, so every address in the subnet is
// routed by it: a mask and a compare tell a packet is its, no lookup.
type routeSlot struct {
	c    *routeCounter
	leaf bool
}

// routeTracker keeps the routeCounters of the table in use.
type routeTracker struct {
	mu     sync.Mutex // serialises rebuilds
	active atomic.Pointer[routeCounters]
}

// track makes t's routes the counted ones, keeping the counters of routes
// that t shares, by subnet and peer, with the table tracked before.
func (rt *routeTracker) track(t *Table, now time.Time) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	prev := map[Route]*routeCounter{}
	if old := rt.active.Load(); old != nil {
		for r, s := range old.byRoute {
			prev[*r] = s.c
		}
	}
	var routes []*Route
	t.walk(func(r *Route) { routes = append(routes, r) })
	// Ordered by address, then length: whatever lies inside a route's
	// subnet comes right after it.
	slices.SortFunc(routes, func(a, b *Route) int { return compareSubnets(a.Subnet, b.Subnet) })
	rc := &routeCounters{table: t, byRoute: make(map[*Route]routeSlot, len(routes))}
	for i, r := range routes {
		c := prev[*r]
		if c == nil {
			a := r.Subnet.Addr().As4()
			c = &routeCounter{base: binary.BigEndian.Uint32(a[:]), mask: prefixMask(r.Subnet.Bits()), since: now}
		}
		leaf := i+1 == len(routes) || !r.Subnet.Contains(routes[i+1].Subnet.Addr())
		rc.byRoute[r] = routeSlot{c: c, leaf: leaf}
	}
	rt.active.Store(rc)
}

func compareSubnets(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

func prefixMask(bits int) uint32 {
	if bits == 0 {
		return 0
	}
	return ^uint32(0) << (32 - bits)
}

// lookup returns the slot of the route for addr; its c is nil if none.
func (rc *routeCounters) lookup(addr uint32) routeSlot {
	r := rc.table.Lookup(addr)
	if r == nil {
		return routeSlot{}
	}
	return rc.byRoute[r]
}

// batchRoutes sums a batch's packets by route before they go to the shared
// counters: those are atomic adds on cache lines every worker may touch, so
// they are made once per route and batch, not per packet. A packet of a
// leaf route the batch has already met costs a mask and a compare for each
// such route, on arrays in the loop's stack frame; only other packets are
// looked up.
type batchRoutes struct {
	n       int
	base    [8]uint32 // the slot's subnet; a non-leaf route's slot matches nothing:
	mask    [8]uint32 // mask 0, base 1
	c       [8]*routeCounter
	packets [8]uint64
	bytes   [8]uint64
}

// match returns the slot of the leaf route holding addr, or -1.
func (b *batchRoutes) match(addr uint32) int {
	for i, base := range b.base[:b.n] {
		if addr&b.mask[i] == base {
			return i
		}
	}
	return -1
}

// addSlow looks addr's route up and counts the packet in its slot, taking
// a new one (flushing all when full). The fast path, a packet of a leaf
// route the batch has met, is spelled out in the loops below (match and
// two adds): as a function it is too big to inline, and a call per packet
// costs.
func (b *batchRoutes) addSlow(rc *routeCounters, addr uint32, size int, rx bool) {
	s := rc.lookup(addr)
	if s.c == nil {
		return
	}
	i := 0
	for i < b.n && b.c[i] != s.c {
		i++
	}
	if i == b.n {
		if b.n == len(b.c) {
			b.flush(rx)
			i = 0
		}
		b.c[i], b.packets[i], b.bytes[i] = s.c, 0, 0
		b.base[i], b.mask[i] = 1, 0
		if s.leaf {
			b.base[i], b.mask[i] = s.c.base, s.c.mask
		}
		b.n++
	}
	b.packets[i]++
	b.bytes[i] += uint64(size)
}

func (b *batchRoutes) flush(rx bool) {
	for i, c := range b.c[:b.n] {
		if rx {
			c.rxPackets.Add(b.packets[i])
			c.rxBytes.Add(b.bytes[i])
		} else {
			c.txPackets.Add(b.packets[i])
			c.txBytes.Add(b.bytes[i])
		}
	}
	b.n = 0
}

// countSent counts datagrams the socket took by their inner
// destination's route.
func (rt *routeTracker) countSent(msgs []encap.Message) {
	rc := rt.active.Load()
	if rc == nil {
		return
	}
	var b batchRoutes
	for i := range msgs {
		m := &msgs[i]
		hdr := m.Head // a segment's headers, or none: the packet is Buf
		if len(hdr) == 0 {
			hdr = m.Buf
		}
		if len(hdr) < ipv4.MinHeaderLen {
			continue
		}
		addr, size := ipv4.Dst(hdr), len(m.Head)+len(m.Buf)
		if j := b.match(addr); j >= 0 {
			b.packets[j]++
			b.bytes[j] += uint64(size)
		} else {
			b.addSlow(rc, addr, size, false)
		}
	}
	b.flush(false)
}

// countReceived counts packets about to be written to the TUN, each
// bufs[i][offset:], by their inner source's route.
func (rt *routeTracker) countReceived(bufs [][]byte, offset int) {
	rc := rt.active.Load()
	if rc == nil {
		return
	}
	var b batchRoutes
	for _, buf := range bufs {
		pkt := buf[offset:]
		if len(pkt) < ipv4.MinHeaderLen {
			continue
		}
		if j := b.match(ipv4.Src(pkt)); j >= 0 {
			b.packets[j]++
			b.bytes[j] += uint64(len(pkt))
		} else {
			b.addSlow(rc, ipv4.Src(pkt), len(pkt), true)
		}
	}
	b.flush(true)
}

// RouteStats is a route with what it carried since it was set.
type RouteStats struct {
	Route
	// Since is when the route got its current peer: the table that first
	// held it was set.
	Since              time.Time
	TxPackets, TxBytes uint64 // sent to the peer, inner packets
	RxPackets, RxBytes uint64 // received from the peer and written to the TUN
}

// RouteStats returns the routes being counted (those of the table in use,
// or for a moment after SetRoutes the one before), ordered by subnet, with
// their counters.
func (e *Engine) RouteStats() []RouteStats {
	rc := e.routeStats.active.Load()
	if rc == nil {
		return nil
	}
	out := make([]RouteStats, 0, len(rc.byRoute))
	for r, slot := range rc.byRoute {
		c := slot.c
		out = append(out, RouteStats{
			Route: *r, Since: c.since,
			TxPackets: c.txPackets.Load(), TxBytes: c.txBytes.Load(),
			RxPackets: c.rxPackets.Load(), RxBytes: c.rxBytes.Load(),
		})
	}
	slices.SortFunc(out, func(a, b RouteStats) int { return compareSubnets(a.Subnet, b.Subnet) })
	return out
}

// PeerCount is the number of distinct peer addresses the table routes to.
func (t *Table) PeerCount() int { return len(t.peers) }

// walk calls fn with every route of t, in no particular order.
func (t *Table) walk(fn func(r *Route)) {
	var visit func(n *node)
	visit = func(n *node) {
		if n == nil {
			return
		}
		for _, r := range n.routes {
			fn(r)
		}
		for _, c := range n.child {
			visit(c)
		}
	}
	visit(t.root)
}
