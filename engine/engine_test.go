package engine

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/weft-dev/weft/encap/bindtest"
	"github.com/weft-dev/weft/tun/tuntest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/weft-dev/weft/encap"
	"github.com/weft-dev/weft/tun"

	"github.com/weft-dev/weft/ipv4"
)

// withTTL returns a copy of p with TTL ttl and a correct checksum.
func withTTL(p []byte, ttl byte) []byte {
	return with(p, func(p []byte) { p[ipv4.OffTTL] = ttl; fixChecksum(p) })
}

// withID returns a copy of p with IP ID id and a correct checksum, to tell
// packets of a batch apart.
func withID(p []byte, id uint16) []byte {
	return with(p, func(p []byte) { binary.BigEndian.PutUint16(p[4:], id); fixChecksum(p) })
}

func ipID(p []byte) uint16 { return binary.BigEndian.Uint16(p[4:]) }

// ipv6Packet is an IPv6 header and payload, as the kernel hands the TUN if
// something routes IPv6 into it.
func ipv6Packet() []byte {
	p := make([]byte, 48)
	p[0] = 0x60
	binary.BigEndian.PutUint16(p[4:], 8)
	p[6], p[7] = 17, 64
	copy(p[8:], netip.MustParseAddr("fd00::1").AsSlice())
	copy(p[24:], netip.MustParseAddr("fd00::2").AsSlice())
	return p
}

// forwarded is what a forwarded packet must look like: pkt cut to its total
// length, TTL one lower, the rest unchanged; the checksum is checked apart.
func checkForwarded(t *testing.T, got, pkt []byte) {
	t.Helper()
	total := int(binary.BigEndian.Uint16(pkt[ipv4.OffTotalLen:]))
	if len(got) != total {
		t.Fatalf("forwarded %d bytes, want the total length %d", len(got), total)
	}
	if got[ipv4.OffTTL] != pkt[ipv4.OffTTL]-1 {
		t.Errorf("forwarded TTL %d, want %d", got[ipv4.OffTTL], pkt[ipv4.OffTTL]-1)
	}
	for i := range got {
		if i != ipv4.OffTTL && i != ipv4.OffChecksum && i != ipv4.OffChecksum+1 && got[i] != pkt[i] {
			t.Fatalf("forwarded byte %d is %#02x, was %#02x", i, got[i], pkt[i])
		}
	}
	if headerValid(pkt) {
		if !headerValid(got) {
			t.Errorf("forwarded header checksum wrong: % x", got[:20])
		}
	} else if headerValid(got) {
		t.Errorf("a bad checksum was repaired: the engine only patches it")
	}
}

func TestOutboundStep(t *testing.T) {
	fwd := udpPacket(pod1, pod2, 100)
	for _, tc := range []struct {
		name string
		pkt  []byte
		drop Drop           // DropNone: forwarded
		to   netip.AddrPort // where a forwarded packet goes
		icmp bool           // a net unreachable answer goes back into the TUN
	}{
		{name: "to h2", pkt: fwd, to: h2},
		{name: "to h3", pkt: udpPacket(pod1, pod3, 0), to: h3},
		{name: "TTL 2", pkt: withTTL(fwd, 2), to: h2},
		{name: "TTL 255", pkt: withTTL(fwd, 255), to: h2},
		{name: "with options", pkt: ipv4Packet(ipv4Spec{src: pod1, dst: pod2, proto: 6, ttl: 9, options: []byte{1, 1, 1, 0}, payload: make([]byte, 20)}), to: h2},
		{name: "header only", pkt: ipv4Packet(ipv4Spec{src: pod1, dst: pod3, ttl: 64}), to: h3},
		{name: "trailing bytes after the total length", pkt: append(append([]byte(nil), fwd...), 0xde, 0xad), to: h2},
		// The kernel wrote the header: its checksum is not checked, only patched.
		{name: "bad checksum goes on", pkt: with(fwd, func(p []byte) { p[ipv4.OffChecksum] ^= 0x10 }), to: h2},
		{name: "largest packet", pkt: udpPacket(pod1, pod2, 1500-28), to: h2},

		{name: "empty", pkt: []byte{}, drop: DropTruncated},
		{name: "19 bytes", pkt: fwd[:19], drop: DropTruncated},
		{name: "IPv6", pkt: ipv6Packet(), drop: DropNotIPv4},
		{name: "IHL 4", pkt: with(fwd, func(p []byte) { p[0] = 0x44 }), drop: DropBadHeaderLen},
		{name: "IHL 15 in 20 bytes", pkt: with(fwd, func(p []byte) { p[0] = 0x4f })[:20], drop: DropBadHeaderLen},
		{name: "total length beyond the read", pkt: fwd[:len(fwd)-1], drop: DropBadTotalLen},
		{name: "total length below the header", pkt: with(fwd, func(p []byte) { p[2], p[3] = 0, 12 }), drop: DropBadTotalLen},
		// Cut by the buffer (the device hands over at most MaxPacket bytes).
		{name: "longer than the buffer", pkt: udpPacket(pod1, pod2, 1500), drop: DropBadTotalLen},
		{name: "TTL 1", pkt: withTTL(fwd, 1), drop: DropTTLExpired},
		{name: "TTL 0", pkt: withTTL(fwd, 0), drop: DropTTLExpired},
		// A source outside this host's subnet: a pod that spoofs, or a
		// route into the TUN of traffic that is not the overlay's. A weft
		// peer would drop it; a flanneld peer would deliver it.
		{name: "source in h2's subnet", pkt: udpPacket(pod2, pod3, 10), drop: DropForeignSource},
		{name: "source outside the network", pkt: udpPacket(netip.MustParseAddr("198.51.100.7"), pod2, 10), drop: DropForeignSource},
		{name: "source 0.0.0.0", pkt: udpPacket(netip.IPv4Unspecified(), pod2, 10), drop: DropForeignSource},
		{name: "source just below the subnet", pkt: udpPacket(netip.MustParseAddr("100.96.0.255"), pod2, 10), drop: DropForeignSource},
		{name: "source just above the subnet", pkt: udpPacket(netip.MustParseAddr("100.96.2.0"), pod2, 10), drop: DropForeignSource},
		{name: "source the subnet's first address", pkt: udpPacket(netip.MustParseAddr("100.96.1.0"), pod2, 10), to: h2},
		{name: "source the subnet's last address", pkt: udpPacket(netip.MustParseAddr("100.96.1.255"), pod2, 10), to: h2},
		// Not answered: the answer would go to an address that is not ours.
		{name: "foreign source, no route", pkt: udpPacket(pod2, nowhere, 10), drop: DropForeignSource},
		{name: "no route", pkt: udpPacket(pod1, nowhere, 10), drop: DropNoRoute, icmp: true},
		{name: "no route, outside the network", pkt: udpPacket(pod1, netip.MustParseAddr("198.51.100.7"), 10), drop: DropNoRoute, icmp: true},
		// The route is looked up first: an unroutable packet is answered whatever its TTL.
		{name: "no route, TTL 1", pkt: withTTL(udpPacket(pod1, nowhere, 10), 1), drop: DropNoRoute, icmp: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEngine(t, 8)
			dev, conn := newFakeDevice(64), bindtest.NewConn()
			o := e.newOutbound(Queue{Dev: dev, Conn: conn})
			dev.Push(tc.pkt)
			if err := o.step(); err != nil {
				t.Fatal(err)
			}
			s := e.Stats()
			sent := conn.Sent()
			if tc.drop == DropNone {
				checkDrops(t, s, nil)
				if len(sent) != 1 {
					t.Fatalf("sent %d datagrams, want 1", len(sent))
				}
				if sent[0].To != tc.to {
					t.Errorf("sent to %v, want %v", sent[0].To, tc.to)
				}
				checkForwarded(t, sent[0].Data, tc.pkt)
				if sent[0].At != dev.ReadAt()[0] {
					t.Errorf("the payload sent is not the buffer the TUN read filled: a copy")
				}
				total := uint64(len(sent[0].Data))
				if s.TxPackets != 1 || s.TxBytes != total {
					t.Errorf("tx %d packets, %d bytes; want 1, %d", s.TxPackets, s.TxBytes, total)
				}
			} else {
				checkDrops(t, s, map[Drop]uint64{tc.drop: 1})
				if len(sent) != 0 || s.TxPackets != 0 || s.TxBytes != 0 {
					t.Errorf("dropped packet sent: %d datagrams, tx %d packets, %d bytes", len(sent), s.TxPackets, s.TxBytes)
				}
			}
			if s.RxPackets != 0 || s.RxBytes != 0 {
				t.Errorf("outbound counted rx %d packets, %d bytes", s.RxPackets, s.RxBytes)
			}
			answers := dev.Written()
			switch {
			case !tc.icmp && len(answers) != 0:
				t.Fatalf("%d packets written back into the TUN, want none", len(answers))
			case tc.icmp && len(answers) != 1:
				t.Fatalf("%d packets written back into the TUN, want an ICMP answer", len(answers))
			case tc.icmp:
				if problem := checkNetUnreachable(answers[0], tc.pkt); problem != "" {
					t.Error(problem)
				}
			}
			if s.ICMPSent != uint64(len(answers)) {
				t.Errorf("ICMPSent = %d, want %d", s.ICMPSent, len(answers))
			}
		})
	}
}

