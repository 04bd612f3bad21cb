package engine

import (
	"encoding/binary"

	"github.com/weft-dev/weft/ipv4"
)

// checkIPv4 validates the IPv4 header of pkt (the bytes read, possibly with
// trailing bytes after the packet) and returns the packet's total length.
// verifySum also checks the header checksum: the kernel wrote the headers of
// packets read from the TUN, but packets from the wire are untrusted.
func checkIPv4(pkt []byte, verifySum bool) (int, Drop) {
	if len(pkt) < ipv4.MinHeaderLen {
		return 0, DropTruncated
	}
	if pkt[ipv4.OffVersionIHL]>>4 != 4 {
		return 0, DropNotIPv4
	}
	hlen := ipv4.HeaderLen(pkt)
	if hlen < ipv4.MinHeaderLen || hlen > len(pkt) {
		return 0, DropBadHeaderLen
	}
	total := int(binary.BigEndian.Uint16(pkt[ipv4.OffTotalLen:]))
	if total < hlen || total > len(pkt) {
		return 0, DropBadTotalLen
	}
	if verifySum && ipv4.Checksum(pkt[:hlen]) != 0 {
		return 0, DropBadChecksum
	}
	return total, DropNone
}

// decrementTTL lowers the TTL by one and patches the header checksum
// incrementally (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')). The 16-bit word
// holding the TTL drops by 0x0100, so the one's-complement sum of the header
// does too and the checksum, its complement, rises by 0x0100 with an
// end-around carry. This is what Linux's ip_decrease_ttl does.
// The caller has checked that the TTL is above 1.
func decrementTTL(hdr []byte) {
	hdr[ipv4.OffTTL]--
	sum := uint32(binary.BigEndian.Uint16(hdr[ipv4.OffChecksum:])) + 0x0100
	if sum >= 0xffff {
		sum++
	}
	binary.BigEndian.PutUint16(hdr[ipv4.OffChecksum:], uint16(sum))
}
