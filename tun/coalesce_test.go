package tun

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/weft-dev/weft/ipv4"
)

// flowSeg is segment i of a bulk TCP flow from pod2 to pod1 as Linux sends
// it: ACK, timestamps, DF, an MSS of 1000, payload bytes that say where they
// are in the stream.
func flowSeg(i int) tcpSpec {
	const seq0 = 0xfffff000 // the stream wraps past 2^32 a few segments in
	payload := make([]byte, 1000)
	for j := range payload {
		payload[j] = byte(i*1000 + j)
	}
	return tcpSpec{
		seq: seq0 + uint32(i*1000), ack: 4242, flags: flagACK, window: 502,
		id: uint16(100 + i), ipFlags: layers.IPv4DontFragment,
		tcpOptions: tsOptions(77, 66), payload: payload,
	}
}

// flowSegs is segments 0..n-1 of the flow, each changed by f if not nil.
func flowSegs(n int, f func(i int, s *tcpSpec)) []tcpSpec {
	var ss []tcpSpec
	for i := range n {
		s := flowSeg(i)
		if f != nil {
			f(i, &s)
		}
		ss = append(ss, s)
	}
	return ss
}

// at changes segment k only.
func at(k int, f func(s *tcpSpec)) func(int, *tcpSpec) {
	return func(i int, s *tcpSpec) {
		if i == k {
			f(s)
		}
	}
}

// runLengths is how many packets each run holds.
func runLengths(runs []run) []int {
	var ls []int
	for _, r := range runs {
		ls = append(ls, r.end-r.start)
	}
	return ls
}

// bufsOf lays packets out as the engine hands them to Write: each behind
// Headroom bytes.
func bufsOf(pkts [][]byte) [][]byte {
	bufs := make([][]byte, len(pkts))
	for i, p := range pkts {
		bufs[i] = withHeadroom(p, Headroom)
	}
	return bufs
}

