package engine

import (
	"encoding/binary"
	"github.com/weft-dev/weft/encap/bindtest"
	"github.com/weft-dev/weft/tun/tuntest"
	"net/netip"
	"slices"
	"sync"
	"testing"

	"github.com/weft-dev/weft/ipv4"
)

// Fuzz targets for everything that reads untrusted bytes: the IPv4 checks,
// the admission of datagrams from peers, the outbound loop, and the ICMP
// answer. Seeds are the real packets of the flannel recording
// (../testdata/flannel; testdata/fuzz holds a few of them too) and hand-made
// edge cases. Run one with, e.g.,
//
//	go test -run '^$' -fuzz '^FuzzAdmit$' -fuzztime 1m ./engine/

// fuzzPackets is the seed corpus: recorded packets and edge cases.
func fuzzPackets() [][]byte {
	var seeds [][]byte
	if ds, err := underlayDatagrams(); err == nil {
		for i, d := range ds {
			if i%8 == 0 || len(d.inner) < 200 { // every kind, not every segment
				seeds = append(seeds, d.inner)
			}
		}
	}
	if ps, err := podPackets(); err == nil {
		seeds = append(seeds, ps...)
	}
	udp := udpPacket(pod1, pod2, 40)
	seeds = append(seeds,
		udp,
		udpPacket(pod2, pod1, 40),
		udpPacket(pod1, nowhere, 40),
		withTTL(udp, 1),
		ipv4Packet(ipv4Spec{src: pod1, dst: nowhere, proto: 17, ttl: 64, options: []byte{0x94, 4, 0, 0, 1, 1, 1, 0}, payload: make([]byte, 12)}),
		icmpPacket(pod1, nowhere, 3, 1),
		icmpPacket(pod1, nowhere, 8, 0),
		with(udp, func(p []byte) { p[6], p[7] = 0x20, 0x10; fixChecksum(p) }),
		udpPacket(pod1, netip.MustParseAddr("224.0.0.251"), 8),
		ipv6Packet(),
		udp[:19],
		with(udp, func(p []byte) { p[0] = 0x4f }),
	)
	return seeds
}

func FuzzCheckIPv4(f *testing.F) {
	for _, p := range fuzzPackets() {
		f.Add(p, true)
		f.Add(p, false)
	}
	f.Fuzz(func(t *testing.T, data []byte, verify bool) {
		if got, want := ipv4.Checksum(data), refChecksum(data); got != want {
			t.Fatalf("checksum = %#04x, oracle %#04x", got, want)
		}
		total, drop := checkIPv4(data, verify)
		if drop != DropNone {
			if total != 0 {
				t.Fatalf("dropped (%v) with total %d", drop, total)
			}
			switch drop {
			case DropTruncated, DropNotIPv4, DropBadHeaderLen, DropBadTotalLen:
			case DropBadChecksum:
				if !verify {
					t.Fatal("checksum refused without verifySum")
				}
			default:
				t.Fatalf("checkIPv4 gave %v, not a header reason", drop)
			}
			if (len(data) < ipv4.MinHeaderLen) != (drop == DropTruncated) {
				t.Fatalf("%d bytes: %v", len(data), drop)
			}
			return
		}
		// Accepted: the header's invariants hold.
		if len(data) < ipv4.MinHeaderLen || data[0]>>4 != 4 {
			t.Fatalf("accepted % x: not an IPv4 header", data)
		}
		hlen := int(data[0]&0x0f) * 4
		if hlen < ipv4.MinHeaderLen || hlen > total || total > len(data) || total != int(binary.BigEndian.Uint16(data[2:])) {
			t.Fatalf("accepted with IHL %d, total %d, %d bytes", hlen, total, len(data))
		}
		if verify {
			if refChecksum(data[:hlen]) != 0 {
				t.Fatal("accepted a header whose checksum is wrong")
			}
			// A valid header stays valid through a TTL decrement.
			if data[ipv4.OffTTL] >= 2 {
				hdr := slices.Clone(data[:hlen])
				decrementTTL(hdr)
				if refChecksum(hdr) != 0 || ipv4.Checksum(hdr) != 0 {
					t.Fatalf("header % x invalid after decrementTTL", hdr)
				}
			}
		}
	})
}

