package tun

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/weft-dev/weft/ipv4"
)

// kernelSplit is the reference for Split: the segments Linux's GSO makes of
// the super-packet pkt (inet_gso_segment with tcp_gso_segment or
// __udp_gso_segment), built byte by byte, each in its own buffer. Every
// segment copies the IPv4 header, options included, with the IP ID of the
// super-packet plus its index; TCP segments carry the sequence number of
// their first byte, FIN and PSH only on the last, CWR only on the first;
// UDP segments get their own length. Checksums are complete, and a UDP
// checksum that computes to 0 is sent as ffff.
func kernelSplit(pkt []byte, kind GSOKind, mss int) [][]byte {
	ihl := int(pkt[0]&0x0f) * 4
	thl := 8
	if kind == GSOTCPv4 {
		thl = int(pkt[ihl+12]>>4) * 4
	}
	hlen := ihl + thl
	payload := pkt[hlen:]
	var segs [][]byte
	for k := 0; k == 0 || k*mss < len(payload); k++ {
		chunk := payload[k*mss : min((k+1)*mss, len(payload))]
		last := (k+1)*mss >= len(payload)
		s := append(append([]byte(nil), pkt[:hlen]...), chunk...)
		binary.BigEndian.PutUint16(s[2:], uint16(len(s)))
		binary.BigEndian.PutUint16(s[4:], binary.BigEndian.Uint16(pkt[4:])+uint16(k))
		s[10], s[11] = 0, 0
		binary.BigEndian.PutUint16(s[10:], ^refSum(s[:ihl], 0))
		t := s[ihl:]
		at := 6
		if kind == GSOTCPv4 {
			binary.BigEndian.PutUint32(t[4:], binary.BigEndian.Uint32(pkt[ihl+4:])+uint32(k*mss))
			if !last {
				t[13] &^= flagFIN | flagPSH
			}
			if k > 0 {
				t[13] &^= flagCWR
			}
			at = 16
		} else {
			binary.BigEndian.PutUint16(t[4:], uint16(len(t)))
		}
		t[at], t[at+1] = 0, 0
		c := ^refSum(t, refPseudo(s, s[9], len(t)))
		if kind == GSOUDPv4 && c == 0 {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(t[at:], c)
		segs = append(segs, s)
	}
	return segs
}

// superCase is one random super-packet for Split.
type superCase struct {
	name string
	pkt  []byte
	g    GSO
}

// randomSuper builds a TCP or UDP super-packet as the kernel hands one over
// a TUN: total length right, the transport checksum either partial (the
// pseudo-header sum, NeedsCsum) or garbage, at most MaxSegments segments.
func randomSuper(r *rand.Rand, kind GSOKind) superCase {
	mss := 500 + r.IntN(961)
	var ipOpts []layers.IPv4Option
	var optName string
	switch r.IntN(4) {
	case 1:
		ipOpts, optName = raOption, "+ipopt"
	case 2:
		// 40 bytes of IP options, the most there can be: an empty
		// timestamp option (RFC 791) the size of the whole option area.
		ipOpts = []layers.IPv4Option{{OptionType: 68, OptionLength: 40, OptionData: append([]byte{5, 0}, make([]byte, 36)...)}}
		optName = "+ipopt40"
	}
	ihl := 20
	for _, o := range ipOpts {
		ihl += int(o.OptionLength)
	}
	var tcpOpts []layers.TCPOption
	thl := 8
	if kind == GSOTCPv4 {
		thl = 20
		switch r.IntN(3) {
		case 1:
			tcpOpts, thl, optName = tsOptions(r.Uint32(), r.Uint32()), 32, optName+"+ts"
		case 2:
			// Timestamps and a SACK option of three blocks fill the
			// 40 bytes of TCP options.
			sack := []layers.TCPOption{{OptionType: layers.TCPOptionKindNop}, {OptionType: layers.TCPOptionKindNop},
				{OptionType: layers.TCPOptionKindSACK, OptionLength: 26, OptionData: make([]byte, 24)}}
			tcpOpts, thl, optName = append(tsOptions(r.Uint32(), r.Uint32()), sack...), 60, optName+"+ts+sack"
		}
	}
	hlen := ihl + thl
	most := min(65535-hlen, MaxSegments*mss)
	var n int
	switch r.IntN(4) {
	case 0:
		n = most // a full 64 KiB super-packet, or all the segments there may be
	case 1:
		n = mss*(1+r.IntN(most/mss)) - r.IntN(2) // a multiple of MSS, or one short
	default:
		n = 1 + r.IntN(most)
	}
	payload := make([]byte, n)
	for i := range payload {
		payload[i] = byte(r.Uint32())
	}
	var pkt []byte
	id := uint16(r.Uint32())
	if kind == GSOTCPv4 {
		flags := byte(flagACK)
		for _, f := range []byte{flagFIN, flagPSH, flagCWR, flagECE} {
			if r.IntN(2) == 0 {
				flags |= f
			}
		}
		pkt = tcpSpec{
			seq: r.Uint32(), ack: r.Uint32(), flags: flags, window: uint16(r.Uint32()),
			id: id, ipFlags: layers.IPv4DontFragment, tos: byte(r.Uint32()),
			ipOptions: ipOpts, tcpOptions: tcpOpts, payload: payload,
		}.build()
	} else {
		pkt = udpSpec{id: id, ipOptions: ipOpts, payload: payload}.build()
	}
	if got := int(pkt[0]&0x0f)*4 + thl; got != hlen {
		panic(fmt.Sprintf("built a header of %d bytes, meant %d", got, hlen))
	}
	g := GSO{Kind: kind, SegmentSize: mss, CsumStart: ihl, CsumOffset: 16}
	if kind == GSOUDPv4 {
		g.CsumOffset = 6
	}
	at := g.CsumStart + g.CsumOffset
	csum := "garbage"
	if r.IntN(2) == 0 {
		g.NeedsCsum = true
		binary.BigEndian.PutUint16(pkt[at:], ipv4.Fold(ipv4.PseudoHeaderSum(pkt, pkt[9], len(pkt)-ihl)))
		csum = "partial"
	} else {
		binary.BigEndian.PutUint16(pkt[at:], uint16(r.Uint32()))
	}
	name := fmt.Sprintf("tcp%s/mss%d/payload%d/%s", optName, mss, n, csum)
	if kind == GSOUDPv4 {
		name = "udp" + name[3:]
	}
	return superCase{name: name, pkt: pkt, g: g}
}

// checkSplit checks the segments Split made of sc against the reference and
// decoded with gopacket.
func checkSplit(t *testing.T, sc superCase, segs []Segment) {
	t.Helper()
	pkt, g := sc.pkt, sc.g
	want := kernelSplit(pkt, g.Kind, g.SegmentSize)
	if len(segs) != len(want) {
		t.Fatalf("%d segments, the kernel makes %d", len(segs), len(want))
	}
	ihl := int(pkt[0]&0x0f) * 4
	hlen := len(segs[0].Head)
	var joined []byte
	id0 := binary.BigEndian.Uint16(pkt[4:])
	var nextSeq uint32
	for k, s := range segs {
		p := flatten(s)
		if !bytes.Equal(p, want[k]) {
			t.Fatalf("segment %d differs from the kernel's:\n got  %x\n want %x", k, p[:hlen], want[k][:hlen])
		}
		if err := checkIPv4(p); err != nil {
			t.Fatalf("segment %d: %v", k, err)
		}
		if len(s.Payload) > 0 && &s.Payload[0] != &pkt[hlen+k*g.SegmentSize] {
			t.Fatalf("segment %d: payload is a copy, not a slice of the super-packet", k)
		}
		if k < len(segs)-1 && len(s.Payload) != g.SegmentSize {
			t.Fatalf("segment %d of %d: %d payload bytes, MSS %d", k, len(segs), len(s.Payload), g.SegmentSize)
		}
		joined = append(joined, s.Payload...)
		ip, pk, err := decode(p)
		if err != nil {
			t.Fatalf("segment %d: %v", k, err)
		}
		if int(ip.IHL)*4 != ihl || int(ip.Length) != len(p) || ip.Id != id0+uint16(k) {
			t.Fatalf("segment %d: IHL %d length %d id %d; want %d, %d, %d", k, ip.IHL, ip.Length, ip.Id, ihl/4, len(p), id0+uint16(k))
		}
		if g.Kind == GSOUDPv4 {
			udp, ok := pk.TransportLayer().(*layers.UDP)
			if !ok || int(udp.Length) != 8+len(s.Payload) || !bytes.Equal(udp.Payload, s.Payload) {
				t.Fatalf("segment %d: UDP layer %+v", k, pk.TransportLayer())
			}
			continue
		}
		tcp, ok := pk.TransportLayer().(*layers.TCP)
		if !ok {
			t.Fatalf("segment %d: no TCP layer", k)
		}
		first, last := k == 0, k == len(segs)-1
		super := pkt[ihl+13]
		if k == 0 {
			nextSeq = binary.BigEndian.Uint32(pkt[ihl+4:])
		}
		if tcp.Seq != nextSeq {
			t.Fatalf("segment %d: seq %d, want %d", k, tcp.Seq, nextSeq)
		}
		nextSeq += uint32(len(s.Payload))
		if tcp.FIN != (last && super&flagFIN != 0) || tcp.PSH != (last && super&flagPSH != 0) ||
			tcp.CWR != (first && super&flagCWR != 0) || tcp.ECE != (super&flagECE != 0) || !tcp.ACK {
			t.Fatalf("segment %d of %d: flags %08b from super-packet flags %08b", k, len(segs), p[ihl+13], super)
		}
		if !bytes.Equal(tcp.Payload, s.Payload) {
			t.Fatalf("segment %d: gopacket sees another payload", k)
		}
	}
	if !bytes.Equal(joined, pkt[hlen:]) {
		t.Fatalf("payloads joined differ from the super-packet's")
	}
}

func TestSplitRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	heads := make([]byte, MaxSegments*MaxHeader)
	out := make([]Segment, MaxSegments)
	for i := range 600 {
		kind := GSOTCPv4
		if i%3 == 2 {
			kind = GSOUDPv4
		}
		sc := randomSuper(r, kind)
		orig := append([]byte(nil), sc.pkt...)
		n, err := Split(sc.pkt, sc.g, heads, out)
		if err != nil {
			t.Fatalf("%s: %v", sc.name, err)
		}
		if !bytes.Equal(sc.pkt, orig) {
			t.Fatalf("%s: Split wrote into the super-packet", sc.name)
		}
		for k, s := range out[:n] {
			if &s.Head[0] != &heads[k*MaxHeader] {
				t.Fatalf("%s: head %d is not in its MaxHeader slot of heads", sc.name, k)
			}
		}
		t.Run(sc.name, func(t *testing.T) { checkSplit(t, sc, out[:n]) })
	}
}

