package engine

import (
	"encoding/binary"
	"fmt"
	"github.com/weft-dev/weft/encap/bindtest"
	"github.com/weft-dev/weft/tun/tuntest"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/weft-dev/weft/tun"

	"github.com/weft-dev/weft/ipv4"
)

// Tests of Config.ZeroCopySend and ZeroCopyReceive: super-packets from a device cut into
// segments whose payloads stay in the read buffer, and received datagrams
// written to the TUN from the socket's own buffers.

// superPacket is a TCP or UDP IPv4 super-packet from pod1 to dst with n
// payload bytes, as the kernel hands it over: total length the whole, the
// transport checksum partial (only the pseudo-header summed, NeedsCsum).
func superPacket(proto byte, dst netip.Addr, n int) []byte {
	thl := 20
	if proto == 17 {
		thl = 8
	}
	payload := make([]byte, thl+n)
	binary.BigEndian.PutUint16(payload[0:], 40000) // source port
	binary.BigEndian.PutUint16(payload[2:], 5201)  // iperf3
	if proto == 6 {
		binary.BigEndian.PutUint32(payload[4:], 0xfffff000) // sequence, about to wrap
		payload[12] = 5 << 4
		payload[13] = 0x18 // PSH, ACK
		binary.BigEndian.PutUint16(payload[14:], 502)
	} else {
		binary.BigEndian.PutUint16(payload[4:], uint16(thl+n))
	}
	for i := range payload[thl:] {
		payload[thl+i] = byte(i * 7)
	}
	return ipv4Packet(ipv4Spec{src: pod1, dst: dst, proto: proto, ttl: 64, id: 0x100, frag: 0x4000, payload: payload})
}

