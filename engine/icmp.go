package engine

import (
	"encoding/binary"
	"time"
)

// ICMP net unreachable, so that a pod's connect to a subnet no host leases
// fails at once ("network unreachable") instead of timing out.
const (
	icmpProto       = 1
	icmpDestUnreach = 3
	icmpNetUnreach  = 0
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
	quoted := min(len(pkt), icmpMaxLen-ipv4MinHeader-8)
	total := ipv4MinHeader + 8 + quoted
	h := out[:ipv4MinHeader]
	h[0] = 0x45
	h[1] = 0xc0 // precedence: internetwork control, as Linux marks ICMP errors
	binary.BigEndian.PutUint16(h[offTotalLen:], uint16(total))
	binary.BigEndian.PutUint32(h[4:8], 0) // id 0, no flags, offset 0
	h[offTTL] = 64
	h[offProto] = icmpProto
	binary.BigEndian.PutUint16(h[offChecksum:], 0)
	copy(h[offSrc:offSrc+4], pkt[offDst:offDst+4])
	copy(h[offDst:offDst+4], pkt[offSrc:offSrc+4])
	binary.BigEndian.PutUint16(h[offChecksum:], checksum(h, 0))

	m := out[ipv4MinHeader:total]
	m[0], m[1] = icmpDestUnreach, icmpNetUnreach
	binary.BigEndian.PutUint16(m[2:4], 0)
	binary.BigEndian.PutUint32(m[4:8], 0)
	copy(m[8:], pkt[:quoted])
	binary.BigEndian.PutUint16(m[2:4], checksum(m, 0))
	return total
}

// answerable reports whether RFC 1122 (3.2.2) allows an ICMP error in
// answer to pkt, a checked IPv4 packet: not to an ICMP error, not to a
// fragment other than the first, not to a packet sent to a multicast or
// broadcast address, not to a source that names no single host
// (unspecified, loopback, multicast, class E, broadcast).
func answerable(pkt []byte) bool {
	hlen := int(pkt[0]&0x0f) * 4
	if binary.BigEndian.Uint16(pkt[6:8])&0x1fff != 0 {
		return false // not the first fragment
	}
	src := ipv4Src(pkt)
	if src == 0 || src>>24 == 127 || src>>28 >= 0xe {
		return false // unspecified, loopback, multicast, class E or broadcast source
	}
	if ipv4Dst(pkt)>>28 >= 0xe {
		return false // to a multicast, class E or broadcast address
	}
	if pkt[offProto] == icmpProto && len(pkt) > hlen {
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