// TestSplitKnown pins a few super-packets whose segments are worked out by
// hand.
func TestSplitKnown(t *testing.T) {
	heads := make([]byte, MaxSegments*MaxHeader)
	out := make([]Segment, MaxSegments)
	payload := bytes.Repeat([]byte("0123456789"), 300) // 3000 bytes
	tests := []struct {
		name   string
		pkt    []byte
		g      GSO
		sizes  []int // payload bytes of each segment
		flags  []byte
		seqOff []uint32
	}{
		{
			name: "3000 bytes at MSS 1448: two full segments and 104 bytes, PSH and FIN on the last",
			pkt: tcpSpec{seq: 0xffff_fc00, ack: 7, flags: flagACK | flagPSH | flagFIN | flagCWR, window: 502, id: 0xfffe,
				ipFlags: layers.IPv4DontFragment, tcpOptions: tsOptions(1, 2), payload: payload}.build(),
			g:      GSO{Kind: GSOTCPv4, SegmentSize: 1448},
			sizes:  []int{1448, 1448, 104},
			flags:  []byte{flagACK | flagCWR, flagACK, flagACK | flagPSH | flagFIN},
			seqOff: []uint32{0, 1448, 2896}, // the sequence number wraps past 2^32, the IP ID past 2^16
		},
		{
			name:   "exactly two segments",
			pkt:    tcpSpec{seq: 1, flags: flagACK | flagPSH, payload: payload[:2000]}.build(),
			g:      GSO{Kind: GSOTCPv4, SegmentSize: 1000},
			sizes:  []int{1000, 1000},
			flags:  []byte{flagACK, flagACK | flagPSH},
			seqOff: []uint32{0, 1000},
		},
		{
			name:   "no payload: one segment, the header alone",
			pkt:    tcpSpec{seq: 1, flags: flagACK | flagFIN}.build(),
			g:      GSO{Kind: GSOTCPv4, SegmentSize: 1000},
			sizes:  []int{0},
			flags:  []byte{flagACK | flagFIN},
			seqOff: []uint32{0},
		},
		{
			name:  "UDP 3000 bytes at 1400",
			pkt:   udpSpec{payload: payload}.build(),
			g:     GSO{Kind: GSOUDPv4, SegmentSize: 1400},
			sizes: []int{1400, 1400, 200},
		},
		{
			name:  "payload smaller than the segment size",
			pkt:   udpSpec{payload: payload[:10]}.build(),
			g:     GSO{Kind: GSOUDPv4, SegmentSize: 1400},
			sizes: []int{10},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := Split(tt.pkt, tt.g, heads, out)
			if err != nil {
				t.Fatal(err)
			}
			if n != len(tt.sizes) {
				t.Fatalf("%d segments, want %d", n, len(tt.sizes))
			}
			ihl := int(tt.pkt[0]&0x0f) * 4
			for k, s := range out[:n] {
				if len(s.Payload) != tt.sizes[k] {
					t.Errorf("segment %d: %d payload bytes, want %d", k, len(s.Payload), tt.sizes[k])
				}
				if tt.flags != nil {
					if f := s.Head[ihl+13]; f != tt.flags[k] {
						t.Errorf("segment %d: flags %08b, want %08b", k, f, tt.flags[k])
					}
					seq := binary.BigEndian.Uint32(tt.pkt[ihl+4:]) + tt.seqOff[k]
					if got := binary.BigEndian.Uint32(s.Head[ihl+4:]); got != seq {
						t.Errorf("segment %d: seq %#x, want %#x", k, got, seq)
					}
				}
			}
			checkSplit(t, superCase{pkt: tt.pkt, g: tt.g}, out[:n])
		})
	}
}

