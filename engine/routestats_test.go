package engine

import (
	"github.com/weft-dev/weft/encap/bindtest"
	"net/netip"
	"testing"
)

func TestRouteStats(t *testing.T) {
	e := newTestEngine(t, 8)
	dev, conn := newFakeDevice(64), bindtest.NewConn()
	o := e.newOutbound(Queue{Dev: dev, Conn: conn})
	in := e.newInbound(Queue{Dev: dev, Conn: conn})
	a, b := udpPacket(pod1, pod2, 10), udpPacket(pod1, pod3, 20)
	dev.Push(a, a, b, a)
	if err := o.step(); err != nil {
		t.Fatal(err)
	}
	back := udpPacket(pod2, pod1, 30)
	conn.Push(bindtest.Datagram{Data: back, From: h2}, bindtest.Datagram{Data: udpPacket(pod3, pod1, 30), From: h2}) // the second is spoofed
	if err := in.step(); err != nil {
		t.Fatal(err)
	}
	rs := e.RouteStats()
	if len(rs) != 2 {
		t.Fatalf("%d routes, want 2", len(rs))
	}
	r2, r3 := rs[0], rs[1]
	if r2.Peer != h2 || r2.TxPackets != 3 || r2.TxBytes != uint64(3*len(a)) || r2.RxPackets != 1 || r2.RxBytes != uint64(len(back)) {
		t.Errorf("route to h2: %+v", r2)
	}
	if r3.Peer != h3 || r3.TxPackets != 1 || r3.TxBytes != uint64(len(b)) || r3.RxPackets != 0 {
		t.Errorf("route to h3: %+v", r3)
	}
	// A new table keeps the counters of unchanged routes and starts afresh
	// for a changed one.
	tbl, err := e.Routes().Apply([]Change{{Route: Route{Subnet: r3.Subnet, Peer: h2}}})
	if err != nil {
		t.Fatal(err)
	}
	e.SetRoutes(tbl)
	rs = e.RouteStats()
	if rs[0].TxPackets != 3 || !rs[0].Since.Equal(r2.Since) {
		t.Errorf("unchanged route lost its counters: %+v", rs[0])
	}
	if rs[1].Peer != h2 || rs[1].TxPackets != 0 || rs[1].Since.Before(r3.Since) {
		t.Errorf("changed route kept old counters: %+v", rs[1])
	}
	if tbl.PeerCount() != 1 {
		t.Errorf("PeerCount %d, want 1", tbl.PeerCount())
	}
}

// TestRouteStatsManyAndNested: a batch to more routes than batchRoutes has
// slots, and to routes nested in one another, counts every packet once,
// on the route that carried it.
func TestRouteStatsManyAndNested(t *testing.T) {
	e, err := New(Config{Subnet: localSubnet, BatchSize: 64, MaxPacket: 1500})
	if err != nil {
		t.Fatal(err)
	}
	routes := []Route{
		{Subnet: netip.MustParsePrefix("100.96.0.0/16"), Peer: h3},   // holds the /24s: not a leaf
		{Subnet: netip.MustParsePrefix("100.96.2.0/24"), Peer: h2},   // a leaf inside it
		{Subnet: netip.MustParsePrefix("100.96.2.128/25"), Peer: h3}, // inside that one
	}
	for i := 10; i < 22; i++ { // twelve more leaves: more than the slots
		routes = append(routes, Route{Subnet: netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 97, byte(i), 0}), 24), Peer: h2})
	}
	tbl, err := NewTable(routes)
	if err != nil {
		t.Fatal(err)
	}
	e.SetRoutes(tbl)
	dev, conn := newFakeDevice(64), bindtest.NewConn()
	o := e.newOutbound(Queue{Dev: dev, Conn: conn})
	want := map[netip.Prefix]uint64{}
	var batch [][]byte
	for round := range 3 {
		for _, dst := range []string{"100.96.2.1", "100.96.2.200", "100.96.5.5", "100.96.2.2"} {
			batch = append(batch, udpPacket(pod1, netip.MustParseAddr(dst), 10))
			want[tbl.LookupAddr(netip.MustParseAddr(dst)).Subnet]++
		}
		for i := 10; i < 22; i++ {
			dst := netip.AddrFrom4([4]byte{100, 97, byte(i), byte(round + 1)})
			batch = append(batch, udpPacket(pod1, dst, 10))
			want[tbl.LookupAddr(dst).Subnet]++
		}
	}
	dev.Push(batch...)
	if err := o.step(); err != nil {
		t.Fatal(err)
	}
	var total uint64
	for _, r := range e.RouteStats() {
		if r.TxPackets != want[r.Subnet] {
			t.Errorf("%v: %d packets, want %d", r.Subnet, r.TxPackets, want[r.Subnet])
		}
		total += r.TxPackets
	}
	if total != uint64(len(batch)) {
		t.Errorf("%d packets counted, %d sent", total, len(batch))
	}
}