func TestPlanRuns(t *testing.T) {
	build := func(ss []tcpSpec) [][]byte {
		var ps [][]byte
		for _, s := range ss {
			ps = append(ps, s.build())
		}
		return ps
	}
	raw := func(ps ...[]byte) [][]byte { return ps }
	seg := func(i int) []byte { return flowSeg(i).build() }
	shorten := func(n int) func(*tcpSpec) { return func(s *tcpSpec) { s.payload = s.payload[:n] } }
	mangle := func(p []byte, f func(p []byte)) []byte {
		p = append([]byte(nil), p...)
		f(p)
		return p
	}
	// Linux sends UDP with DF (path MTU discovery) and, for such atomic
	// datagrams, IP ID 0 throughout: GRO takes that as a fixed ID.
	dgram := func(s udpSpec) []byte {
		s.ipFlags |= layers.IPv4DontFragment
		return s.build()
	}
	udp := dgram(udpSpec{payload: make([]byte, 1000)})
	// ids gives segment i the IP ID id(i) and DF or not.
	ids := func(df bool, id func(i int) int) func(int, *tcpSpec) {
		return func(i int, s *tcpSpec) {
			s.id = uint16(id(i))
			if !df {
				s.ipFlags = 0
			}
		}
	}
	// dgrams is n datagrams of one flow, datagram i with IP ID id(i).
	dgrams := func(n int, df bool, id func(i int) int) [][]byte {
		var ps [][]byte
		for i := range n {
			s := udpSpec{id: uint16(id(i)), payload: make([]byte, 1000)}
			if df {
				s.ipFlags = layers.IPv4DontFragment
			}
			ps = append(ps, s.build())
		}
		return ps
	}
	noCsum := func(p []byte) []byte {
		return mangle(p, func(p []byte) { p[26], p[27] = 0, 0 })
	}
	tests := []struct {
		name string
		pkts [][]byte
		want []int // packets per run
	}{
		{"nothing", nil, nil},
		{"one segment", build(flowSegs(1, nil)), []int{1}},
		{"two segments", build(flowSegs(2, nil)), []int{2}},
		{"five, the last short", build(flowSegs(5, at(4, shorten(10)))), []int{5}},
		{"five, the last PSH", build(flowSegs(5, at(4, func(s *tcpSpec) { s.flags |= flagPSH }))), []int{5}},
		{"PSH in the middle ends the run", build(flowSegs(5, at(1, func(s *tcpSpec) { s.flags |= flagPSH }))), []int{2, 3}},
		{"PSH on the first", build(flowSegs(3, at(0, func(s *tcpSpec) { s.flags |= flagPSH }))), []int{1, 2}},
		{"a short segment in the middle ends the run", build(flowSegs(4, func(i int, s *tcpSpec) {
			if i == 1 {
				s.payload = s.payload[:500]
			}
			if i > 1 {
				s.seq -= 500
			}
		})), []int{2, 2}},
		{"a longer segment after a shorter first", build(flowSegs(3, func(i int, s *tcpSpec) {
			if i == 0 {
				s.payload = s.payload[:500]
			} else {
				s.seq -= 500
			}
		})), []int{1, 2}},
		{"a gap in sequence", raw(seg(0), seg(1), seg(3), seg(4)), []int{2, 2}},
		{"a retransmission", raw(seg(0), seg(1), seg(1), seg(2)), []int{2, 2}},
		{"out of order", raw(seg(1), seg(0)), []int{1, 1}},
		{"a pure ACK first", build(flowSegs(3, at(0, shorten(0)))), []int{1, 2}},
		{"a pure ACK in the middle", raw(seg(0), flowSegs(2, at(1, shorten(0)))[1].build(), seg(1)), []int{1, 1, 1}},
		{"another destination port", build(flowSegs(3, at(1, func(s *tcpSpec) { s.dport++ }))), []int{1, 1, 1}},
		{"another source port", build(flowSegs(2, at(1, func(s *tcpSpec) { s.sport++ }))), []int{1, 1}},
		{"another source address", build(flowSegs(2, at(1, func(s *tcpSpec) { s.src = pod3 }))), []int{1, 1}},
		{"another destination address", build(flowSegs(2, at(1, func(s *tcpSpec) { s.dst = pod3 }))), []int{1, 1}},
		{"two flows interleaved", build(func() []tcpSpec {
			var ss []tcpSpec
			for i := range 3 {
				a, b := flowSeg(i), flowSeg(i)
				b.dport = 5202
				ss = append(ss, a, b)
			}
			return ss
		}()), []int{1, 1, 1, 1, 1, 1}},
		{"two flows one after the other", build(append(flowSegs(3, nil), flowSegs(2, func(_ int, s *tcpSpec) { s.sport = 1 })...)), []int{3, 2}},
		{"another TTL", build(flowSegs(2, at(1, func(s *tcpSpec) { s.ttl = 62 }))), []int{1, 1}},
		{"another TOS", build(flowSegs(2, at(1, func(s *tcpSpec) { s.tos = 0x10 }))), []int{1, 1}},
		{"ECN CE on one", build(flowSegs(2, at(1, func(s *tcpSpec) { s.tos = 0x03 }))), []int{1, 1}},
		{"DF on one only", build(flowSegs(2, at(1, func(s *tcpSpec) { s.ipFlags = 0 }))), []int{1, 1}},
		{"the reserved IP flag on one only", build(flowSegs(2, at(1, func(s *tcpSpec) { s.ipFlags |= layers.IPv4EvilBit }))), []int{1, 1}},
		{"another window", build(flowSegs(2, at(1, func(s *tcpSpec) { s.window++ }))), []int{1, 1}},
		{"another ACK number", build(flowSegs(2, at(1, func(s *tcpSpec) { s.ack++ }))), []int{1, 1}},
		{"another timestamp", build(flowSegs(2, at(1, func(s *tcpSpec) { s.tcpOptions = tsOptions(78, 66) }))), []int{1, 1}},
		{"no options on one", build(flowSegs(2, at(1, func(s *tcpSpec) { s.tcpOptions = nil }))), []int{1, 1}},
		{"no options on any", build(flowSegs(3, func(_ int, s *tcpSpec) { s.tcpOptions = nil })), []int{3}},
		{"an urgent pointer", build(flowSegs(2, at(1, func(s *tcpSpec) { s.urgent = 1 }))), []int{1, 1}},
		{"URG", build(flowSegs(2, at(1, func(s *tcpSpec) { s.flags |= flagURG; s.urgent = 1 }))), []int{1, 1}},
		{"FIN in the middle", build(flowSegs(3, at(1, func(s *tcpSpec) { s.flags |= flagFIN }))), []int{1, 1, 1}},
		{"FIN on the last", build(flowSegs(3, at(2, func(s *tcpSpec) { s.flags |= flagFIN }))), []int{2, 1}},
		{"SYN", build(flowSegs(2, at(1, func(s *tcpSpec) { s.flags |= flagSYN }))), []int{1, 1}},
		{"RST", build(flowSegs(2, at(1, func(s *tcpSpec) { s.flags |= flagRST }))), []int{1, 1}},
		{"ECE", build(flowSegs(3, func(_ int, s *tcpSpec) { s.flags |= flagECE })), []int{1, 1, 1}},
		{"CWR on the first", build(flowSegs(3, at(0, func(s *tcpSpec) { s.flags |= flagCWR }))), []int{1, 2}},
		{"CWR on the second", build(flowSegs(2, at(1, func(s *tcpSpec) { s.flags |= flagCWR }))), []int{1, 1}},
		{"no ACK", build(flowSegs(2, func(_ int, s *tcpSpec) { s.flags = 0 })), []int{1, 1}},
		{"more fragments", build(flowSegs(2, func(_ int, s *tcpSpec) { s.ipFlags = layers.IPv4MoreFragments })), []int{1, 1}},
		{"a fragment offset", build(flowSegs(2, func(_ int, s *tcpSpec) { s.ipFlags = 0; s.fragOffset = 100 })), []int{1, 1}},
		{"IP options", build(flowSegs(3, func(_ int, s *tcpSpec) { s.ipOptions = raOption })), []int{1, 1, 1}},
		{"UDP in the middle", raw(seg(0), udp, seg(1), seg(2)), []int{1, 1, 2}},
		{"UDP datagrams of one flow", raw(udp, udp, udp), []int{3}},
		{"UDP, the last short", raw(udp, udp, dgram(udpSpec{payload: make([]byte, 10)})), []int{3}},
		{"UDP, a short one in the middle", raw(udp, dgram(udpSpec{payload: make([]byte, 10)}), udp), []int{2, 1}},
		{"UDP, a longer one after a shorter first", raw(dgram(udpSpec{payload: make([]byte, 10)}), udp, udp), []int{1, 2}},
		{"UDP, another port", raw(udp, dgram(udpSpec{dport: 9, payload: make([]byte, 1000)})), []int{1, 1}},
		{"UDP, another destination", raw(udp, dgram(udpSpec{dst: pod3, payload: make([]byte, 1000)})), []int{1, 1}},
		{"UDP, DF on one only", raw(udp, udpSpec{payload: make([]byte, 1000)}.build()), []int{1, 1}},
		{"UDP, a bad checksum", raw(udp, mangle(udp, func(p []byte) { p[100] ^= 1 }), udp, udp), []int{1, 1, 2}},
		// udp_gro_receive_segment coalesces no datagram without a checksum.
		{"UDP, no checksum on the second", raw(udp, noCsum(udp)), []int{1, 1}},
		{"UDP, no checksum on the first", raw(noCsum(udp), udp, udp), []int{1, 2}},
		{"UDP, no checksum on any", raw(noCsum(udp), noCsum(udp), noCsum(udp)), []int{1, 1, 1}},
		// inet_gro_flush: without DF, IP IDs go up by one from the first;
		// with DF they may also stay the first's, as the second decides.
		{"UDP without DF, IDs one up", dgrams(3, false, func(i int) int { return 7 + i }), []int{3}},
		{"UDP without DF, one ID", dgrams(3, false, func(int) int { return 7 }), []int{1, 1, 1}},
		{"UDP without DF, IDs two up", dgrams(3, false, func(i int) int { return 7 + 2*i }), []int{1, 1, 1}},
		{"UDP without DF, IDs wrap", dgrams(3, false, func(i int) int { return 0xffff + i }), []int{3}},
		{"UDP with DF, IDs one up", dgrams(3, true, func(i int) int { return 7 + i }), []int{3}},
		{"UDP with DF, one ID then one up", dgrams(3, true, func(i int) int { return 7 + i/2 }), []int{2, 1}},
		{"UDP with DF, IDs one up then one again", dgrams(3, true, func(i int) int { return 7 + min(i, 1) }), []int{2, 1}},
		{"TCP without DF, IDs one up", build(flowSegs(3, ids(false, func(i int) int { return 100 + i }))), []int{3}},
		{"TCP without DF, one ID", build(flowSegs(3, ids(false, func(int) int { return 100 }))), []int{1, 1, 1}},
		{"TCP without DF, an ID skipped", build(flowSegs(4, ids(false, func(i int) int { return 100 + i + i/2 }))), []int{2, 2}},
		{"TCP without DF, IDs down", build(flowSegs(3, ids(false, func(i int) int { return 100 - i }))), []int{1, 1, 1}},
		{"TCP without DF, IDs wrap", build(flowSegs(3, ids(false, func(i int) int { return 0xfffe + i }))), []int{3}},
		{"TCP with DF, one ID", build(flowSegs(3, ids(true, func(int) int { return 0 }))), []int{3}},
		{"TCP with DF, IDs one up then one again", build(flowSegs(3, ids(true, func(i int) int { return 100 + min(i, 1) }))), []int{2, 1}},
		{"TCP with DF, one ID then one up", build(flowSegs(3, ids(true, func(i int) int { return 100 + i/2 }))), []int{2, 1}},
		{"TCP with DF, IDs two up", build(flowSegs(3, ids(true, func(i int) int { return 100 + 2*i }))), []int{1, 1, 1}},
		{"the reserved IP flag on all", build(flowSegs(3, func(_ int, s *tcpSpec) { s.ipFlags |= layers.IPv4EvilBit })), []int{1, 1, 1}},
		{"UDP, another TTL", raw(udp, mangle(udp, func(p []byte) { p[8]--; ipv4.SetHeaderChecksum(p[:20]) })), []int{1, 1}},
		{"UDP, a fragment", raw(udp, mangle(udp, func(p []byte) { p[6] |= 0x20; ipv4.SetHeaderChecksum(p[:20]) })), []int{1, 1}},
		{"UDP, the length field off", raw(udp, mangle(udp, func(p []byte) { p[25]-- })), []int{1, 1}},
		{"UDP, empty payloads", raw(udpSpec{}.build(), udpSpec{}.build()), []int{1, 1}},
		{"UDP after TCP", raw(seg(0), seg(1), udp, udp), []int{2, 2}},
		{"IPv6", raw(mangle(seg(0), func(p []byte) { p[0] = 0x60 }), seg(1)), []int{1, 1}},
		{"truncated", raw(seg(0), seg(1)[:39], seg(1)), []int{1, 1, 1}},
		{"total length short of the buffer", raw(seg(0), append(seg(1), 0), seg(2)), []int{1, 1, 1}},
		{"total length past the buffer", raw(seg(0), seg(1)[:1000], seg(2)), []int{1, 1, 1}},
		{"TCP data offset past the packet", raw(seg(0), mangle(seg(1)[:50], func(p []byte) { binary.BigEndian.PutUint16(p[2:], 50) })), []int{1, 1}},
		{"a bad TCP checksum in the middle", raw(seg(0), mangle(seg(1), func(p []byte) { p[100] ^= 1 }), seg(2)), []int{1, 1, 1}},
		{"a bad TCP checksum on the first", raw(mangle(seg(0), func(p []byte) { p[36] ^= 1 }), seg(1), seg(2)), []int{1, 2}},
		{"a bad TCP checksum on the last", raw(seg(0), seg(1), mangle(seg(2), func(p []byte) { p[len(p)-1] ^= 0x80 })), []int{2, 1}},
		// 52 + 45*1448 = 65212 bytes fit a super-packet, one more would not.
		{"64 KiB", build(flowSegs(47, func(i int, s *tcpSpec) {
			s.payload = bytes.Repeat([]byte{byte(i)}, 1448)
			s.seq = uint32(i * 1448)
		})), []int{45, 2}},
		{"MaxSegments", build(flowSegs(MaxSegments+6, func(i int, s *tcpSpec) {
			s.payload = s.payload[:500]
			s.seq = uint32(i * 500)
		})), []int{MaxSegments, 6}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bufs := bufsOf(tt.pkts)
			runs := planRuns(bufs, Headroom, nil, true)
			if got := runLengths(runs); !slices.Equal(got, tt.want) {
				t.Fatalf("runs of %v packets, want %v", got, tt.want)
			}
			checkRuns(t, bufs, Headroom, runs)
		})
	}
}

