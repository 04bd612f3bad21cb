package engine

import (
	"encoding/binary"
	"time"

	"github.com/weft-dev/weft/ipv4"
)

// ICMP net unreachable, so that a pod's connect to a subnet no host leases
// fails at once ("network unreachable") instead of timing out.
const (
	icmpDestUnreach = 3
	icmpNetUnreach  = 0
	icmpHeaderLen   = 8 // type, code, checksum, 4 bytes the type defines
	icmpOffChecksum = 2
	// icmpMaxLen keeps an ICMP error within the 576 bytes every host
	// accepts (RFC 1812, 4.3.2.3), quoting as much of the packet as fits.
	icmpMaxLen = 576
)

// netUnreachable writes into out (at least icmpMaxLen bytes) an ICMP
// destination unreachable, code net unreachable, answering pkt, and returns
// its length, or 0 where RFC 1122 (3.2.2) forbids an answer (see answerable).
//
// The answer's source is pkt's destination, not an address of this host: the
// kernel drops a packet arriving from the TUN with one of its own addresses
// as source (a martian), which is why flanneld's answer, sent from flannel0's
// address, never reached the pod. Routed back through the TUN, the
// destination passes reverse-path filtering too.
func netUnreachable(out, pkt []byte) int {
	if !answerable(pkt) {
		return 0
	}
	quoted := min(len(pkt), icmpMaxLen-ipv4.MinHeaderLen-icmpHeaderLen)
	total := ipv4.MinHeaderLen + icmpHeaderLen + quoted
	h := out[:ipv4.MinHeaderLen]
	h[ipv4.OffVersionIHL] = ipv4.VersionIHL5
	h[ipv4.OffTOS] = 0xc0 // precedence: internetwork control, as Linux marks ICMP errors
	binary.BigEndian.PutUint16(h[ipv4.OffTotalLen:], uint16(total))
	binary.BigEndian.PutUint16(h[ipv4.OffID:], 0)
	binary.BigEndian.PutUint16(h[ipv4.OffFlagsFrag:], 0) // no flags, offset 0
	h[ipv4.OffTTL] = 64
	h[ipv4.OffProto] = ipv4.ProtoICMP
	binary.BigEndian.PutUint16(h[ipv4.OffChecksum:], 0)
	copy(h[ipv4.OffSrc:ipv4.OffSrc+4], pkt[ipv4.OffDst:ipv4.OffDst+4])
	copy(h[ipv4.OffDst:ipv4.OffDst+4], pkt[ipv4.OffSrc:ipv4.OffSrc+4])
	binary.BigEndian.PutUint16(h[ipv4.OffChecksum:], ipv4.Checksum(h))

	m := out[ipv4.MinHeaderLen:total]
	m[0], m[1] = icmpDestUnreach, icmpNetUnreach
	binary.BigEndian.PutUint16(m[icmpOffChecksum:], 0)
	binary.BigEndian.PutUint32(m[icmpOffChecksum+2:], 0) // unused in a destination unreachable
	copy(m[icmpHeaderLen:], pkt[:quoted])
	binary.BigEndian.PutUint16(m[icmpOffChecksum:], ipv4.Checksum(m))
	return total
}

// answerable reports whether RFC 1122 (3.2.2) allows an ICMP error in
// answer to pkt, a checked IPv4 packet: not to an ICMP error, not to a
// fragment other than the first, not to a packet sent to a multicast or
// broadcast address, not to a source that names no single host
// (unspecified, loopback, multicast, class E, broadcast).
func answerable(pkt []byte) bool {
	hlen := ipv4.HeaderLen(pkt)
	if binary.BigEndian.Uint16(pkt[ipv4.OffFlagsFrag:])&ipv4.FragOffsetMask != 0 {
		return false // not the first fragment
	}
	src := ipv4.Src(pkt)
	if src == 0 || src>>24 == 127 || src>>28 >= 0xe {
		return false // unspecified, loopback, multicast, class E or broadcast source
	}
	if ipv4.Dst(pkt)>>28 >= 0xe {
		return false // to a multicast, class E or broadcast address
	}
	if pkt[ipv4.OffProto] == ipv4.ProtoICMP && len(pkt) > hlen {
		switch pkt[hlen] { // ICMP type: answer queries only, never errors
		case 0, 8, 13, 14, 15, 16, 17, 18:
		default:
			return false
		}
	}
	return true
}

// rateLimit is a token bucket: ICMP errors are rate limited as a router's
// are, so a flood to an unleased subnet cannot turn into a flood back.
// Each outbound loop has its own; it takes no lock.
type rateLimit struct {
	tokens float64
	last   time.Time
}

const (
	icmpPerSecond = 100
	icmpBurst     = 20
)

func (r *rateLimit) allow(now time.Time) bool {
	if r.last.IsZero() {
		r.tokens = icmpBurst
	} else {
		r.tokens = min(icmpBurst, r.tokens+now.Sub(r.last).Seconds()*icmpPerSecond)
	}
	r.last = now
	if r.tokens < 1 {
		return false
	}
	r.tokens--
	return true
}
