package tun

import (
	"encoding/binary"
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/weft-dev/weft/ipv4"
)

// benchMSS is the MSS of a pod behind weft: the TUN MTU (1500 - 28) less
// 40 bytes of IPv4 and TCP headers.
const benchMSS = 1432

// benchSuper is a 64 KiB TCP super-packet with timestamps, as a pod's
// stack hands one to the TUN: 52 header bytes and 65483 payload bytes, 46
// segments at benchMSS.
func benchSuper() ([]byte, GSO) {
	payload := make([]byte, 65535-52)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	p := tcpSpec{
		seq: 1, ack: 2, flags: flagACK | flagPSH, window: 502, ipFlags: layers.IPv4DontFragment,
		tcpOptions: tsOptions(3, 4), payload: payload,
	}.build()
	binary.BigEndian.PutUint16(p[36:], ipv4.Fold(ipv4.PseudoHeaderSum(p, 6, len(p)-20)))
	return p, GSO{Kind: GSOTCPv4, SegmentSize: benchMSS, NeedsCsum: true, CsumStart: 20, CsumOffset: 16}
}

// BenchmarkSplit cuts a 64 KiB super-packet into segments whose payloads
// stay in place.
func BenchmarkSplit(b *testing.B) {
	pkt, g := benchSuper()
	heads := make([]byte, MaxSegments*MaxHeader)
	out := make([]Segment, MaxSegments)
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Split(pkt, g, heads, out); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSplitCopy makes the same segments as wireguard-go's gsoSplit
// does: each copied, header and payload, into a buffer of its own, then
// checksummed there. It is the reference BenchmarkSplit is measured against.
func BenchmarkSplitCopy(b *testing.B) {
	pkt, g := benchSuper()
	bufs := make([][]byte, MaxSegments)
	for i := range bufs {
		bufs[i] = make([]byte, Headroom+1500)
	}
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	for b.Loop() {
		if n := splitCopy(pkt, g, bufs, Headroom); n != 46 {
			b.Fatalf("%d segments", n)
		}
	}
}

// splitCopy is gsoSplit's way, for TCP/IPv4 only.
func splitCopy(in []byte, g GSO, bufs [][]byte, offset int) int {
	ihl := int(in[0]&0x0f) * 4
	hlen := ihl + int(in[ihl+12]>>4)*4
	seq := binary.BigEndian.Uint32(in[ihl+4:])
	id := binary.BigEndian.Uint16(in[4:])
	i := 0
	for at := hlen; at < len(in); at += g.SegmentSize {
		end := min(at+g.SegmentSize, len(in))
		out := bufs[i][offset:]
		total := hlen + end - at
		copy(out, in[:hlen])
		copy(out[hlen:], in[at:end])
		binary.BigEndian.PutUint16(out[2:], uint16(total))
		binary.BigEndian.PutUint16(out[4:], id+uint16(i))
		ipv4.SetHeaderChecksum(out[:ihl])
		binary.BigEndian.PutUint32(out[ihl+4:], seq+uint32(at-hlen))
		if end != len(in) {
			out[ihl+13] &^= flagFIN | flagPSH
		}
		out[ihl+16], out[ihl+17] = 0, 0
		binary.BigEndian.PutUint16(out[ihl+16:], ^ipv4.Fold(ipv4.Sum(out[ihl:total], ipv4.PseudoHeaderSum(out, 6, total-ihl))))
		i++
	}
	return i
}

// BenchmarkPlanRuns plans the writes of 45 full segments of one flow, a
// 64 KiB super-packet's worth, as the inbound path hands them to Write.
func BenchmarkPlanRuns(b *testing.B) {
	pkt, g := benchSuper()
	pkt = pkt[:52+45*benchMSS]
	binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
	heads := make([]byte, MaxSegments*MaxHeader)
	segs := make([]Segment, MaxSegments)
	n, err := Split(pkt, g, heads, segs)
	if err != nil || n != 45 {
		b.Fatalf("Split: %d, %v", n, err)
	}
	var pkts [][]byte
	total := 0
	for _, s := range segs[:n] {
		pkts = append(pkts, flatten(s))
		total += len(s.Head) + len(s.Payload)
	}
	bufs := bufsOf(pkts)
	runs := make([]run, 0, 128)
	b.SetBytes(int64(total))
	b.ReportAllocs()
	for b.Loop() {
		runs = planRuns(bufs, Headroom, runs[:0], true)
		if len(runs) != 1 {
			b.Fatalf("%d runs", len(runs))
		}
	}
}