// fuzzTable is h1's table with nested and adjacent routes besides h2 and h3.
var fuzzTable = sync.OnceValue(func() *Table {
	t, err := NewTable(append(testRoutes(),
		Route{Subnet: netip.MustParsePrefix("100.96.2.128/25"), Peer: h3},
		Route{Subnet: netip.MustParsePrefix("100.64.0.0/10"), Peer: netip.MustParseAddrPort("198.51.100.1:8285")},
		Route{Subnet: netip.MustParsePrefix("10.0.0.0/8"), Peer: netip.MustParseAddrPort("198.51.100.2:8285")},
	))
	if err != nil {
		panic(err)
	}
	return t
})

func FuzzAdmit(f *testing.F) {
	for _, p := range fuzzPackets() {
		for _, from := range []netip.AddrPort{h2, h3, stranger, netip.AddrPortFrom(h2.Addr(), 40000)} {
			f.Add(p, u32(from.Addr()), from.Port())
		}
	}
	if ds, err := underlayDatagrams(); err == nil {
		// As recorded: from h2 these are admitted, from h1 not.
		for _, d := range ds[:min(len(ds), 40)] {
			f.Add(d.inner, u32(d.from.Addr()), d.from.Port())
		}
	}
	e, err := New(Config{Subnet: localSubnet, BatchSize: 1, MaxPacket: 1500})
	if err != nil {
		f.Fatal(err)
	}
	tbl := fuzzTable()
	f.Fuzz(func(t *testing.T, data []byte, fromIP uint32, fromPort uint16) {
		from := netip.AddrPortFrom(addrOf(fromIP), fromPort)
		total, drop := e.admit(tbl, data, from)
		if drop != DropNone {
			if total != 0 {
				t.Fatalf("dropped (%v) with total %d", drop, total)
			}
			if !tbl.IsPeer(from.Addr()) && drop != DropUnknownPeer && drop != DropTruncated {
				t.Fatalf("datagram from %v, no peer: %v, want unknown-peer", from, drop)
			}
			if tbl.IsPeer(from.Addr()) && !tbl.IsPeerPort(from) && drop != DropWrongPeerPort && drop != DropTruncated {
				t.Fatalf("datagram from %v, a peer's address on no peer's port: %v, want wrong-peer-port", from, drop)
			}
			if len(data) < ipv4.MinHeaderLen && drop != DropTruncated {
				t.Fatalf("%d bytes: %v", len(data), drop)
			}
			return
		}
		// Admitted: every rule holds.
		if tot, d := checkIPv4(data, true); d != DropNone || tot != total {
			t.Fatalf("admitted, but checkIPv4 = %d, %v", tot, d)
		}
		src, dst := addrOf(ipv4.Src(data)), addrOf(ipv4.Dst(data))
		if !tbl.IsPeerPort(from) {
			t.Fatalf("admitted from %v, no peer", from)
		}
		if r := tbl.LookupAddr(src); r == nil || r.Peer != from {
			t.Fatalf("admitted source %v from %v, whose subnet it is not in (%v)", src, from, r)
		}
		if !localSubnet.Contains(dst) {
			t.Fatalf("admitted destination %v, not in %v", dst, localSubnet)
		}
		if data[ipv4.OffTTL] < 2 {
			t.Fatalf("admitted with TTL %d", data[ipv4.OffTTL])
		}
	})
}

// fuzzLoop is an outbound loop reused across fuzz inputs, its fakes and
// rate limit reset for each.
type fuzzLoop struct {
	e    *Engine
	dev  *tuntest.Device
	conn *bindtest.Conn
	o    *outbound
}

func newFuzzLoop(tb testing.TB) *fuzzLoop {
	e, err := New(Config{Subnet: localSubnet, BatchSize: 4, MaxPacket: 1500})
	if err != nil {
		tb.Fatal(err)
	}
	e.SetRoutes(fuzzTable())
	l := &fuzzLoop{e: e, dev: newFakeDevice(4), conn: bindtest.NewConn()}
	l.o = e.newOutbound(Queue{Dev: l.dev, Conn: l.conn})
	return l
}

