package tun

import (
	"encoding/binary"

	"github.com/weft-dev/weft/ipv4"
)

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
const maxSuperPacket = ipv4.MaxPacketLen

// udpHeaders is the header length of the UDP datagrams a run may join:
// IPv4 without options, then UDP.
const udpHeaders = ipv4.MinHeaderLen + ipv4.UDPHeaderLen

// planRuns splits the packets bufs[i][offset:] into runs, appended to runs.
// Segments join a run under the rules Linux's TCP GRO applies, so that the
// kernel cutting the super-packet again gives back the same segments: same
// addresses, ports, TOS, TTL and header bytes (options included) but for
// sequence number, IP ID and checksums; sequence numbers contiguous; IP IDs
// as inet_gro_flush wants them (see ipIDs); every segment full size but the
// last; ACK alone on all but the last, which may add PSH; TCP checksums
// valid, for the kernel makes the super-packet's anew and would hide a
// corrupt segment.
//
// With udp, datagrams of one flow join a run too, as Linux's UDP GRO joins
// them for a socket that asks for it (udp_gro_receive_segment): same
// addresses, ports, TOS, TTL and DF; IP IDs as for TCP; every payload the
// first's size but the last's (not larger); checksums present and valid.
// The kernel cuts the super-packet (USO) where it must, at the latest for
// the receiving socket.
//
// No packet with the reserved IP flag joins a run: inet_gro_receive flushes
// it, as it does a fragment.
func planRuns(bufs [][]byte, offset int, runs []run, udp bool) []run {
	for i := 0; i < len(bufs); {
		r := run{start: i, end: i + 1}
		first := bufs[i][offset:]
		if ihl, hlen, plen, ok := tcpSegment(first); ok && plen > 0 && first[ihl+ipv4.TCPOffFlags] == ipv4.TCPFlagACK {
			r.ihl, r.hlen, r.segment, r.payload = ihl, hlen, plen, plen
			prev, ids := first, newIPIDs(first)
			for j := i + 1; j < len(bufs) && j-i < MaxSegments; j++ {
				next := bufs[j][offset:]
				_, nh, np, ok := tcpSegment(next)
				if !ok || nh != hlen || np == 0 || np > r.segment ||
					hlen+r.payload+np > maxSuperPacket || !follows(prev, next, ihl, hlen) || !ids.accept(next, j-i) ||
					!tcpChecksumOK(next, ihl) || (j == i+1 && !tcpChecksumOK(first, ihl)) {
					break
				}
				r.end = j + 1
				r.payload += np
				if np < r.segment || next[ihl+ipv4.TCPOffFlags] != ipv4.TCPFlagACK {
					break // a short or PSH segment ends the run
				}
				prev = next
			}
		} else if plen, ok := udpDatagram(first); udp && ok {
			r.udp, r.ihl, r.hlen, r.segment, r.payload = true, ipv4.MinHeaderLen, udpHeaders, plen, plen
			ids := newIPIDs(first)
			for j := i + 1; j < len(bufs) && j-i < MaxSegments; j++ {
				next := bufs[j][offset:]
				np, ok := udpDatagram(next)
				if !ok || np > r.segment || udpHeaders+r.payload+np > maxSuperPacket || !sameUDPFlow(first, next) ||
					!ids.accept(next, j-i) ||
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
	binary.BigEndian.PutUint16(h[ipv4.OffTotalLen:], uint16(r.hlen+r.payload))
	ipv4.SetHeaderChecksum(h[:r.ihl])
	l := r.hlen - r.ihl + r.payload
	t := h[r.ihl:]
	if r.udp {
		binary.BigEndian.PutUint16(t[ipv4.UDPOffLen:], uint16(l))
		binary.BigEndian.PutUint16(t[ipv4.UDPOffChecksum:], ipv4.Fold(ipv4.PseudoHeaderSum(h, ipv4.ProtoUDP, l)))
		return h
	}
	t[ipv4.TCPOffFlags] |= last[r.ihl+ipv4.TCPOffFlags] & ipv4.TCPFlagPSH
	binary.BigEndian.PutUint16(t[ipv4.TCPOffChecksum:], ipv4.Fold(ipv4.PseudoHeaderSum(h, ipv4.ProtoTCP, l)))
	return h
}

// tcpHeaders is the shortest header of the TCP segments a run may join:
// IPv4 without options, then TCP.
const tcpHeaders = ipv4.MinHeaderLen + ipv4.TCPMinHeaderLen

// unfragmented reports whether the IPv4 packet p is whole (neither MF nor
// a fragment offset) and without the reserved flag, which inet_gro_receive
// will not coalesce either.
func unfragmented(p []byte) bool {
	return binary.BigEndian.Uint16(p[ipv4.OffFlagsFrag:])&(ipv4.FlagReserved|ipv4.FlagMF|ipv4.FragOffsetMask) == 0
}

// ipIDs checks the IP IDs of a run's packets as Linux's GRO does
// (inet_gro_flush; before Linux 6.10, inet_gro_receive's flush_id): each
// packet's ID is the first's plus its place in the run, for the kernel's
// GSO numbers the segments it cuts that way. Where DF is set (RFC 6864: the
// ID of an atomic datagram means nothing) the ID may instead stay the
// first's throughout; the second packet decides which of the two a run is.
// The virtio-net header cannot say that a run kept one ID (Linux marks it
// SKB_GSO_TCP_FIXEDID), so the kernel numbers the segments it cuts from
// such a run up from the first's: with DF set, nothing reassembles by them.
type ipIDs struct {
	first uint16 // the first packet's ID
	df    bool   // the first packet has DF; sameIPv4Flow makes the rest alike
	fixed bool   // the run keeps one ID
}

func newIPIDs(first []byte) ipIDs {
	return ipIDs{
		first: binary.BigEndian.Uint16(first[ipv4.OffID:]),
		df:    binary.BigEndian.Uint16(first[ipv4.OffFlagsFrag:])&ipv4.FlagDF != 0,
	}
}

// accept reports whether next may be packet k (k >= 1) of the run.
func (c *ipIDs) accept(next []byte, k int) bool {
	off := binary.BigEndian.Uint16(next[ipv4.OffID:]) - c.first
	if k == 1 {
		c.fixed = c.df && off == 0
	}
	if c.fixed {
		return off == 0
	}
	return off == uint16(k)
}

// totalLenIs reports whether the IPv4 total length of p is n.
func totalLenIs(p []byte, n int) bool {
	return int(binary.BigEndian.Uint16(p[ipv4.OffTotalLen:])) == n
}

// tcpSegment checks that p is an unfragmented TCP/IPv4 packet without IP
// options whose length fields agree with len(p), and returns its header
// lengths and payload length.
func tcpSegment(p []byte) (ihl, hlen, plen int, ok bool) {
	if len(p) < tcpHeaders || p[ipv4.OffVersionIHL] != ipv4.VersionIHL5 || p[ipv4.OffProto] != ipv4.ProtoTCP ||
		!unfragmented(p) || !totalLenIs(p, len(p)) {
		return 0, 0, 0, false
	}
	ihl = ipv4.MinHeaderLen
	thl := ipv4.TCPHeaderLen(p[ihl:])
	if thl < ipv4.TCPMinHeaderLen || ihl+thl > len(p) {
		return 0, 0, 0, false
	}
	return ihl, ihl + thl, len(p) - ihl - thl, true
}

// tcpChecksumOK reports whether the TCP checksum of the segment p is right.
func tcpChecksumOK(p []byte, ihl int) bool {
	return ipv4.Fold(ipv4.Sum(p[ihl:], ipv4.PseudoHeaderSum(p, ipv4.ProtoTCP, len(p)-ihl))) == 0xffff
}

// follows reports whether next continues prev's flow right where prev ends.
func follows(prev, next []byte, ihl, hlen int) bool {
	if !sameIPv4Flow(prev, next) {
		return false
	}
	pt, nt := prev[ihl:hlen], next[ihl:hlen]
	if string(pt[ipv4.TCPOffSrcPort:ipv4.TCPOffSeq]) != string(nt[ipv4.TCPOffSrcPort:ipv4.TCPOffSeq]) || // ports
		string(pt[ipv4.TCPOffAck:ipv4.TCPOffDataOffset]) != string(nt[ipv4.TCPOffAck:ipv4.TCPOffDataOffset]) || // ACK number
		pt[ipv4.TCPOffDataOffset] != nt[ipv4.TCPOffDataOffset] ||
		nt[ipv4.TCPOffFlags]&^ipv4.TCPFlagPSH != ipv4.TCPFlagACK || // ACK, maybe PSH
		string(pt[ipv4.TCPOffWindow:ipv4.TCPOffChecksum]) != string(nt[ipv4.TCPOffWindow:ipv4.TCPOffChecksum]) ||
		string(pt[ipv4.TCPOffUrgent:]) != string(nt[ipv4.TCPOffUrgent:]) { // urgent pointer and options
		return false
	}
	pseq := binary.BigEndian.Uint32(pt[ipv4.TCPOffSeq:])
	nseq := binary.BigEndian.Uint32(nt[ipv4.TCPOffSeq:])
	return nseq == pseq+uint32(len(prev)-hlen)
}

// sameIPv4Flow reports whether a and b have the IPv4 header fields alike
// that the kernel's GSO copies to every segment: TOS, TTL, DF and the
// reserved flag, addresses.
func sameIPv4Flow(a, b []byte) bool {
	const flags = (ipv4.FlagReserved | ipv4.FlagDF) >> 8 // in the word's first byte
	return a[ipv4.OffTOS] == b[ipv4.OffTOS] && a[ipv4.OffTTL] == b[ipv4.OffTTL] &&
		a[ipv4.OffFlagsFrag]&flags == b[ipv4.OffFlagsFrag]&flags &&
		string(a[ipv4.OffSrc:ipv4.OffDst+4]) == string(b[ipv4.OffSrc:ipv4.OffDst+4])
}

// udpDatagram checks that p is an unfragmented UDP/IPv4 datagram without IP
// options, with a payload, whose length fields agree with len(p), and
// returns its payload length.
func udpDatagram(p []byte) (plen int, ok bool) {
	if len(p) <= udpHeaders || p[ipv4.OffVersionIHL] != ipv4.VersionIHL5 || p[ipv4.OffProto] != ipv4.ProtoUDP ||
		!unfragmented(p) || !totalLenIs(p, len(p)) ||
		int(binary.BigEndian.Uint16(p[ipv4.MinHeaderLen+ipv4.UDPOffLen:])) != len(p)-ipv4.MinHeaderLen {
		return 0, false
	}
	return len(p) - udpHeaders, true
}

// sameUDPFlow reports whether the datagrams a and b are of one flow, with
// the IPv4 header fields the kernel's USO copies to every datagram alike.
func sameUDPFlow(a, b []byte) bool {
	const ports = ipv4.MinHeaderLen + ipv4.UDPOffSrcPort
	return sameIPv4Flow(a, b) &&
		string(a[ports:ports+4]) == string(b[ports:ports+4])
}

// udpChecksumOK reports whether the UDP checksum of p is present and right.
// A datagram without one (0) joins no run, as udp_gro_receive_segment will
// not coalesce it: USO would give every segment a checksum its sender never
// made.
func udpChecksumOK(p []byte) bool {
	const at = ipv4.MinHeaderLen + ipv4.UDPOffChecksum
	if p[at] == 0 && p[at+1] == 0 {
		return false
	}
	u := p[ipv4.MinHeaderLen:]
	return ipv4.Fold(ipv4.Sum(u, ipv4.PseudoHeaderSum(p, ipv4.ProtoUDP, len(u)))) == 0xffff
}