// TestSplitUDPZeroChecksum: a segment whose UDP checksum computes to 0 is
// sent with ffff, as 0 would mean "no checksum".
func TestSplitUDPZeroChecksum(t *testing.T) {
	p := udpZeroChecksum(t)
	heads := make([]byte, MaxHeader)
	out := make([]Segment, 1)
	n, err := Split(p, GSO{Kind: GSOUDPv4, SegmentSize: 1400}, heads, out)
	if err != nil || n != 1 {
		t.Fatalf("Split: %d, %v", n, err)
	}
	if c := binary.BigEndian.Uint16(out[0].Head[26:]); c != 0xffff {
		t.Fatalf("UDP checksum %#04x, want ffff", c)
	}
	if err := checkIPv4(flatten(out[0])); err != nil {
		t.Fatal(err)
	}
}

// udpZeroChecksum returns a UDP packet whose checksum computes to 0 (and so
// is sent as ffff): the last payload word is chosen to make it so.
func udpZeroChecksum(t *testing.T) []byte {
	t.Helper()
	p := udpSpec{payload: []byte("a datagram whose checksum is zero..")}.build()
	p = p[:len(p)-1] // 34 bytes of payload
	p = udpSpec{payload: p[28:]}.build()
	for w := range 1 << 16 {
		binary.BigEndian.PutUint16(p[len(p)-2:], uint16(w))
		p[26], p[27] = 0, 0
		if refSum(p[20:], refPseudo(p, 17, len(p)-20)) == 0xffff {
			p[26], p[27] = 0xff, 0xff
			if err := checkIPv4(p); err != nil {
				t.Fatal(err)
			}
			return p
		}
	}
	t.Fatal("no payload word gives a zero checksum")
	return nil
}

