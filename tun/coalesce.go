package tun

import "encoding/binary"

// run is a stretch of packets written to the TUN as one: a single packet,
// or TCP segments (or UDP datagrams) of one flow, in order, coalesced into
// a super-packet.
type run struct {
	start, end int  // the packets bufs[start:end]
	udp        bool // UDP datagrams, not TCP segments
	ihl, hlen  int  // IPv4 header length, and IPv4 plus transport header length
	segment    int  // payload bytes of each segment but the last
	payload    int  // payload bytes of the whole run
}

// maxSuperPacket is the largest IPv4 packet: a coalesced run stays within it.
const maxSuperPacket = 65535

// planRuns splits the packets bufs[i][offset:] into runs, appended to runs.
// Segments join a run under the rules Linux's TCP GRO applies, so that the
// kernel cutting the super-packet again gives back the same segments: same
// addresses, ports, TOS, TTL and header bytes (options included) but for
// sequence number, IP ID and checksums; sequence numbers contiguous; every
// segment full size but the last; ACK alone on all but the last, which may
// add PSH; TCP checksums valid, for the kernel makes the super-packet's anew
// and would hide a corrupt segment.
//
// With udp, datagrams of one flow join a run too, as Linux's UDP GRO joins
// them for a socket that asks for it (udp_gro_receive): same addresses,
// ports, TOS, TTL and DF; every payload the first's size but the last's
// (not larger); checksums valid or absent. The kernel cuts the super-packet
// (USO) where it must, at the latest for the receiving socket.
func planRuns(bufs [][]byte, offset int, runs []run, udp bool) []run {
	for i := 0; i < len(bufs); {
		r := run{start: i, end: i + 1}
		first := bufs[i][offset:]
		if ihl, hlen, plen, ok := tcpSegment(first); ok && plen > 0 && first[ihl+13] == tcpACK {
			r.ihl, r.hlen, r.segment, r.payload = ihl, hlen, plen, plen
			prev := first
			for j := i + 1; j < len(bufs) && j-i < MaxSegments; j++ {
				next := bufs[j][offset:]
				_, nh, np, ok := tcpSegment(next)
				if !ok || nh != hlen || np == 0 || np > r.segment ||
					hlen+r.payload+np > maxSuperPacket || !follows(prev, next, ihl, hlen) ||
					!tcpChecksumOK(next, ihl) || (j == i+1 && !tcpChecksumOK(first, ihl)) {
					break
				}
				r.end = j + 1
				r.payload += np
				if np < r.segment || next[ihl+13] != tcpACK {
					break // a short or PSH segment ends the run
				}
				prev = next
			}
		} else if plen, ok := udpDatagram(first); udp && ok {
			r.udp, r.ihl, r.hlen, r.segment, r.payload = true, 20, 28, plen, plen
			for j := i + 1; j < len(bufs) && j-i < MaxSegments; j++ {
				next := bufs[j][offset:]
				np, ok := udpDatagram(next)
				if !ok || np > r.segment || 28+r.payload+np > maxSuperPacket || !sameUDPFlow(first, next) ||
					!udpChecksumOK(next) || (j == i+1 && !udpChecksumOK(first)) {
					break
				}
				r.end = j + 1
				r.payload += np
				if np < r.segment {
					break // a short datagram ends the run
				}
			}
		}
		runs = append(runs, r)
		i = r.end
	}
	return runs
}

// header writes into h the headers of the super-packet that stands for the
// run r, whose first and last segments are first and last, and returns
// h[:r.hlen]: the first segment's headers with the run's total length (and,
// for UDP, UDP length), the last segment's PSH (as tcp_gro_receive: the
// kernel's GSO puts it back on the last segment only), a fresh IPv4 header
// checksum, and in the transport checksum field the pseudo-header sum
// (CHECKSUM_PARTIAL: the kernel, or the pod's stack, finishes it).
func (r run) header(h, first, last []byte) []byte {
	h = h[:r.hlen]
	copy(h, first[:r.hlen])
	binary.BigEndian.PutUint16(h[2:4], uint16(r.hlen+r.payload))
	setIPv4Checksum(h[:r.ihl])
	l := r.hlen - r.ihl + r.payload
	if r.udp {
		binary.BigEndian.PutUint16(h[r.ihl+4:], uint16(l))
		binary.BigEndian.PutUint16(h[r.ihl+6:], fold(pseudoHeader(h, 17, l)))
		return h
	}
	h[r.ihl+13] |= last[r.ihl+13] & tcpPSH
	binary.BigEndian.PutUint16(h[r.ihl+16:], fold(pseudoHeader(h, 6, l)))
	return h
}

