package tun

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/weft-dev/weft/ipv4"
)

// flannelPackets returns the inner IPv4 packets of the flannel recording:
// the payloads of the underlay's UDP datagrams to and from port 8285
// (pings, pings with TTL 1, a 100 KB TCP transfer), in the order captured.
func flannelPackets(tb testing.TB) [][]byte {
	tb.Helper()
	path := filepath.Join("..", "testdata", "flannel", "flannel-udp-underlay.pcap")
	f, err := os.Open(path)
	if err != nil {
		tb.Fatalf("the flannel recording: %v", err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		tb.Fatal(err)
	}
	var pkts [][]byte
	for {
		data, _, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			tb.Fatal(err)
		}
		pk := gopacket.NewPacket(data, r.LinkType(), gopacket.Default)
		udp, ok := pk.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if !ok || (udp.DstPort != 8285 && udp.SrcPort != 8285) {
			continue
		}
		pkts = append(pkts, bytes.Clone(udp.Payload))
	}
	if len(pkts) < 50 {
		tb.Fatalf("only %d packets in the flannel recording", len(pkts))
	}
	return pkts
}

// tcpOf keeps the TCP packets of pkts.
func tcpOf(pkts [][]byte) [][]byte {
	var out [][]byte
	for _, p := range pkts {
		if len(p) >= 40 && p[9] == 6 {
			out = append(out, p)
		}
	}
	return out
}

// FuzzSplit: Split never panics, and whatever it accepts it cuts as the
// kernel would (kernelSplit), into valid packets that alias the input.
func FuzzSplit(f *testing.F) {
	for _, p := range flannelPackets(f) {
		f.Add(p, uint8(GSOTCPv4), 500, uint8(MaxSegments))
		f.Add(p, uint8(GSOUDPv4), 1000, uint8(2))
	}
	// The recorded TCP segments joined into a super-packet, as the sending
	// pod's stack would have handed them to a TUN with TSO.
	tcp := tcpOf(flannelPackets(f))
	for _, p := range tcp {
		if len(p) > 100 {
			hlen := 20 + int(p[32]>>4)*4
			super := bytes.Clone(p)
			for _, q := range tcp {
				if len(q) == len(p) && len(super)+len(q)-hlen < 65535 {
					super = append(super, q[hlen:]...)
				}
			}
			binary.BigEndian.PutUint16(super[2:], uint16(len(super)))
			f.Add(super, uint8(GSOTCPv4), len(p)-hlen, uint8(MaxSegments))
			break
		}
	}
	pkt, g := benchSuper()
	f.Add(pkt, uint8(g.Kind), g.SegmentSize, uint8(MaxSegments))
	f.Add(udpSpec{payload: make([]byte, 3000)}.build(), uint8(GSOUDPv4), 1400, uint8(3))
	f.Add(tcpSpec{ipOptions: raOption, payload: make([]byte, 100)}.build(), uint8(GSOTCPv4), 1, uint8(MaxSegments))
	f.Add(tcpSpec{payload: make([]byte, 100)}.build(), uint8(GSOTCPv4), math.MaxInt-50, uint8(1))
	f.Fuzz(func(t *testing.T, pkt []byte, kind uint8, size int, slots uint8) {
		n := int(slots) % (MaxSegments + 1)
		heads := make([]byte, n*MaxHeader)
		out := make([]Segment, n)
		orig := bytes.Clone(pkt)
		g := GSO{Kind: GSOKind(kind), SegmentSize: size}
		k, err := Split(pkt, g, heads, out)
		if !bytes.Equal(pkt, orig) {
			t.Fatal("Split wrote into the super-packet")
		}
		if err != nil {
			if k != 0 {
				t.Fatalf("%d segments with error %v", k, err)
			}
			return
		}
		if k < 1 || k > n {
			t.Fatalf("%d segments into %d slots", k, n)
		}
		want := kernelSplit(pkt, g.Kind, g.SegmentSize)
		if len(want) != k {
			t.Fatalf("%d segments, the kernel makes %d", k, len(want))
		}
		hlen := len(out[0].Head)
		var joined []byte
		for i, s := range out[:k] {
			if len(s.Head) != hlen || &s.Head[0] != &heads[i*MaxHeader] {
				t.Fatalf("segment %d: head of %d bytes, not in its slot", i, len(s.Head))
			}
			if len(s.Payload) > 0 && &s.Payload[0] != &pkt[hlen+(len(joined))] {
				t.Fatalf("segment %d: payload does not alias the super-packet", i)
			}
			if i < k-1 && len(s.Payload) != size {
				t.Fatalf("segment %d of %d: %d bytes, segment size %d", i, k, len(s.Payload), size)
			}
			joined = append(joined, s.Payload...)
			p := flatten(s)
			if !bytes.Equal(p, want[i]) {
				t.Fatalf("segment %d differs from the kernel's:\n got  %x\n want %x", i, p[:hlen], want[i][:hlen])
			}
			if err := checkIPv4(p); err != nil {
				t.Fatalf("segment %d: %v", i, err)
			}
		}
		if !bytes.Equal(joined, pkt[hlen:]) {
			t.Fatal("payloads do not join into the super-packet's")
		}
	})
}