func TestSplitErrors(t *testing.T) {
	tcp := tcpSpec{flags: flagACK, payload: make([]byte, 3000)}.build()
	udp := udpSpec{payload: make([]byte, 3000)}.build()
	mod := func(p []byte, f func(p []byte)) []byte {
		p = append([]byte(nil), p...)
		f(p)
		return p
	}
	tcpGSO := GSO{Kind: GSOTCPv4, SegmentSize: 1000}
	udpGSO := GSO{Kind: GSOUDPv4, SegmentSize: 1000}
	huge := tcpSpec{flags: flagACK, payload: make([]byte, 65535-40)}.build()
	tests := []struct {
		name  string
		pkt   []byte
		g     GSO
		heads int // segments' worth of heads; MaxSegments if 0
		out   int // likewise
		want  string
	}{
		{"empty", nil, tcpGSO, 0, 0, "not an IPv4"},
		{"short of an IPv4 header", tcp[:19], tcpGSO, 0, 0, "not an IPv4"},
		{"IPv6", mod(tcp, func(p []byte) { p[0] = 0x60 }), tcpGSO, 0, 0, "not an IPv4"},
		{"IHL below 5", mod(tcp, func(p []byte) { p[0] = 0x44 }), tcpGSO, 0, 0, "header length"},
		{"IHL past the packet", mod(tcp[:40], func(p []byte) { p[0] = 0x4f }), tcpGSO, 0, 0, "header length"},
		{"short TCP header", tcp[:39], tcpGSO, 0, 0, "short TCP"},
		{"TCP data offset past the packet", mod(tcp[:40], func(p []byte) { p[32] = 0x60 }), tcpGSO, 0, 0, "transport header"},
		{"TCP data offset 0", mod(tcp, func(p []byte) { p[32] = 0x00 }), tcpGSO, 0, 0, "transport header"},
		{"TCP data offset 2 (8 bytes)", mod(tcp, func(p []byte) { p[32] = 0x20 }), tcpGSO, 0, 0, "transport header"},
		{"TCP data offset 4 (16 bytes)", mod(tcp, func(p []byte) { p[32] = 0x40 }), tcpGSO, 0, 0, "transport header"},
		{"short UDP header", udp[:27], udpGSO, 0, 0, "transport header"},
		{"TCP kind, UDP packet", udp, tcpGSO, 0, 0, "protocol 17"},
		{"UDP kind, TCP packet", tcp, udpGSO, 0, 0, "protocol 6"},
		{"kind none", tcp, GSO{SegmentSize: 1000}, 0, 0, "cannot be split"},
		{"unknown kind", tcp, GSO{Kind: 9, SegmentSize: 1000}, 0, 0, "cannot be split"},
		{"segment size 0", tcp, GSO{Kind: GSOTCPv4}, 0, 0, "segment size"},
		{"negative segment size", tcp, GSO{Kind: GSOTCPv4, SegmentSize: -1}, 0, 0, "segment size"},
		{"more segments than out", tcp, tcpGSO, 0, 2, "more segments"},
		{"more segments than heads", tcp, tcpGSO, 2, 0, "more segments"},
		{"66 segments", huge, GSO{Kind: GSOTCPv4, SegmentSize: 1000}, 0, 0, "more segments"},
		{"segment size near the int limit", tcp, GSO{Kind: GSOTCPv4, SegmentSize: math.MaxInt}, 0, 0, ""},
		// 3000 + MaxInt-2000 - 1 overflows to a negative count of segments.
		{"segment size whose rounding overflows", tcp, GSO{Kind: GSOTCPv4, SegmentSize: math.MaxInt - 2000}, 0, 0, ""},
		{"segment larger than an IPv4 packet", append(append([]byte(nil), huge...), make([]byte, 100)...),
			GSO{Kind: GSOTCPv4, SegmentSize: 65535}, 0, 0, "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nh, no := MaxSegments, MaxSegments
			if tt.heads > 0 {
				nh = tt.heads
			}
			if tt.out > 0 {
				no = tt.out
			}
			out := make([]Segment, no)
			defer func() {
				if v := recover(); v != nil {
					t.Fatalf("Split panicked: %v", v)
				}
			}()
			n, err := Split(tt.pkt, tt.g, make([]byte, nh*MaxHeader), out)
			if tt.want == "" {
				if err != nil || n != 1 {
					t.Fatalf("Split = %d, %v; want one segment", n, err)
				}
				if err := checkIPv4(flatten(out[0])); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Split = %d, %v; want an error with %q", n, err, tt.want)
			}
			if n != 0 {
				t.Errorf("Split returned %d segments with its error", n)
			}
		})
	}
}