func TestInboundStep(t *testing.T) {
	fwd := udpPacket(pod2, pod1, 100)
	for _, tc := range []struct {
		name string
		d    bindtest.Datagram
		drop Drop // DropNone: written to the TUN
	}{
		{name: "from h2", d: bindtest.Datagram{Data: fwd, From: h2}},
		{name: "from h3", d: bindtest.Datagram{Data: udpPacket(pod3, pod1, 0), From: h3}},
		{name: "TTL 2", d: bindtest.Datagram{Data: withTTL(fwd, 2), From: h2}},
		{name: "with options", d: bindtest.Datagram{Data: ipv4Packet(ipv4Spec{src: pod2, dst: pod1, proto: 6, ttl: 9, options: []byte{1, 1, 1, 0}, payload: make([]byte, 20)}), From: h2}},
		{name: "trailing bytes after the total length", d: bindtest.Datagram{Data: append(append([]byte(nil), fwd...), 1, 2, 3), From: h2}},
		{name: "largest packet", d: bindtest.Datagram{Data: udpPacket(pod2, pod1, 1500-28), From: h2}},
		{name: "checksum -0", d: bindtest.Datagram{Data: func() []byte {
			for id := range 1 << 16 {
				p := withID(fwd, uint16(id))
				if p[ipv4.OffChecksum] == 0 && p[ipv4.OffChecksum+1] == 0 {
					p[ipv4.OffChecksum], p[ipv4.OffChecksum+1] = 0xff, 0xff
					return p
				}
			}
			panic("no ID gives checksum 0")
		}(), From: h2}},

		{name: "empty", d: bindtest.Datagram{Data: []byte{}, From: h2}, drop: DropTruncated},
		{name: "19 bytes", d: bindtest.Datagram{Data: fwd[:19], From: h2}, drop: DropTruncated},
		{name: "cut by the receive buffer", d: bindtest.Datagram{Data: udpPacket(pod2, pod1, 1500), From: h2}, drop: DropTruncated},
		{name: "truncated flag", d: bindtest.Datagram{Data: fwd, From: h2, Truncated: true}, drop: DropTruncated},
		{name: "19 bytes from a stranger", d: bindtest.Datagram{Data: fwd[:19], From: stranger}, drop: DropTruncated},

		{name: "from a stranger", d: bindtest.Datagram{Data: fwd, From: stranger}, drop: DropUnknownPeer},
		{name: "from a stranger, source in no subnet", d: bindtest.Datagram{Data: udpPacket(netip.MustParseAddr("8.8.8.8"), pod1, 0), From: stranger}, drop: DropUnknownPeer},
		{name: "garbage from a stranger", d: bindtest.Datagram{Data: make([]byte, 40), From: stranger}, drop: DropUnknownPeer},
		{name: "from our own address", d: bindtest.Datagram{Data: fwd, From: netip.MustParseAddrPort("192.0.2.1:8285")}, drop: DropUnknownPeer},

		// flanneld and weftd send from the port they listen on: anything
		// else from a peer's address is some other process on that host
		// (or a masqueraded pod) speaking for its pods.
		{name: "from h2, another port", d: bindtest.Datagram{Data: fwd, From: netip.AddrPortFrom(h2.Addr(), 40000)}, drop: DropWrongPeerPort},
		{name: "from h2, port 0", d: bindtest.Datagram{Data: fwd, From: netip.AddrPortFrom(h2.Addr(), 0)}, drop: DropWrongPeerPort},
		{name: "from h2, h3's port", d: bindtest.Datagram{Data: fwd, From: netip.AddrPortFrom(h2.Addr(), h3.Port()+1)}, drop: DropWrongPeerPort},
		{name: "from h2, another port, source in h3's subnet", d: bindtest.Datagram{Data: udpPacket(pod3, pod1, 0), From: netip.AddrPortFrom(h2.Addr(), 40000)}, drop: DropWrongPeerPort},
		{name: "from h2, another port, garbage", d: bindtest.Datagram{Data: make([]byte, 40), From: netip.AddrPortFrom(h2.Addr(), 40000)}, drop: DropWrongPeerPort},
		{name: "19 bytes from h2, another port", d: bindtest.Datagram{Data: fwd[:19], From: netip.AddrPortFrom(h2.Addr(), 40000)}, drop: DropTruncated},

		{name: "source in h3's subnet, from h2", d: bindtest.Datagram{Data: udpPacket(pod3, pod1, 0), From: h2}, drop: DropSpoofedSource},
		{name: "source in no subnet, from h2", d: bindtest.Datagram{Data: udpPacket(netip.MustParseAddr("8.8.8.8"), pod1, 0), From: h2}, drop: DropSpoofedSource},
		{name: "source in our subnet, from h2", d: bindtest.Datagram{Data: udpPacket(netip.MustParseAddr("100.96.1.3"), pod1, 0), From: h2}, drop: DropSpoofedSource},

		{name: "to h3's subnet", d: bindtest.Datagram{Data: udpPacket(pod2, pod3, 0), From: h2}, drop: DropNotLocal},
		{name: "to the internet", d: bindtest.Datagram{Data: udpPacket(pod2, netip.MustParseAddr("8.8.8.8"), 0), From: h2}, drop: DropNotLocal},
		{name: "to the next subnet up", d: bindtest.Datagram{Data: udpPacket(pod2, netip.MustParseAddr("100.96.0.255"), 0), From: h2}, drop: DropNotLocal},

		{name: "IPv6", d: bindtest.Datagram{Data: ipv6Packet(), From: h2}, drop: DropNotIPv4},
		{name: "IHL 4", d: bindtest.Datagram{Data: with(fwd, func(p []byte) { p[0] = 0x44 }), From: h2}, drop: DropBadHeaderLen},
		{name: "IHL 15 in 20 bytes", d: bindtest.Datagram{Data: with(fwd, func(p []byte) { p[0] = 0x4f })[:20], From: h2}, drop: DropBadHeaderLen},
		{name: "total length beyond the datagram", d: bindtest.Datagram{Data: fwd[:len(fwd)-1], From: h2}, drop: DropBadTotalLen},
		{name: "total length 0", d: bindtest.Datagram{Data: with(fwd, func(p []byte) { p[2], p[3] = 0, 0; fixChecksum(p) }), From: h2}, drop: DropBadTotalLen},
		{name: "bad checksum", d: bindtest.Datagram{Data: with(fwd, func(p []byte) { p[ipv4.OffChecksum] ^= 0x10 }), From: h2}, drop: DropBadChecksum},
		{name: "TTL changed, checksum not", d: bindtest.Datagram{Data: with(fwd, func(p []byte) { p[ipv4.OffTTL]++ }), From: h2}, drop: DropBadChecksum},
		{name: "TTL 1", d: bindtest.Datagram{Data: withTTL(fwd, 1), From: h2}, drop: DropTTLExpired},
		{name: "TTL 0", d: bindtest.Datagram{Data: withTTL(fwd, 0), From: h2}, drop: DropTTLExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEngine(t, 8)
			dev, conn := newFakeDevice(64), bindtest.NewConn()
			in := e.newInbound(Queue{Dev: dev, Conn: conn})
			conn.Push(tc.d)
			if err := in.step(); err != nil {
				t.Fatal(err)
			}
			s := e.Stats()
			written := dev.Written()
			if tc.drop == DropNone {
				checkDrops(t, s, nil)
				if len(written) != 1 {
					t.Fatalf("wrote %d packets to the TUN, want 1", len(written))
				}
				checkForwarded(t, written[0], tc.d.Data)
				if dev.WrittenAt()[0] != conn.ReadAt()[0] {
					t.Errorf("the packet written is not the buffer the bindtest.Datagram was received into: a copy")
				}
				if total := uint64(len(written[0])); s.RxPackets != 1 || s.RxBytes != total {
					t.Errorf("rx %d packets, %d bytes; want 1, %d", s.RxPackets, s.RxBytes, total)
				}
			} else {
				checkDrops(t, s, map[Drop]uint64{tc.drop: 1})
				if len(written) != 0 || s.RxPackets != 0 || s.RxBytes != 0 {
					t.Errorf("dropped bindtest.Datagram written: %d packets, rx %d packets, %d bytes", len(written), s.RxPackets, s.RxBytes)
				}
			}
			if s.TxPackets != 0 || s.TxBytes != 0 || s.ICMPSent != 0 {
				t.Errorf("inbound counted tx %d packets, %d bytes, %d ICMP", s.TxPackets, s.TxBytes, s.ICMPSent)
			}
			if len(conn.Sent()) != 0 {
				t.Errorf("inbound sent datagrams")
			}
		})
	}
}