// TestPlanRunsWithoutUSO: a device without UDP segmentation offload gets
// UDP datagrams one by one; TCP runs are as before.
func TestPlanRunsWithoutUSO(t *testing.T) {
	udp := udpSpec{payload: make([]byte, 1000)}.build()
	var pkts [][]byte
	for _, s := range flowSegs(2, nil) {
		pkts = append(pkts, s.build())
	}
	pkts = append(pkts, udp, udp, udp)
	bufs := bufsOf(pkts)
	runs := planRuns(bufs, Headroom, nil, false)
	if got := runLengths(runs); !slices.Equal(got, []int{2, 1, 1, 1}) {
		t.Fatalf("runs of %v packets, want [2 1 1 1]", got)
	}
	checkRuns(t, bufs, Headroom, runs)
}

// checkRuns checks that runs cover bufs exactly and in order, that every
// run of several packets obeys GRO's rules, and that the super-packet the
// queue writes for it, cut again as the kernel does, gives back its
// segments.
func checkRuns(t testing.TB, bufs [][]byte, offset int, runs []run) {
	t.Helper()
	next := 0
	for _, r := range runs {
		if r.start != next || r.end <= r.start {
			t.Fatalf("run [%d,%d) after %d packets", r.start, r.end, next)
		}
		next = r.end
		if r.end-r.start == 1 {
			continue
		}
		var pkts [][]byte
		for _, b := range bufs[r.start:r.end] {
			pkts = append(pkts, b[offset:])
		}
		check := groRun
		if r.udp {
			check = udpGRORun
		}
		if err := check(pkts); err != nil {
			t.Fatalf("run [%d,%d): %v", r.start, r.end, err)
		}
		if err := roundTrip(r, pkts); err != nil {
			t.Fatalf("run [%d,%d): %v", r.start, r.end, err)
		}
	}
	if next != len(bufs) {
		t.Fatalf("runs cover %d of %d packets", next, len(bufs))
	}
}