// TestChecksum completes partial checksums as the kernel's
// skb_checksum_help does.
func TestChecksum(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	partial := func(p []byte, at int) []byte {
		ihl := int(p[0]&0x0f) * 4
		binary.BigEndian.PutUint16(p[at:], ipv4.Fold(ipv4.PseudoHeaderSum(p, p[9], len(p)-ihl)))
		return p
	}
	type tc struct {
		name string
		pkt  []byte
		g    GSO
	}
	var tests []tc
	for i := range 200 {
		payload := make([]byte, r.IntN(1500))
		for j := range payload {
			payload[j] = byte(r.Uint32())
		}
		var opts []layers.IPv4Option
		ihl := 20
		if i%4 == 3 {
			opts, ihl = raOption, 24
		}
		if i%2 == 0 {
			p := tcpSpec{flags: flagACK | flagPSH, ipOptions: opts, tcpOptions: tsOptions(r.Uint32(), 0), payload: payload}.build()
			tests = append(tests, tc{fmt.Sprintf("tcp/%d", len(payload)), partial(p, ihl+16), GSO{NeedsCsum: true, CsumStart: ihl, CsumOffset: 16}})
		} else {
			p := udpSpec{ipOptions: opts, payload: payload}.build()
			tests = append(tests, tc{fmt.Sprintf("udp/%d", len(payload)), partial(p, ihl+6), GSO{NeedsCsum: true, CsumStart: ihl, CsumOffset: 6}})
		}
	}
	tests = append(tests, tc{"udp whose checksum computes to 0", partial(udpZeroChecksum(t), 26), GSO{NeedsCsum: true, CsumStart: 20, CsumOffset: 6}})
	for _, tt := range tests {
		if err := Checksum(tt.pkt, tt.g); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if err := checkIPv4(tt.pkt); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
	}
}