// TestInboundMaxPacket: a peer may send packets up to MaxPacket, however
// large the receive buffers are (an offloading device wants them larger,
// to coalesce into: tun.Caps.WriteSize).
func TestInboundMaxPacket(t *testing.T) {
	for _, buffer := range []int{0, 1500, 1501, 65535} {
		for _, tc := range []struct {
			size int
			drop Drop
		}{{1500, DropNone}, {1501, DropTruncated}, {9000, DropTruncated}} {
			t.Run(fmt.Sprintf("buffer=%d,packet=%d", buffer, tc.size), func(t *testing.T) {
				e, err := New(Config{Subnet: localSubnet, BatchSize: 8, MaxPacket: 1500})
				if err != nil {
					t.Fatal(err)
				}
				tbl, err := NewTable(testRoutes())
				if err != nil {
					t.Fatal(err)
				}
				e.SetRoutes(tbl)
				dev, conn := tuntest.NewDevice(tun.Caps{Batch: 8, WriteSize: buffer}), bindtest.NewConn()
				in := e.newInbound(Queue{Dev: dev, Conn: conn})
				conn.Push(bindtest.Datagram{Data: udpPacket(pod2, pod1, tc.size-28), From: h2})
				if err := in.step(); err != nil {
					t.Fatal(err)
				}
				want := map[Drop]uint64{}
				if tc.drop != DropNone {
					want[tc.drop] = 1
				}
				checkDrops(t, e.Stats(), want)
				wantWritten := 0
				if tc.drop == DropNone {
					wantWritten = 1
				}
				if written := dev.Written(); len(written) != wantWritten {
					t.Fatalf("%d packets written, want %d", len(written), wantWritten)
				}
			})
		}
	}
}