// FuzzPlanRuns: planRuns never panics on arbitrary packet lists; its runs
// cover the input exactly and in order, each run of several packets obeys
// GRO's rules, and its super-packet cut again gives back its segments.
//
// The input is a byte of options, then packets, each a big-endian 16-bit
// length and that many bytes (fewer at the end). Options: bit 0 fixes every
// packet's checksums and bit 1 its IPv4 total length, so that mutations
// reach the rules past the checksum; bit 2 lays packets out without
// headroom.
func FuzzPlanRuns(f *testing.F) {
	encode := func(opts byte, pkts [][]byte) []byte {
		b := []byte{opts}
		for _, p := range pkts {
			b = binary.BigEndian.AppendUint16(b, uint16(len(p)))
			b = append(b, p...)
		}
		return b
	}
	tcp := tcpOf(flannelPackets(f))
	for i := 0; i+8 <= len(tcp); i += 8 {
		f.Add(encode(0, tcp[i:i+8]))
	}
	var flow [][]byte
	for _, s := range flowSegs(6, at(5, func(s *tcpSpec) { s.flags |= flagPSH })) {
		flow = append(flow, s.build())
	}
	f.Add(encode(0, flow))
	f.Add(encode(3, flow))
	f.Add(encode(4, append(flow[:3:3], udpSpec{}.build(), flow[3])))
	dgram := udpSpec{payload: make([]byte, 64)}.build()
	f.Add(encode(0, [][]byte{dgram, dgram, dgram, udpSpec{payload: make([]byte, 20)}.build()}))
	// IP IDs and DF, which decide whether a run's IDs may stay fixed, and a
	// datagram without a checksum, which joins no run.
	var dgrams [][]byte
	for i := range 4 {
		dgrams = append(dgrams, udpSpec{id: uint16(0xfffe + i), payload: make([]byte, 64)}.build())
	}
	f.Add(encode(0, dgrams))
	df := udpSpec{ipFlags: layers.IPv4DontFragment, payload: make([]byte, 64)}.build()
	noCsum := bytes.Clone(df)
	noCsum[26], noCsum[27] = 0, 0
	f.Add(encode(0, [][]byte{df, df, noCsum, df, df}))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		opts, data := data[0], data[1:]
		var pkts [][]byte
		for len(data) >= 2 && len(pkts) < 3*MaxSegments {
			l := min(int(binary.BigEndian.Uint16(data)), len(data)-2)
			p := bytes.Clone(data[2 : 2+l])
			data = data[2+l:]
			fixPacket(p, opts&2 != 0, opts&1 != 0)
			pkts = append(pkts, p)
		}
		offset := Headroom
		if opts&4 != 0 {
			offset = 0
		}
		bufs := make([][]byte, len(pkts))
		for i, p := range pkts {
			bufs[i] = append(make([]byte, offset, offset+len(p)), p...)
		}
		runs := planRuns(bufs, offset, nil, true)
		checkRuns(t, bufs, offset, runs)
	})
}

// fixPacket sets an IPv4 packet's total length to its size, and its IPv4
// and TCP or UDP checksums right, as far as its headers let it.
func fixPacket(p []byte, length, csums bool) {
	if len(p) < 20 || p[0]>>4 != 4 {
		return
	}
	ihl := int(p[0]&0x0f) * 4
	if ihl < 20 || ihl > len(p) {
		return
	}
	if length {
		binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	}
	if !csums {
		return
	}
	ipv4.SetHeaderChecksum(p[:ihl])
	at := map[byte]int{6: 16, 17: 6}[p[9]]
	if at == 0 || len(p) < ihl+at+2 {
		return
	}
	p[ihl+at], p[ihl+at+1] = 0, 0
	c := ^ipv4.Fold(ipv4.Sum(p[ihl:], ipv4.PseudoHeaderSum(p, p[9], len(p)-ihl)))
	binary.BigEndian.PutUint16(p[ihl+at:], c)
}

// FuzzChecksum: Checksum never panics whatever the offsets, changes only
// the checksum field, and leaves a checksum that verifies and is never 0.
func FuzzChecksum(f *testing.F) {
	for _, p := range flannelPackets(f) {
		switch p[9] {
		case 6:
			f.Add(p, 20, 16)
		case 17:
			f.Add(p, 20, 6)
		default:
			f.Add(p, 20, 2) // ICMP
		}
	}
	f.Add([]byte{}, 0, 0)
	f.Add(make([]byte, 40), -1, 16)
	f.Add(make([]byte, 40), 20, -16)
	f.Add(make([]byte, 40), math.MaxInt, 1)
	f.Add(make([]byte, 40), 1, math.MaxInt)
	f.Add(make([]byte, 40), 38, 0)
	f.Fuzz(func(t *testing.T, pkt []byte, start, offset int) {
		orig := bytes.Clone(pkt)
		err := Checksum(pkt, GSO{NeedsCsum: true, CsumStart: start, CsumOffset: offset})
		if err != nil {
			if !bytes.Equal(pkt, orig) {
				t.Fatal("Checksum wrote into the packet and failed")
			}
			return
		}
		if start < 0 || offset < 0 || start > len(pkt) || offset > len(pkt)-start-2 {
			t.Fatalf("accepted start %d offset %d on %d bytes", start, offset, len(pkt))
		}
		at := start + offset
		if !bytes.Equal(pkt[:at], orig[:at]) || !bytes.Equal(pkt[at+2:], orig[at+2:]) {
			t.Fatal("Checksum changed more than its field")
		}
		if pkt[at] == 0 && pkt[at+1] == 0 {
			t.Fatal("a checksum of 0")
		}
		// The field held the pseudo-header sum: added back, the whole
		// verifies. (An odd offset puts the field across two words.)
		if offset%2 == 0 {
			if s := refSum(pkt[start:], uint64(binary.BigEndian.Uint16(orig[at:]))); s != 0xffff {
				t.Fatalf("sums to %#04x with the pseudo-header, want ffff", s)
			}
		}
	})
}