// groRun checks, without the code under test, that pkts may be coalesced
// under Linux's TCP GRO rules (inet_gro_receive, tcp_gro_receive) into a
// super-packet that the kernel's GSO cuts back into them: unfragmented
// TCP/IPv4 without IP options, valid TCP checksums, the same addresses, ports,
// TOS, TTL, DF, ACK number, window, urgent pointer and options, contiguous
// sequence numbers, ACK alone on all but the last (which may add PSH),
// every payload the first's size but the last's (not larger, not empty), IP
// IDs as groIPIDs wants them, at most MaxSegments and 64 KiB in all. The
// IPv4 header checksums, which
// inet_gro_receive checks too, are left out: the engine checks them on
// every packet from the wire before it writes it to the TUN.
func groRun(pkts [][]byte) error {
	if len(pkts) > MaxSegments {
		return fmt.Errorf("%d segments", len(pkts))
	}
	f := pkts[0]
	var thl, mss, total int
	var seq uint32
	for i, p := range pkts {
		if err := checkIPv4Sums(p, false); err != nil {
			return fmt.Errorf("segment %d: %v", i, err)
		}
		if p[0] != 0x45 || p[9] != 6 {
			return fmt.Errorf("segment %d: not TCP/IPv4 without options", i)
		}
		if binary.BigEndian.Uint16(p[6:])&^0x4000 != 0 {
			return fmt.Errorf("segment %d: fragment or reserved flag", i)
		}
		h := int(p[32]>>4) * 4
		n := len(p) - 20 - h
		if i == 0 {
			thl, mss, seq = h, n, binary.BigEndian.Uint32(p[24:])
		}
		last := i == len(pkts)-1
		switch {
		case h != thl:
			return fmt.Errorf("segment %d: TCP header %d bytes, first %d", i, h, thl)
		case n == 0 || n > mss || (!last && n != mss):
			return fmt.Errorf("segment %d of %d: %d payload bytes, first %d", i, len(pkts), n, mss)
		case p[1] != f[1] || p[6] != f[6] || p[8] != f[8] || !bytes.Equal(p[12:20], f[12:20]):
			return fmt.Errorf("segment %d: IP header differs", i)
		case !bytes.Equal(p[20:24], f[20:24]) || !bytes.Equal(p[28:33], f[28:33]) ||
			!bytes.Equal(p[34:36], f[34:36]) || !bytes.Equal(p[38:20+h], f[38:20+h]):
			return fmt.Errorf("segment %d: TCP header differs", i)
		case binary.BigEndian.Uint32(p[24:]) != seq:
			return fmt.Errorf("segment %d: seq %d, want %d", i, binary.BigEndian.Uint32(p[24:]), seq)
		case p[33] != flagACK && (!last || p[33] != flagACK|flagPSH):
			return fmt.Errorf("segment %d of %d: flags %08b", i, len(pkts), p[33])
		}
		seq += uint32(n)
		total += n
	}
	if 20+thl+total > 65535 {
		return fmt.Errorf("%d bytes coalesced", 20+thl+total)
	}
	return groIPIDs(pkts)
}