// TestInboundFlannelRecording feeds the datagrams a real flanneld sent (h2
// to h1, in the underlay recording) to h1's inbound loop: every one is
// admitted and written as flannel's own receiver would, TTL one lower. The
// datagrams h1 sent come from h1's own address, no peer of h1's.
func TestInboundFlannelRecording(t *testing.T) {
	h1 := netip.MustParseAddr("192.0.2.1")
	var fromH2, fromH1 []bindtest.Datagram
	for _, d := range needUnderlay(t) {
		switch d.from.Addr() {
		case h2.Addr():
			fromH2 = append(fromH2, bindtest.Datagram{Data: d.inner, From: d.from})
		case h1:
			fromH1 = append(fromH1, bindtest.Datagram{Data: d.inner, From: d.from})
		}
	}
	if len(fromH2) == 0 || len(fromH1) == 0 {
		t.Fatalf("recording has %d datagrams from h2 and %d from h1, want some of each", len(fromH2), len(fromH1))
	}
	e := newTestEngine(t, 64)
	dev, conn := newFakeDevice(64), bindtest.NewConn()
	in := e.newInbound(Queue{Dev: dev, Conn: conn})
	want := map[Drop]uint64{}
	var wantBytes uint64
	var wantWritten [][]byte
	for start := 0; start < len(fromH2); start += 64 {
		batch := fromH2[start:min(start+64, len(fromH2))]
		conn.Push(batch...)
		if err := in.step(); err != nil {
			t.Fatal(err)
		}
		for _, d := range batch {
			if d.Data[ipv4.OffTTL] <= 1 {
				want[DropTTLExpired]++
				continue
			}
			wantWritten = append(wantWritten, d.Data)
			wantBytes += uint64(len(d.Data))
		}
	}
	for start := 0; start < len(fromH1); start += 64 {
		conn.Push(fromH1[start:min(start+64, len(fromH1))]...)
		if err := in.step(); err != nil {
			t.Fatal(err)
		}
	}
	want[DropUnknownPeer] += uint64(len(fromH1))
	s := e.Stats()
	checkDrops(t, s, want)
	written := dev.Written()
	if len(written) != len(wantWritten) {
		t.Fatalf("wrote %d packets, want %d", len(written), len(wantWritten))
	}
	for i := range written {
		checkForwarded(t, written[i], wantWritten[i])
	}
	if s.RxPackets != uint64(len(wantWritten)) || s.RxBytes != wantBytes {
		t.Errorf("rx %d packets, %d bytes; want %d, %d", s.RxPackets, s.RxBytes, len(wantWritten), wantBytes)
	}
}

// TestOutboundBatchCounters sends one batch mixing every outcome and checks
// the counters and the order of what was sent.
func TestOutboundBatchCounters(t *testing.T) {
	base := udpPacket(pod1, pod2, 200)
	var batch [][]byte
	var wantSent [][]byte
	want := map[Drop]uint64{}
	var wantBytes uint64
	for i := range 64 {
		p := withID(base, uint16(i))
		switch i % 8 {
		case 0, 1, 2:
			wantSent = append(wantSent, p)
			wantBytes += uint64(len(p))
		case 3:
			p = withID(udpPacket(pod1, pod3, i), uint16(i))
			wantSent = append(wantSent, p)
			wantBytes += uint64(len(p))
		case 4:
			p = withTTL(p, 1)
			want[DropTTLExpired]++
		case 5:
			p = withID(udpPacket(pod1, nowhere, 0), uint16(i))
			want[DropNoRoute]++
		case 6:
			p = p[:10]
			want[DropTruncated]++
		case 7:
			p = ipv6Packet()
			want[DropNotIPv4]++
		}
		batch = append(batch, p)
	}
	e := newTestEngine(t, 64)
	dev, conn := newFakeDevice(64), bindtest.NewConn()
	o := e.newOutbound(Queue{Dev: dev, Conn: conn})
	dev.Push(batch...)
	if err := o.step(); err != nil {
		t.Fatal(err)
	}
	s := e.Stats()
	checkDrops(t, s, want)
	if s.TxPackets != uint64(len(wantSent)) || s.TxBytes != wantBytes {
		t.Errorf("tx %d packets, %d bytes; want %d, %d", s.TxPackets, s.TxBytes, len(wantSent), wantBytes)
	}
	if s.ICMPSent != want[DropNoRoute] {
		t.Errorf("ICMPSent = %d, want %d", s.ICMPSent, want[DropNoRoute])
	}
	sent := conn.Sent()
	if len(sent) != len(wantSent) {
		t.Fatalf("sent %d, want %d", len(sent), len(wantSent))
	}
	if conn.Writes() != 1 {
		t.Errorf("%d WriteBatch calls for one batch, want 1", conn.Writes())
	}
	for i, d := range sent {
		checkForwarded(t, d.Data, wantSent[i])
		// The i-th packet sent was read into buffer ID (its index in the batch).
		if d.At != dev.ReadAt()[ipID(d.Data)] {
			t.Errorf("datagram %d is not the TUN's buffer %d: a copy", i, ipID(d.Data))
		}
	}
}

// TestSendError: the socket refuses some datagrams; each is dropped and
// counted, and the rest of the batch still goes, in order.
func TestSendError(t *testing.T) {
	for _, refused := range [][]int{{0}, {3}, {7}, {1, 2}, {0, 7}, {1, 3, 5}, {0, 1, 2, 3, 4, 5, 6, 7}} {
		t.Run(fmt.Sprint(refused), func(t *testing.T) {
			e := newTestEngine(t, 8)
			dev, conn := newFakeDevice(8), bindtest.NewConn()
			conn.Refuse = func(m encap.Message) bool {
				for _, id := range refused {
					if ipID(m.Buf) == uint16(id) {
						return true
					}
				}
				return false
			}
			o := e.newOutbound(Queue{Dev: dev, Conn: conn})
			var batch [][]byte
			var wantIDs []uint16
			var wantBytes uint64
			for i := range 8 {
				dst := pod2
				if i%2 == 1 {
					dst = pod3
				}
				p := withID(udpPacket(pod1, dst, 10*i), uint16(i))
				batch = append(batch, p)
				if !containsInt(refused, i) {
					wantIDs = append(wantIDs, uint16(i))
					wantBytes += uint64(len(p))
				}
			}
			dev.Push(batch...)
			if err := o.step(); err != nil {
				t.Fatal(err)
			}
			var gotIDs []uint16
			for _, d := range conn.Sent() {
				gotIDs = append(gotIDs, ipID(d.Data))
			}
			if fmt.Sprint(gotIDs) != fmt.Sprint(wantIDs) {
				t.Errorf("sent IDs %v, want %v", gotIDs, wantIDs)
			}
			s := e.Stats()
			checkDrops(t, s, map[Drop]uint64{DropSendError: uint64(len(refused))})
			if s.TxPackets != uint64(len(wantIDs)) || s.TxBytes != wantBytes {
				t.Errorf("tx %d packets, %d bytes; want %d, %d", s.TxPackets, s.TxBytes, len(wantIDs), wantBytes)
			}
		})
	}
}