const (
	tcpACK = 0x10
	tcpPSH = 0x08
)

// tcpSegment checks that p is an unfragmented TCP/IPv4 packet without IP
// options whose length fields agree with len(p), and returns its header
// lengths and payload length.
func tcpSegment(p []byte) (ihl, hlen, plen int, ok bool) {
	if len(p) < 40 || p[0] != 0x45 || p[9] != 6 {
		return 0, 0, 0, false
	}
	if binary.BigEndian.Uint16(p[6:8])&0x3fff != 0 { // MF or a fragment offset
		return 0, 0, 0, false
	}
	if int(binary.BigEndian.Uint16(p[2:4])) != len(p) {
		return 0, 0, 0, false
	}
	thl := int(p[20+12]>>4) * 4
	if thl < 20 || 20+thl > len(p) {
		return 0, 0, 0, false
	}
	return 20, 20 + thl, len(p) - 20 - thl, true
}

// tcpChecksumOK reports whether the TCP checksum of the segment p is right.
func tcpChecksumOK(p []byte, ihl int) bool {
	return fold(sum(p[ihl:], pseudoHeader(p, 6, len(p)-ihl))) == 0xffff
}

// follows reports whether next continues prev's flow right where prev ends.
func follows(prev, next []byte, ihl, hlen int) bool {
	if prev[1] != next[1] || prev[8] != next[8] || // TOS, TTL
		prev[6]&0xc0 != next[6]&0xc0 || // DF and the reserved flag
		string(prev[12:20]) != string(next[12:20]) { // addresses
		return false
	}
	pt, nt := prev[ihl:hlen], next[ihl:hlen]
	if string(pt[0:4]) != string(nt[0:4]) || // ports
		string(pt[8:12]) != string(nt[8:12]) || // ACK number
		pt[12] != nt[12] || // data offset
		nt[13]&^tcpPSH != tcpACK || // flags: ACK, maybe PSH
		string(pt[14:16]) != string(nt[14:16]) || // window
		string(pt[18:]) != string(nt[18:]) { // urgent pointer and options
		return false
	}
	pseq := binary.BigEndian.Uint32(pt[4:8])
	nseq := binary.BigEndian.Uint32(nt[4:8])
	return nseq == pseq+uint32(len(prev)-hlen)
}

// udpDatagram checks that p is an unfragmented UDP/IPv4 datagram without IP
// options, with a payload, whose length fields agree with len(p), and
// returns its payload length.
func udpDatagram(p []byte) (plen int, ok bool) {
	if len(p) <= 28 || p[0] != 0x45 || p[9] != 17 {
		return 0, false
	}
	if binary.BigEndian.Uint16(p[6:8])&0x3fff != 0 { // MF or a fragment offset
		return 0, false
	}
	if int(binary.BigEndian.Uint16(p[2:4])) != len(p) || int(binary.BigEndian.Uint16(p[24:26])) != len(p)-20 {
		return 0, false
	}
	return len(p) - 28, true
}

// sameUDPFlow reports whether the datagrams a and b are of one flow, with
// the IPv4 header fields the kernel's USO copies to every datagram alike.
func sameUDPFlow(a, b []byte) bool {
	return a[1] == b[1] && a[8] == b[8] && // TOS, TTL
		a[6]&0xc0 == b[6]&0xc0 && // DF and the reserved flag
		string(a[12:24]) == string(b[12:24]) // addresses and ports
}

// udpChecksumOK reports whether the UDP checksum of p is right, or absent
// (0: the sender computed none; the super-packet's segments get one).
func udpChecksumOK(p []byte) bool {
	if p[26] == 0 && p[27] == 0 {
		return true
	}
	return fold(sum(p[20:], pseudoHeader(p, 17, len(p)-20))) == 0xffff
}