// groIPIDs checks the IP IDs of pkts as inet_gro_flush does: one up from
// the first's, packet by packet, or, when DF is set and the second packet
// has the first's ID, the first's in all.
func groIPIDs(pkts [][]byte) error {
	id0 := binary.BigEndian.Uint16(pkts[0][4:])
	fixed := pkts[0][6]&0x40 != 0 && len(pkts) > 1 && binary.BigEndian.Uint16(pkts[1][4:]) == id0
	for i, p := range pkts {
		want := id0 + uint16(i)
		if fixed {
			want = id0
		}
		if id := binary.BigEndian.Uint16(p[4:]); id != want {
			return fmt.Errorf("packet %d: IP ID %d, want %d", i, id, want)
		}
	}
	return nil
}

// udpGRORun checks, without the code under test, that pkts may be
// coalesced under Linux's UDP GRO rules (udp_gro_receive with a socket that
// asks for it, inet_gro_receive) into a super-packet that USO cuts back into
// them: unfragmented UDP/IPv4 without IP options, checksums present and
// valid, the same addresses, ports, TOS, TTL and DF, IP IDs as groIPIDs
// wants them, every payload the first's size but the last's (not larger,
// not empty), at most MaxSegments and 64 KiB.
func udpGRORun(pkts [][]byte) error {
	if len(pkts) > MaxSegments {
		return fmt.Errorf("%d datagrams", len(pkts))
	}
	f := pkts[0]
	size, total := len(f)-28, 0
	for i, p := range pkts {
		if err := checkIPv4Sums(p, false); err != nil {
			return fmt.Errorf("datagram %d: %v", i, err)
		}
		if p[0] != 0x45 || p[9] != 17 || binary.BigEndian.Uint16(p[6:])&^0x4000 != 0 {
			return fmt.Errorf("datagram %d: not unfragmented UDP/IPv4 without options", i)
		}
		n := len(p) - 28
		last := i == len(pkts)-1
		switch {
		case int(binary.BigEndian.Uint16(p[24:])) != len(p)-20:
			return fmt.Errorf("datagram %d: UDP length %d, %d bytes", i, binary.BigEndian.Uint16(p[24:]), len(p)-20)
		case n <= 0 || n > size || (!last && n != size):
			return fmt.Errorf("datagram %d of %d: %d payload bytes, first %d", i, len(pkts), n, size)
		case p[1] != f[1] || p[6]&0xc0 != f[6]&0xc0 || p[8] != f[8] || !bytes.Equal(p[12:24], f[12:24]):
			return fmt.Errorf("datagram %d: another flow or IP header", i)
		}
		total += n
	}
	if 28+total > 65535 {
		return fmt.Errorf("%d bytes coalesced", 28+total)
	}
	return groIPIDs(pkts)
}