// TestTUNWriteError: the TUN refuses some packets; each is dropped and
// counted, and the rest of the batch is still written, in order. Which
// packets the device refused is not known to the engine, so the bytes
// counted need only lie between the sums of the smallest and of the
// largest packets that many.
func TestTUNWriteError(t *testing.T) {
	for _, refused := range [][]int{{0}, {3}, {7}, {1, 2}, {0, 7}, {1, 3, 5}, {0, 1, 2, 3, 4, 5, 6, 7}} {
		t.Run(fmt.Sprint(refused), func(t *testing.T) {
			e := newTestEngine(t, 8)
			dev, conn := newFakeDevice(8), bindtest.NewConn()
			dev.Refuse = func(p []byte) bool { return containsInt(refused, int(ipID(p))) }
			in := e.newInbound(Queue{Dev: dev, Conn: conn})
			var batch []bindtest.Datagram
			var wantIDs []uint16
			var sizes []uint64 // ascending
			for i := range 8 {
				p := withID(udpPacket(pod2, pod1, 10*i), uint16(i))
				batch = append(batch, bindtest.Datagram{Data: p, From: h2})
				sizes = append(sizes, uint64(len(p)))
				if !containsInt(refused, i) {
					wantIDs = append(wantIDs, uint16(i))
				}
			}
			var least, most uint64
			for i := range len(wantIDs) {
				least += sizes[i]
				most += sizes[len(sizes)-1-i]
			}
			conn.Push(batch...)
			if err := in.step(); err != nil {
				t.Fatal(err)
			}
			var gotIDs []uint16
			for _, p := range dev.Written() {
				gotIDs = append(gotIDs, ipID(p))
			}
			if fmt.Sprint(gotIDs) != fmt.Sprint(wantIDs) {
				t.Errorf("written IDs %v, want %v", gotIDs, wantIDs)
			}
			s := e.Stats()
			checkDrops(t, s, map[Drop]uint64{DropTUNWriteError: uint64(len(refused))})
			if s.RxPackets != uint64(len(wantIDs)) || s.RxBytes < least || s.RxBytes > most {
				t.Errorf("rx %d packets, %d bytes; want %d, %d..%d bytes", s.RxPackets, s.RxBytes, len(wantIDs), least, most)
			}
		})
	}
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestNetUnreachableAnswers: which packets to an unleased subnet get an
// ICMP net unreachable back (RFC 1122 3.2.2 forbids some answers).
func TestNetUnreachableAnswers(t *testing.T) {
	udp := udpPacket(pod1, nowhere, 20)
	src := func(a string) []byte { return udpPacket(netip.MustParseAddr(a), nowhere, 20) }
	dst := func(a string) []byte { return udpPacket(pod1, netip.MustParseAddr(a), 20) }
	frag := func(v uint16) []byte {
		return with(udp, func(p []byte) { binary.BigEndian.PutUint16(p[6:], v); fixChecksum(p) })
	}
	for _, tc := range []struct {
		name   string
		pkt    []byte
		answer bool
	}{
		{"UDP", udp, true},
		{"TCP SYN", ipv4Packet(ipv4Spec{src: pod1, dst: nowhere, proto: 6, ttl: 64, frag: 0x4000, payload: []byte{0xa4, 0x10, 0, 80, 1, 2, 3, 4, 0, 0, 0, 0, 0x50, 0x02, 0xfa, 0xf0, 0, 0, 0, 0}}), true},
		{"large packet, quote cut to fit 576", udpPacket(pod1, nowhere, 1400), true},
		{"with options, quoted", ipv4Packet(ipv4Spec{src: pod1, dst: nowhere, proto: 17, ttl: 64, options: []byte{0x94, 4, 0, 0}, payload: make([]byte, 16)}), true},
		{"ICMP echo request", icmpPacket(pod1, nowhere, 8, 0), true},
		{"ICMP echo reply", icmpPacket(pod1, nowhere, 0, 0), true},
		{"ICMP timestamp", icmpPacket(pod1, nowhere, 13, 0), true},
		{"DF set", frag(0x4000), true},
		{"first fragment", frag(0x2000), true},

		{"ICMP destination unreachable", icmpPacket(pod1, nowhere, 3, 1), false},
		{"ICMP source quench", icmpPacket(pod1, nowhere, 4, 0), false},
		{"ICMP redirect", icmpPacket(pod1, nowhere, 5, 0), false},
		{"ICMP time exceeded", icmpPacket(pod1, nowhere, 11, 0), false},
		{"ICMP parameter problem", icmpPacket(pod1, nowhere, 12, 0), false},
		{"middle fragment", frag(0x2000 | 185), false},
		{"last fragment", frag(185), false},
		{"last fragment, offset 1", frag(1), false},
		{"source 0.0.0.0", src("0.0.0.0"), false},
		{"source 255.255.255.255", src("255.255.255.255"), false},
		{"source multicast", src("224.0.0.1"), false},
		{"source multicast, top", src("239.255.255.255"), false},
		{"source loopback", src("127.0.0.1"), false},
		{"source class E", src("240.0.0.1"), false},
		{"to multicast", dst("224.0.0.251"), false},
		{"to multicast, top", dst("239.255.255.250"), false},
		{"to 255.255.255.255", dst("255.255.255.255"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEngine(t, 8)
			dev, conn := newFakeDevice(8), bindtest.NewConn()
			o := e.newOutbound(Queue{Dev: dev, Conn: conn})
			dev.Push(tc.pkt)
			if err := o.step(); err != nil {
				t.Fatal(err)
			}
			// The rules hold on their own; a source outside this host's
			// subnet does not even get that far.
			if got := answerable(tc.pkt); got != tc.answer {
				t.Errorf("answerable = %v, want %v", got, tc.answer)
			}
			want := DropNoRoute
			if !localSubnet.Contains(netip.AddrFrom4([4]byte(tc.pkt[ipv4.OffSrc : ipv4.OffSrc+4]))) {
				want = DropForeignSource
			}
			checkDrops(t, e.Stats(), map[Drop]uint64{want: 1})
			answers := dev.Written()
			if !tc.answer {
				if len(answers) != 0 {
					t.Fatalf("answered % x", answers[0])
				}
				return
			}
			if len(answers) != 1 {
				t.Fatalf("%d answers, want 1", len(answers))
			}
			if problem := checkNetUnreachable(answers[0], tc.pkt); problem != "" {
				t.Fatal(problem)
			}
		})
	}
}

// TestNetUnreachableFlannelRecording: the packets pod 1 sent to 100.96.7.7,
// which no host leases, got nothing back from flanneld and the TCP connect
// timed out. weft answers each of them.
func TestNetUnreachableFlannelRecording(t *testing.T) {
	var toNowhere [][]byte
	for _, p := range needPod(t) {
		if ipv4.Dst(p) == u32(nowhere) {
			toNowhere = append(toNowhere, p)
		}
	}
	if len(toNowhere) == 0 {
		t.Fatal("no packets to 100.96.7.7 in the recording")
	}
	e := newTestEngine(t, 64)
	dev, conn := newFakeDevice(64), bindtest.NewConn()
	o := e.newOutbound(Queue{Dev: dev, Conn: conn})
	dev.Push(toNowhere...)
	if err := o.step(); err != nil {
		t.Fatal(err)
	}
	answers := dev.Written()
	if len(answers) != len(toNowhere) {
		t.Fatalf("%d answers to %d packets", len(answers), len(toNowhere))
	}
	for i, a := range answers {
		if problem := checkNetUnreachable(a, toNowhere[i]); problem != "" {
			t.Errorf("answer %d: %s", i, problem)
		}
	}
	s := e.Stats()
	if s.ICMPSent != uint64(len(toNowhere)) || s.Dropped(DropNoRoute) != uint64(len(toNowhere)) {
		t.Errorf("ICMPSent %d, no-route drops %d; want %d each", s.ICMPSent, s.Dropped(DropNoRoute), len(toNowhere))
	}
}

func TestRateLimit(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	for _, tc := range []struct {
		name  string
		calls []time.Time
		want  int // allowed
	}{
		{"burst", repeatTime(t0, icmpBurst), icmpBurst},
		{"burst then none", repeatTime(t0, icmpBurst+30), icmpBurst},
		{"one token per 10 ms", append(repeatTime(t0, icmpBurst+1), at(10*time.Millisecond), at(10*time.Millisecond), at(20*time.Millisecond)), icmpBurst + 2},
		{"less than a token", append(repeatTime(t0, icmpBurst), at(9*time.Millisecond)), icmpBurst},
		{"refill caps at the burst", append(repeatTime(t0, icmpBurst), repeatTime(at(time.Hour), icmpBurst+5)...), 2 * icmpBurst},
		{"steady 100/s", everyFor(t0, 10*time.Millisecond, 1000), 1000},
		{"steady 200/s", everyFor(t0, 5*time.Millisecond, 1000), icmpBurst + 500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r rateLimit
			got := 0
			for _, now := range tc.calls {
				if r.allow(now) {
					got++
				}
			}
			// The steady cases may be off by one at the burst's edge.
			if d := got - tc.want; d < -1 || d > 1 || (len(tc.calls) < 100 && d != 0) {
				t.Fatalf("allowed %d of %d, want %d", got, len(tc.calls), tc.want)
			}
		})
	}
}