func FuzzOutbound(f *testing.F) {
	for _, p := range fuzzPackets() {
		f.Add(p)
	}
	l := newFuzzLoop(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		l.dev.Reset()
		l.conn.Reset()
		l.o.limit = rateLimit{}
		before := l.e.Stats()
		l.dev.Push(data)
		if err := l.o.step(); err != nil {
			t.Fatal(err)
		}
		s := l.e.Stats()
		read := data[:min(len(data), 1500)] // what the TUN read held
		var dropped uint64
		for d := range numDrops {
			dropped += s.Drops[d] - before.Drops[d]
		}
		if tx := s.TxPackets - before.TxPackets; tx+dropped != 1 {
			t.Fatalf("one packet: %d sent, %d dropped", tx, dropped)
		}
		sent, answers := l.conn.Sent(), l.dev.Written()
		if icmp := s.ICMPSent - before.ICMPSent; icmp != uint64(len(answers)) {
			t.Fatalf("ICMPSent grew by %d, %d answers written", icmp, len(answers))
		}
		if len(sent)+len(answers) > 1 {
			t.Fatalf("one packet: %d sent and %d answers", len(sent), len(answers))
		}
		total, drop := checkIPv4(read, false)
		if len(sent) == 1 {
			if drop != DropNone {
				t.Fatalf("sent a packet checkIPv4 drops: %v", drop)
			}
			pkt := read[:total]
			r := fuzzTable().Lookup(ipv4.Dst(pkt))
			if r == nil || sent[0].To != r.Peer {
				t.Fatalf("sent to %v, route %v", sent[0].To, r)
			}
			checkForwarded(t, sent[0].Data, pkt)
		}
		if len(answers) == 1 {
			if drop != DropNone || fuzzTable().Lookup(ipv4.Dst(read)) != nil {
				t.Fatal("answered a packet that was not routable-but-unrouted")
			}
			if problem := checkNetUnreachable(answers[0], read[:total]); problem != "" {
				t.Fatal(problem)
			}
		}
	})
}

func FuzzNetUnreachable(f *testing.F) {
	for _, p := range fuzzPackets() {
		f.Add(p)
	}
	out := make([]byte, icmpMaxLen)
	f.Fuzz(func(t *testing.T, data []byte) {
		total, drop := checkIPv4(data, false)
		if drop != DropNone {
			return // netUnreachable answers only checked packets
		}
		pkt := data[:total]
		clear(out)
		n := netUnreachable(out, pkt)
		if n < 0 || n > icmpMaxLen {
			t.Fatalf("answer of %d bytes", n)
		}
		if (n > 0) != answerable(pkt) {
			t.Fatalf("answered %d bytes, answerable %v", n, answerable(pkt))
		}
		// RFC 1122 3.2.2, checked another way than answerable does.
		hlen := int(pkt[0]&0x0f) * 4
		src, dst := addrOf(ipv4.Src(pkt)), addrOf(ipv4.Dst(pkt))
		notHost := func(a netip.Addr) bool {
			return a.IsUnspecified() || a.IsLoopback() || a.IsMulticast() || a.As4()[0] >= 240
		}
		icmpError := pkt[ipv4.OffProto] == ipv4.ProtoICMP && len(pkt) > hlen &&
			!slices.Contains([]byte{0, 8, 13, 14, 15, 16, 17, 18}, pkt[hlen])
		fragment := binary.BigEndian.Uint16(pkt[6:])&0x1fff != 0
		forbidden := fragment || icmpError || notHost(src) || dst.IsMulticast() || dst.As4()[0] >= 240
		if forbidden == (n > 0) {
			t.Fatalf("answered %v, but RFC 1122 forbids it %v (fragment %v, ICMP error %v, src %v, dst %v)",
				n > 0, forbidden, fragment, icmpError, src, dst)
		}
		if n > 0 {
			if problem := checkNetUnreachable(out[:n], pkt); problem != "" {
				t.Fatal(problem)
			}
		}
	})
}