// superPacket is what the queue writes for a run of several segments (see
// vnetQueue.writeRun): the run's header followed by every payload, and the
// GSO the virtio-net header describes.
func superPacket(r run, pkts [][]byte) ([]byte, GSO) {
	var h [MaxHeader]byte
	p := append([]byte(nil), r.header(h[:], pkts[0], pkts[len(pkts)-1])...)
	for _, s := range pkts {
		p = append(p, s[r.hlen:]...)
	}
	if r.udp {
		return p, GSO{Kind: GSOUDPv4, SegmentSize: r.segment, NeedsCsum: true, CsumStart: r.ihl, CsumOffset: 6}
	}
	return p, GSO{Kind: GSOTCPv4, SegmentSize: r.segment, NeedsCsum: true, CsumStart: r.ihl, CsumOffset: 16}
}

// roundTrip checks that the super-packet written for the run r of pkts,
// once its partial checksum is completed and it is cut by Split as the
// kernel would, gives back pkts byte for byte, but for checksums (valid)
// and, in a run that kept one IP ID (DF set), the IDs, which count up from
// the first's.
func roundTrip(r run, pkts [][]byte) error {
	super, g := superPacket(r, pkts)
	if int(binary.BigEndian.Uint16(super[2:])) != len(super) {
		return fmt.Errorf("super-packet total length %d, %d bytes", binary.BigEndian.Uint16(super[2:]), len(super))
	}
	if s := refSum(super[:r.ihl], 0); s != 0xffff {
		return fmt.Errorf("super-packet IPv4 header checksum wrong")
	}
	// CHECKSUM_PARTIAL: the field must hold the pseudo-header sum.
	proto, csumAt := byte(6), r.ihl+16
	if r.udp {
		proto, csumAt = 17, r.ihl+6
	}
	if got, want := binary.BigEndian.Uint16(super[csumAt:]), refSum(nil, refPseudo(super, proto, len(super)-r.ihl)); got != want {
		return fmt.Errorf("partial checksum %#04x, pseudo-header sum %#04x", got, want)
	}
	heads := make([]byte, MaxSegments*MaxHeader)
	out := make([]Segment, MaxSegments)
	n, err := Split(super, g, heads, out)
	if err != nil {
		return fmt.Errorf("cutting the super-packet: %v", err)
	}
	if n != len(pkts) {
		return fmt.Errorf("the super-packet cuts into %d segments, the run has %d", n, len(pkts))
	}
	id0 := binary.BigEndian.Uint16(pkts[0][4:])
	ignore := [][2]int{{10, 12}, {csumAt, csumAt + 2}}
	if binary.BigEndian.Uint16(pkts[1][4:]) == id0 {
		ignore = append(ignore, [2]int{4, 6})
	}
	for k, s := range out[:n] {
		got, want := flatten(s), pkts[k]
		if err := checkIPv4(got); err != nil {
			return fmt.Errorf("segment %d cut again: %v", k, err)
		}
		if id := binary.BigEndian.Uint16(got[4:]); id != id0+uint16(k) {
			return fmt.Errorf("segment %d cut again: IP ID %d, want %d", k, id, id0+uint16(k))
		}
		if len(got) != len(want) {
			return fmt.Errorf("segment %d cut again: %d bytes, was %d", k, len(got), len(want))
		}
		for _, c := range ignore {
			copy(got[c[0]:c[1]], want[c[0]:c[1]])
		}
		if !bytes.Equal(got, want) {
			i := 0
			for got[i] == want[i] {
				i++
			}
			return fmt.Errorf("segment %d cut again differs at byte %d: %#02x, was %#02x", k, i, got[i], want[i])
		}
	}
	return nil
}