func repeatTime(t time.Time, n int) []time.Time {
	out := make([]time.Time, n)
	for i := range out {
		out[i] = t
	}
	return out
}

func everyFor(t time.Time, d time.Duration, n int) []time.Time {
	out := make([]time.Time, n)
	for i := range out {
		out[i] = t.Add(time.Duration(i) * d)
	}
	return out
}

// TestNetUnreachableRateLimited: a burst of answers, then none; the count
// of the second batch is bounded by what the bucket can have refilled in
// the time the test took, however slow the machine.
func TestNetUnreachableRateLimited(t *testing.T) {
	e := newTestEngine(t, 64)
	dev, conn := newFakeDevice(64), bindtest.NewConn()
	o := e.newOutbound(Queue{Dev: dev, Conn: conn})
	var batch [][]byte
	for i := range 64 {
		batch = append(batch, withID(udpPacket(pod1, nowhere, 0), uint16(i)))
	}
	start := time.Now()
	dev.Push(batch...)
	if err := o.step(); err != nil {
		t.Fatal(err)
	}
	if n := len(dev.Written()); n != icmpBurst {
		t.Fatalf("first batch: %d answers, want the burst, %d", n, icmpBurst)
	}
	dev.Push(batch...)
	if err := o.step(); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	refill := int(elapsed.Seconds() * icmpPerSecond)
	if n := len(dev.Written()) - icmpBurst; n > refill {
		t.Fatalf("second batch: %d answers, want at most %d after %v", n, refill, elapsed)
	}
	s := e.Stats()
	if s.Dropped(DropNoRoute) != 128 || s.ICMPSent != uint64(len(dev.Written())) {
		t.Errorf("no-route drops %d, ICMPSent %d; want 128, %d", s.Dropped(DropNoRoute), s.ICMPSent, len(dev.Written()))
	}
}

// TestNetUnreachableSpendsNoTokenWithoutAnswer: packets that must get no
// answer (here ICMP errors and fragments) must not use up the rate limit
// of the ones that do.
func TestNetUnreachableSpendsNoTokenWithoutAnswer(t *testing.T) {
	e := newTestEngine(t, 64)
	dev, conn := newFakeDevice(64), bindtest.NewConn()
	o := e.newOutbound(Queue{Dev: dev, Conn: conn})
	var batch [][]byte
	for i := range 32 {
		batch = append(batch, icmpPacket(pod1, nowhere, 3, 3), with(udpPacket(pod1, nowhere, 0), func(p []byte) {
			binary.BigEndian.PutUint16(p[6:], uint16(100+i))
			fixChecksum(p)
		}))
	}
	dev.Push(batch...)
	if err := o.step(); err != nil {
		t.Fatal(err)
	}
	dev.Push(udpPacket(pod1, nowhere, 0))
	if err := o.step(); err != nil {
		t.Fatal(err)
	}
	if n := len(dev.Written()); n != 1 {
		t.Fatalf("%d answers, want 1: unanswered packets spent the tokens", n)
	}
}

// TestICMPWriteError: an answer the TUN refuses is not counted as sent, the
// others still go, and the packets answered are still no-route drops.
func TestICMPWriteError(t *testing.T) {
	e := newTestEngine(t, 8)
	dev, conn := newFakeDevice(8), bindtest.NewConn()
	// Refuse the answer to the second packet (its quote carries ID 1).
	dev.Refuse = func(p []byte) bool { return len(p) >= 48 && ipID(p[28:]) == 1 }
	o := e.newOutbound(Queue{Dev: dev, Conn: conn})
	dev.Push(withID(udpPacket(pod1, nowhere, 0), 0), withID(udpPacket(pod1, nowhere, 0), 1), withID(udpPacket(pod1, nowhere, 0), 2), udpPacket(pod1, pod2, 0))
	if err := o.step(); err != nil {
		t.Fatal(err)
	}
	s := e.Stats()
	if got := len(dev.Written()); s.ICMPSent != uint64(got) || got != 2 {
		t.Errorf("ICMPSent %d, written %d; want 2 each", s.ICMPSent, got)
	}
	checkDrops(t, s, map[Drop]uint64{DropNoRoute: 3})
	if s.TxPackets != 1 {
		t.Errorf("tx %d packets, want 1", s.TxPackets)
	}
}