func TestOutboundSuperPackets(t *testing.T) {
	tcp := superPacket(6, pod2, 2500)
	udp := superPacket(17, pod3, 3000)
	tcpGSO := tun.GSO{Kind: tun.GSOTCPv4, SegmentSize: 1000, NeedsCsum: true, CsumStart: 20, CsumOffset: 16}
	udpGSO := tun.GSO{Kind: tun.GSOUDPv4, SegmentSize: 1400, NeedsCsum: true, CsumStart: 20, CsumOffset: 6}
	for _, tc := range []struct {
		name     string
		pkt      []byte
		gso      tun.GSO
		to       netip.AddrPort
		segments []int // payload sizes; nil: dropped
		drop     Drop
	}{
		{name: "TCP in 3", pkt: tcp, gso: tcpGSO, to: h2, segments: []int{1000, 1000, 500}},
		{name: "TCP in 1", pkt: tcp, gso: tun.GSO{Kind: tun.GSOTCPv4, SegmentSize: 2500}, to: h2, segments: []int{2500}},
		{name: "TCP, 64 segments", pkt: superPacket(6, pod2, 64*100), gso: tun.GSO{Kind: tun.GSOTCPv4, SegmentSize: 100}, to: h2, segments: repeatInt(100, 64)},
		{name: "UDP in 3", pkt: udp, gso: udpGSO, to: h3, segments: []int{1400, 1400, 200}},
		{name: "not a super-packet", pkt: udpPacket(pod1, pod2, 100), gso: tun.GSO{}, to: h2, segments: []int{-1}},

		{name: "TCP, 65 segments: cut in two windows", pkt: superPacket(6, pod2, 65*100), gso: tun.GSO{Kind: tun.GSOTCPv4, SegmentSize: 100}, to: h2, segments: repeatInt(100, 65)},
		{name: "kind TCP, protocol UDP", pkt: udp, gso: tcpGSO, drop: DropBadGSO},
		{name: "segment size 0", pkt: tcp, gso: tun.GSO{Kind: tun.GSOTCPv4}, drop: DropBadGSO},
		{name: "unknown kind", pkt: tcp, gso: tun.GSO{Kind: 9, SegmentSize: 1000}, drop: DropBadGSO},
		{name: "TTL 1", pkt: withTTL(tcp, 1), gso: tcpGSO, drop: DropTTLExpired},
		{name: "no route", pkt: superPacket(6, nowhere, 2500), gso: tcpGSO, drop: DropNoRoute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := New(Config{Subnet: localSubnet, BatchSize: 4, MaxPacket: 1500, ZeroCopySend: true})
			if err != nil {
				t.Fatal(err)
			}
			tbl, err := NewTable(testRoutes())
			if err != nil {
				t.Fatal(err)
			}
			e.SetRoutes(tbl)
			dev := tuntest.NewDevice(tun.Caps{Batch: 4, ReadSize: 65535, SuperPackets: true})
			conn := bindtest.NewConn()
			o := e.newOutbound(Queue{Dev: dev, Conn: conn})
			if o.gsoDev == nil {
				t.Fatal("outbound does not read super-packets from a device that hands them over")
			}
			dev.PushGSO([][]byte{tc.pkt}, []tun.GSO{tc.gso})
			if err := o.step(); err != nil {
				t.Fatal(err)
			}
			s := e.Stats()
			sent := conn.Sent()
			if tc.segments == nil {
				checkDrops(t, s, map[Drop]uint64{tc.drop: 1})
				if len(sent) != 0 || s.TxPackets != 0 {
					t.Fatalf("dropped super-packet sent: %d datagrams", len(sent))
				}
				if tc.drop == DropNoRoute {
					if a := dev.Written(); len(a) != 1 {
						t.Errorf("%d ICMP answers, want 1", len(a))
					} else if problem := checkNetUnreachable(a[0], tc.pkt); problem != "" {
						t.Error(problem)
					}
				}
				return
			}
			checkDrops(t, s, nil)
			if len(sent) != len(tc.segments) {
				t.Fatalf("sent %d datagrams, want %d", len(sent), len(tc.segments))
			}
			if tc.segments[0] < 0 { // a plain packet: sent whole, as always
				checkForwarded(t, sent[0].Data, tc.pkt)
				if sent[0].Head != 0 || sent[0].At != dev.ReadAt()[0] {
					t.Error("a plain packet was not sent from the read buffer")
				}
				return
			}
			var bytes uint64
			hlen := 20 + 20
			if tc.pkt[9] == 17 {
				hlen = 20 + 8
			}
			offset := 0
			for k, d := range sent {
				bytes += uint64(len(d.Data))
				if d.To != tc.to {
					t.Errorf("segment %d sent to %v, want %v", k, d.To, tc.to)
				}
				if d.Head != hlen || len(d.Data) != hlen+tc.segments[k] {
					t.Fatalf("segment %d: %d header + %d payload bytes, want %d + %d", k, d.Head, len(d.Data)-d.Head, hlen, tc.segments[k])
				}
				// The payload is the read buffer's, not a copy.
				if d.At != &dev.ReadBufs()[0][hlen+offset] {
					t.Errorf("segment %d payload is not in the read buffer", k)
				}
				if problem := checkSegment(d.Data, tc.pkt, k, offset); problem != "" {
					t.Errorf("segment %d: %s", k, problem)
				}
				offset += tc.segments[k]
			}
			if s.TxPackets != uint64(len(sent)) || s.TxBytes != bytes {
				t.Errorf("tx %d packets, %d bytes; want %d, %d", s.TxPackets, s.TxBytes, len(sent), bytes)
			}
		})
	}
}

func repeatInt(v, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = v
	}
	return out
}