// TestPlanRunsRoundTrip is the property: random flows, cut from random
// super-packets by Split, interleaved and now and then disturbed, are
// planned into runs that obey GRO's rules and give back the same segments
// when the kernel cuts their super-packets; undisturbed stretches of a flow
// make one run each.
func TestPlanRunsRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	heads := make([]byte, MaxSegments*MaxHeader)
	segs := make([]Segment, MaxSegments)
	for iter := range 400 {
		type flowPkts struct {
			pkts      [][]byte
			disturbed bool
		}
		var flows []flowPkts
		for f := range 1 + r.IntN(4) {
			mss := 500 + r.IntN(961)
			var opts []layers.TCPOption
			thl := 20
			if r.IntN(4) != 0 {
				opts, thl = tsOptions(r.Uint32(), r.Uint32()), 32
			}
			n := 1 + r.IntN(min(65535-20-thl, MaxSegments*mss))
			payload := make([]byte, n)
			for i := range payload {
				payload[i] = byte(r.Uint32())
			}
			flags := byte(flagACK)
			if r.IntN(2) == 0 {
				flags |= flagPSH
			}
			disturbed := false
			if r.IntN(8) == 0 { // FIN or CWR: runs stop there
				flags |= []byte{flagFIN, flagCWR}[r.IntN(2)]
				disturbed = true
			}
			super := tcpSpec{
				sport: uint16(40000 + f), seq: r.Uint32(), ack: r.Uint32(), flags: flags,
				window: uint16(r.Uint32()), id: uint16(r.Uint32()), ipFlags: layers.IPv4DontFragment,
				tcpOptions: opts, payload: payload,
			}.build()
			k, err := Split(super, GSO{Kind: GSOTCPv4, SegmentSize: mss}, heads, segs)
			if err != nil {
				t.Fatal(err)
			}
			var pkts [][]byte
			for _, s := range segs[:k] {
				pkts = append(pkts, flatten(s))
			}
			if k > 2 && r.IntN(3) == 0 {
				disturbed = true
				i := 1 + r.IntN(k-2)
				p := pkts[i]
				switch r.IntN(6) {
				case 0: // a gap
					pkts = slices.Delete(pkts, i, i+1)
				case 1: // PSH in the middle
					p[33] |= flagPSH
				case 2: // another TTL
					p[8]--
				case 3: // another window
					p[34]++
				case 4: // a corrupt payload: the checksum no longer fits
					p[len(p)-1]++
				case 5: // a retransmission
					pkts = slices.Insert(pkts, i, append([]byte(nil), pkts[i-1]...))
				}
				if p[33]&flagPSH != 0 || p[8] != pkts[0][8] || p[34] != pkts[0][34] {
					ipv4.SetHeaderChecksum(p[:20])
					p[36], p[37] = 0, 0
					binary.BigEndian.PutUint16(p[36:], ^ipv4.Fold(ipv4.Sum(p[20:], ipv4.PseudoHeaderSum(p, 6, len(p)-20))))
				}
			}
			flows = append(flows, flowPkts{pkts, disturbed})
		}
		// Interleave the flows in random stretches, each flow in order.
		var all [][]byte
		var owner []int
		for {
			var left []int
			for f := range flows {
				if len(flows[f].pkts) > 0 {
					left = append(left, f)
				}
			}
			if len(left) == 0 {
				break
			}
			f := left[r.IntN(len(left))]
			k := 1 + r.IntN(len(flows[f].pkts))
			if r.IntN(2) == 0 {
				k = len(flows[f].pkts)
			}
			for _, p := range flows[f].pkts[:k] {
				all = append(all, p)
				owner = append(owner, f)
			}
			flows[f].pkts = flows[f].pkts[k:]
		}
		bufs := bufsOf(all)
		runs := planRuns(bufs, Headroom, nil, true)
		t.Run(fmt.Sprint(iter), func(t *testing.T) {
			checkRuns(t, bufs, Headroom, runs)
			// An undisturbed flow makes one run per stretch.
			for _, r := range runs {
				f := owner[r.start]
				if flows[f].disturbed {
					continue
				}
				if r.start > 0 && owner[r.start-1] == f {
					t.Fatalf("run at %d of undisturbed flow %d starts inside a stretch", r.start, f)
				}
				if r.end < len(owner) && owner[r.end] == f {
					t.Fatalf("run [%d,%d) of undisturbed flow %d ends inside a stretch", r.start, r.end, f)
				}
			}
		})
	}
}

// TestPlanRunsFlannelRecording plans the writes of the TCP packets a real
// flanneld carried (the recording's 100 KB transfer, both directions, in
// the order captured): Linux's own segments must coalesce where they
// follow each other, and come back whole.
func TestPlanRunsFlannelRecording(t *testing.T) {
	bufs := bufsOf(tcpOf(flannelPackets(t)))
	runs := planRuns(bufs, Headroom, nil, true)
	checkRuns(t, bufs, Headroom, runs)
	most := slices.Max(runLengths(runs))
	if most < 5 {
		t.Fatalf("the longest run is %d packets: the recorded flow hardly coalesces", most)
	}
	t.Logf("%d packets in %d runs, the longest %d", len(bufs), len(runs), most)
}