// TestOutboundBatchSize: a step reads at most the smaller of the engine's
// and the device's batch sizes.
func TestOutboundBatchSize(t *testing.T) {
	for _, tc := range []struct{ engine, device, want int }{{64, 8, 8}, {4, 64, 4}, {1, 64, 1}} {
		t.Run(fmt.Sprintf("engine=%d,device=%d", tc.engine, tc.device), func(t *testing.T) {
			e := newTestEngine(t, tc.engine)
			dev, conn := newFakeDevice(tc.device), bindtest.NewConn()
			o := e.newOutbound(Queue{Dev: dev, Conn: conn})
			if len(o.bufs) != tc.want || len(o.sizes) != tc.want {
				t.Fatalf("outbound batch %d, want %d", len(o.bufs), tc.want)
			}
		})
	}
}

// TestRoutesSwap: a table set while forwarding takes effect at the next batch.
func TestRoutesSwap(t *testing.T) {
	e := newTestEngine(t, 8)
	dev, conn := newFakeDevice(8), bindtest.NewConn()
	o := e.newOutbound(Queue{Dev: dev, Conn: conn})
	dev.Push(udpPacket(pod1, nowhere, 0))
	if err := o.step(); err != nil {
		t.Fatal(err)
	}
	tbl, err := e.Routes().Apply([]Change{{Route: Route{Subnet: netip.MustParsePrefix("100.96.7.0/24"), Peer: h3}}})
	if err != nil {
		t.Fatal(err)
	}
	e.SetRoutes(tbl)
	dev.Push(udpPacket(pod1, nowhere, 0))
	if err := o.step(); err != nil {
		t.Fatal(err)
	}
	if sent := conn.Sent(); len(sent) != 1 || sent[0].To != h3 {
		t.Fatalf("after the new route: sent %v, want one bindtest.Datagram to %v", sent, h3)
	}
	checkDrops(t, e.Stats(), map[Drop]uint64{DropNoRoute: 1})
}

func TestNewConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"valid", Config{Subnet: localSubnet, BatchSize: 64, MaxPacket: 1472}, true},
		{"unmasked subnet", Config{Subnet: netip.MustParsePrefix("100.96.1.1/24"), BatchSize: 1, MaxPacket: 65535}, true},
		{"no subnet", Config{BatchSize: 64, MaxPacket: 1472}, false},
		{"IPv6 subnet", Config{Subnet: netip.MustParsePrefix("fd00::/64"), BatchSize: 64, MaxPacket: 1472}, false},
		{"batch 0", Config{Subnet: localSubnet, MaxPacket: 1472}, false},
		{"packet too small", Config{Subnet: localSubnet, BatchSize: 64, MaxPacket: 19}, false},
		{"packet too large", Config{Subnet: localSubnet, BatchSize: 64, MaxPacket: 65536}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := New(tc.cfg)
			if (err == nil) != tc.ok {
				t.Fatalf("New(%+v) error %v, want ok=%v", tc.cfg, err, tc.ok)
			}
			if err == nil && (e.Routes() == nil || e.Routes().Len() != 0) {
				t.Fatalf("new engine's table is not empty")
			}
		})
	}
	e, err := New(Config{Subnet: netip.MustParsePrefix("100.96.1.77/24"), BatchSize: 1, MaxPacket: 1500})
	if err != nil {
		t.Fatal(err)
	}
	for a, want := range map[string]bool{"100.96.1.0": true, "100.96.1.255": true, "100.96.0.255": false, "100.96.2.0": false} {
		if got := e.inSubnet(u32(netip.MustParseAddr(a))); got != want {
			t.Errorf("inSubnet(%s) = %v, want %v", a, got, want)
		}
	}
}

// runEngine starts e.Run in the background; wait returns its error, failing
// the test if Run does not return within a generous bound (a hang guard, not
// a timing assertion).
func runEngine(t *testing.T, ctx context.Context, e *Engine, queues []Queue) (wait func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx, queues) }()
	return func() error {
		t.Helper()
		select {
		case err := <-done:
			return err
		case <-time.After(20 * time.Second):
			t.Fatal("Run did not return")
			return nil
		}
	}
}

type fakeQueue struct {
	dev  *tuntest.Device
	conn *bindtest.Conn
}

func newFakeQueues(n int) ([]fakeQueue, []Queue) {
	var fq []fakeQueue
	var qs []Queue
	for range n {
		d, c := newFakeDevice(64), bindtest.NewConn()
		fq = append(fq, fakeQueue{d, c})
		qs = append(qs, Queue{Dev: d, Conn: c})
	}
	return fq, qs
}

func checkClosed(t *testing.T, fq []fakeQueue) {
	t.Helper()
	for i, q := range fq {
		if !q.dev.Closed() || !q.conn.Closed() {
			t.Errorf("queue %d: device closed %v, socket closed %v; want both closed", i, q.dev.Closed(), q.conn.Closed())
		}
	}
}

// TestRun forwards both ways on several queues, then stops when ctx is
// cancelled, closing every device and socket and returning no error.
func TestRun(t *testing.T) {
	e := newTestEngine(t, 64)
	fq, queues := newFakeQueues(3)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wait := runEngine(t, ctx, e, queues)
	out, in := udpPacket(pod1, pod2, 300), udpPacket(pod3, pod1, 400)
	for i, q := range fq {
		q.dev.Push(withID(out, uint16(i)), withID(out, uint16(i)), udpPacket(pod1, nowhere, 0))
		q.conn.Push(bindtest.Datagram{Data: withID(in, uint16(i)), From: h3}, bindtest.Datagram{Data: in, From: stranger})
	}
	n := uint64(len(fq))
	eventually(t, "every queue to forward", func() bool {
		s := e.Stats()
		return s.TxPackets == 2*n && s.RxPackets == n && s.ICMPSent == n && s.Dropped(DropUnknownPeer) == n
	})
	for i, q := range fq {
		sent := q.conn.Sent()
		if len(sent) != 2 || sent[0].To != h2 || ipID(sent[0].Data) != uint16(i) {
			t.Errorf("queue %d: sent %d datagrams, want 2 to %v", i, len(sent), h2)
		}
		eventually(t, "the answer and the inbound packet in the TUN", func() bool { return len(q.dev.Written()) == 2 })
	}
	cancel()
	if err := wait(); err != nil {
		t.Fatalf("Run after cancel: %v, want nil", err)
	}
	checkClosed(t, fq)
	s := e.Stats()
	if s.TxBytes != 2*n*uint64(len(out)) || s.RxBytes != n*uint64(len(in)) {
		t.Errorf("tx %d bytes, rx %d bytes; want %d, %d", s.TxBytes, s.RxBytes, 2*n*uint64(len(out)), n*uint64(len(in)))
	}
	checkDrops(t, s, map[Drop]uint64{DropNoRoute: n, DropUnknownPeer: n})
}