// checkSegment checks segment k of super-packet orig (payload at offset off
// of orig's payload) with gopacket: a valid IPv4 packet with TTL one lower,
// ID and sequence advanced, its own length, full transport checksum.
func checkSegment(seg, orig []byte, k, off int) string {
	p := gopacket.NewPacket(seg, layers.LayerTypeIPv4, gopacket.Default)
	if el := p.ErrorLayer(); el != nil {
		return "gopacket: " + el.Error().Error()
	}
	ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if ip == nil {
		return "not IPv4"
	}
	switch {
	case int(ip.Length) != len(seg):
		return fmt.Sprintf("IP total length %d, %d bytes", ip.Length, len(seg))
	case !headerValid(seg):
		return "IP checksum wrong"
	case ip.TTL != orig[ipv4.OffTTL]-1:
		return fmt.Sprintf("TTL %d, want %d", ip.TTL, orig[ipv4.OffTTL]-1)
	case ip.Id != ipID(orig)+uint16(k):
		return fmt.Sprintf("IP ID %#x, want %#x", ip.Id, ipID(orig)+uint16(k))
	}
	thl := 20
	if orig[9] == 17 {
		thl = 8
	}
	if string(seg[20+thl:]) != string(orig[20+thl+off:20+thl+off+len(seg)-20-thl]) {
		return "payload differs from the super-packet's"
	}
	// The transport checksum over the pseudo-header and the segment.
	pseudo := make([]byte, 12, 12+len(seg)-20)
	copy(pseudo[0:8], seg[12:20])
	pseudo[9] = seg[9]
	binary.BigEndian.PutUint16(pseudo[10:], uint16(len(seg)-20))
	if refChecksum(append(pseudo, seg[20:]...)) != 0 {
		return "transport checksum wrong"
	}
	if tcp, ok := p.Layer(layers.LayerTypeTCP).(*layers.TCP); ok {
		if want := binary.BigEndian.Uint32(orig[24:]) + uint32(off); tcp.Seq != want {
			return fmt.Sprintf("TCP seq %#x, want %#x", tcp.Seq, want)
		}
	}
	if udp, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP); ok && int(udp.Length) != len(seg)-20 {
		return fmt.Sprintf("UDP length %d, want %d", udp.Length, len(seg)-20)
	}
	return ""
}

// TestInboundZeroCopy: with ZeroCopyReceive the socket points each message at its
// own buffer, and the engine writes that buffer to the TUN, at offset 0.
func TestInboundZeroCopy(t *testing.T) {
	e, err := New(Config{Subnet: localSubnet, BatchSize: 4, MaxPacket: 1500, ZeroCopyReceive: true})
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := NewTable(testRoutes())
	if err != nil {
		t.Fatal(err)
	}
	e.SetRoutes(tbl)
	dev, conn := newFakeDevice(4), bindtest.NewConn()
	for range 4 {
		conn.Own = append(conn.Own, make([]byte, 2000))
	}
	in := e.newInbound(Queue{Dev: dev, Conn: conn})
	for round := range 3 {
		pkts := []bindtest.Datagram{
			{Data: withID(udpPacket(pod2, pod1, 100), uint16(round)), From: h2},
			{Data: udpPacket(pod3, pod1, 10), From: h2}, // spoofed
			{Data: withID(udpPacket(pod3, pod1, 1400), uint16(round)), From: h3},
		}
		conn.Push(pkts...)
		if err := in.step(); err != nil {
			t.Fatal(err)
		}
		written := dev.Written()[2*round:]
		if len(written) != 2 {
			t.Fatalf("round %d: wrote %d packets, want 2", round, len(written))
		}
		checkForwarded(t, written[0], pkts[0].Data)
		checkForwarded(t, written[1], pkts[2].Data)
		if dev.WrittenAt()[2*round] != &conn.Own[0][0] || dev.WrittenAt()[2*round+1] != &conn.Own[2][0] {
			t.Errorf("round %d: the packets written are not the socket's buffers", round)
		}
	}
	s := e.Stats()
	checkDrops(t, s, map[Drop]uint64{DropSpoofedSource: 3})
	if s.RxPackets != 6 {
		t.Errorf("rx %d packets, want 6", s.RxPackets)
	}
}

// TestOutboundReadSize: the outbound loop reads into buffers of the size
// the device asks for, not the MTU's: a copying device may hand over a
// segment as large as the kernel cut it (after the MTU was raised from
// outside), and wireguard-go's indexes past a buffer too short for it.
func TestOutboundReadSize(t *testing.T) {
	for _, readSize := range []int{0, 9000, 65535} {
		t.Run(fmt.Sprint(readSize), func(t *testing.T) {
			e := newTestEngine(t, 4)
			dev := tuntest.NewDevice(tun.Caps{Batch: 4, ReadSize: readSize})
			o := e.newOutbound(Queue{Dev: dev, Conn: bindtest.NewConn()})
			want := tun.Headroom + max(1500, readSize)
			for i, b := range o.bufs {
				if len(b) != want {
					t.Fatalf("buffer %d holds %d bytes, want %d", i, len(b), want)
				}
			}
		})
	}
}