func TestChecksumErrors(t *testing.T) {
	p := udpSpec{payload: []byte("x")}.build() // 29 bytes
	for _, g := range []GSO{
		{CsumStart: 20, CsumOffset: 8},
		{CsumStart: 28, CsumOffset: 0},
		{CsumStart: 29, CsumOffset: 0},
		{CsumStart: 1000, CsumOffset: 6},
		{CsumStart: -1, CsumOffset: 6},
		{CsumStart: 20, CsumOffset: -1},
		{CsumStart: 40, CsumOffset: -30},
		{CsumStart: math.MaxInt, CsumOffset: 1},
		{CsumStart: 1, CsumOffset: math.MaxInt},
		{CsumStart: math.MinInt, CsumOffset: math.MinInt},
	} {
		q := append([]byte(nil), p...)
		func() {
			defer func() {
				if v := recover(); v != nil {
					t.Errorf("Checksum with start %d offset %d panicked: %v", g.CsumStart, g.CsumOffset, v)
				}
			}()
			if err := Checksum(q, g); err == nil {
				t.Errorf("Checksum with start %d offset %d on %d bytes: no error", g.CsumStart, g.CsumOffset, len(q))
			}
		}()
		if !bytes.Equal(q, p) {
			t.Errorf("Checksum with start %d offset %d wrote into the packet on error", g.CsumStart, g.CsumOffset)
		}
	}
}
