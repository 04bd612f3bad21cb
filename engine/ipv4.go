package engine

import "encoding/binary"

// IPv4 header fields are read straight from the packet bytes at their fixed
// offsets (RFC 791); no decoding library on the hot path.
const (
	ipv4MinHeader = 20
	offTotalLen   = 2
	offTTL        = 8
	offProto      = 9
	offChecksum   = 10
	offSrc        = 12
	offDst        = 16
)

// checkIPv4 validates the IPv4 header of pkt (the bytes read, possibly with
// trailing bytes after the packet) and returns the packet's total length.
// verifySum also checks the header checksum: the kernel wrote the headers of
// packets read from the TUN, but packets from the wire are untrusted.
func checkIPv4(pkt []byte, verifySum bool) (int, Drop) {
	if len(pkt) < ipv4MinHeader {
		return 0, DropTruncated
	}
	if pkt[0]>>4 != 4 {
		return 0, DropNotIPv4
	}
	hlen := int(pkt[0]&0x0f) * 4
	if hlen < ipv4MinHeader || hlen > len(pkt) {
		return 0, DropBadHeaderLen
	}
	total := int(binary.BigEndian.Uint16(pkt[offTotalLen:]))
	if total < hlen || total > len(pkt) {
		return 0, DropBadTotalLen
	}
	if verifySum && checksum(pkt[:hlen], 0) != 0 {
		return 0, DropBadChecksum
	}
	return total, DropNone
}

// ipv4Src and ipv4Dst return the addresses as big-endian uint32s, the form
// the route table is keyed by.
func ipv4Src(pkt []byte) uint32 { return binary.BigEndian.Uint32(pkt[offSrc:]) }
func ipv4Dst(pkt []byte) uint32 { return binary.BigEndian.Uint32(pkt[offDst:]) }

// decrementTTL lowers the TTL by one and patches the header checksum
// incrementally (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')). The 16-bit word
// holding the TTL drops by 0x0100, so the one's-complement sum of the header
// does too and the checksum, its complement, rises by 0x0100 with an
// end-around carry. This is what Linux's ip_decrease_ttl does.
// The caller has checked that the TTL is above 1.
func decrementTTL(hdr []byte) {
	hdr[offTTL]--
	sum := uint32(binary.BigEndian.Uint16(hdr[offChecksum:])) + 0x0100
	if sum >= 0xffff {
		sum++
	}
	binary.BigEndian.PutUint16(hdr[offChecksum:], uint16(sum))
}

// checksum returns the Internet checksum (RFC 1071) of b, starting from the
// partial sum initial. A header with a correct checksum field sums to 0.
func checksum(b []byte, initial uint32) uint16 {
	sum := initial
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