func TestRunCancelled(t *testing.T) {
	for _, tc := range []struct {
		name   string
		before bool // cancel before Run starts
	}{{"while idle", false}, {"before start", true}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEngine(t, 64)
			fq, queues := newFakeQueues(2)
			ctx, cancel := context.WithCancel(context.Background())
			if tc.before {
				cancel()
			}
			wait := runEngine(t, ctx, e, queues)
			cancel()
			if err := wait(); err != nil {
				t.Fatalf("Run: %v, want nil", err)
			}
			checkClosed(t, fq)
		})
	}
}

// TestRunFlushesOnStop: a batch read before ctx is done is still sent and
// written: Run stops the reads, waits for the loops, and closes only then.
func TestRunFlushesOnStop(t *testing.T) {
	e := newTestEngine(t, 64)
	fq, queues := newFakeQueues(2)
	conn := fq[0].conn
	conn.Gate, conn.Entered = make(chan struct{}), make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wait := runEngine(t, ctx, e, queues)
	fq[0].dev.Push(udpPacket(pod1, pod2, 100), udpPacket(pod1, pod3, 200))
	<-conn.Entered // the outbound loop holds the batch, sending it
	fq[1].conn.Push(bindtest.Datagram{Data: udpPacket(pod2, pod1, 300), From: h2})
	eventually(t, "the inbound packet written", func() bool { return len(fq[1].dev.Written()) == 1 })
	cancel()
	eventually(t, "the reads stopped", func() bool {
		return fq[1].conn.ReadStopped()
	})
	if conn.Closed() {
		t.Fatal("the socket was closed under a batch in flight")
	}
	close(conn.Gate)
	if err := wait(); err != nil {
		t.Fatalf("Run: %v, want nil", err)
	}
	if sent := conn.Sent(); len(sent) != 2 {
		t.Errorf("sent %d datagrams of the batch in flight, want 2", len(sent))
	}
	if s := e.Stats(); s.TxPackets != 2 || s.RxPackets != 1 {
		t.Errorf("tx %d, rx %d packets; want 2, 1", s.TxPackets, s.RxPackets)
	}
	checkClosed(t, fq)
}

// closeOnly is a device whose read deadline fails: it cannot stop reading
// but by closing.
type closeOnly struct{ tun.Device }

func (closeOnly) SetReadDeadline(time.Time) error { return errors.New("no deadline") }

// TestRunStopClosesWhatCannotStopReading: without a read deadline, the
// device is closed at once, which ends its read; Run still returns nil.
func TestRunStopClosesWhatCannotStopReading(t *testing.T) {
	e := newTestEngine(t, 64)
	fq, queues := newFakeQueues(1)
	queues[0].Dev = closeOnly{fq[0].dev}
	ctx, cancel := context.WithCancel(context.Background())
	wait := runEngine(t, ctx, e, queues)
	fq[0].dev.Push(udpPacket(pod1, pod2, 100))
	eventually(t, "a packet forwarded", func() bool { return e.Stats().TxPackets == 1 })
	cancel()
	if err := wait(); err != nil {
		t.Fatalf("Run: %v, want nil", err)
	}
	checkClosed(t, fq)
}

// TestRunReadError: when a device or socket read fails, Run stops every
// loop, closes everything and returns that error, naming the worker.
func TestRunReadError(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name string
		fail func(q fakeQueue)
		want string
	}{
		{"TUN read", func(q fakeQueue) { q.dev.Fail(boom) }, "worker 1: read tun: boom"},
		{"socket read", func(q fakeQueue) { q.conn.Fail(boom) }, "worker 1: receive: boom"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEngine(t, 64)
			fq, queues := newFakeQueues(3)
			wait := runEngine(t, context.Background(), e, queues)
			fq[1].dev.Push(udpPacket(pod1, pod2, 0))
			eventually(t, "a packet forwarded", func() bool { return e.Stats().TxPackets == 1 })
			tc.fail(fq[1])
			err := wait()
			if !errors.Is(err, boom) {
				t.Fatalf("Run: %v, want %v", err, boom)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Run: %q, want it to say %q", err, tc.want)
			}
			checkClosed(t, fq)
		})
	}
}

// TestStatsWhileStarting reads the counters while Run sets its loops up, as
// a metrics scrape at start-up does; with -race it catches a loop's counters
// changed after Stats can see them.
func TestStatsWhileStarting(t *testing.T) {
	e := newTestEngine(t, 8)
	fq, queues := newFakeQueues(8)
	ctx, cancel := context.WithCancel(context.Background())
	wait := runEngine(t, ctx, e, queues)
	fq[7].conn.Push(bindtest.Datagram{Data: udpPacket(pod2, pod1, 0), From: h2})
	eventually(t, "the last queue to forward", func() bool {
		s := e.Stats()
		if s.TxPackets != 0 {
			t.Fatalf("an inbound packet counted as sent")
		}
		return s.RxPackets == 1
	})
	cancel()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
}

// TestRunDeviceCaps: Run refuses a device that asks for more headroom than
// the engine leaves, or any with zero-copy receive, which leaves none.
func TestRunDeviceCaps(t *testing.T) {
	for _, tc := range []struct {
		caps     tun.Caps
		zeroCopy bool
	}{
		{tun.Caps{Batch: 0}, false},
		{tun.Caps{Batch: 8, WriteHeadroom: tun.Headroom + 1}, false},
		{tun.Caps{Batch: 8, WriteHeadroom: 10}, true},
	} {
		e, err := New(Config{Subnet: localSubnet, BatchSize: 8, MaxPacket: 1500, ZeroCopyReceive: tc.zeroCopy})
		if err != nil {
			t.Fatal(err)
		}
		q := Queue{Dev: tuntest.NewDevice(tc.caps), Conn: bindtest.NewConn()}
		if err := e.Run(context.Background(), []Queue{q}); err == nil {
			t.Errorf("Run with a device of %+v (zero-copy receive %v): no error", tc.caps, tc.zeroCopy)
		}
	}
}

func TestRunNoQueues(t *testing.T) {
	e := newTestEngine(t, 64)
	if err := e.Run(context.Background(), nil); err == nil {
		t.Fatal("Run with no queues: no error")
	}
}
