package tun

import (
	"encoding/binary"
	"math/bits"
)

// sum adds b to the one's-complement sum acc, eight bytes at a time, and
// returns the new unfolded sum. Big-endian words, so the folded result is
// the checksum in network order.
func sum(b []byte, acc uint64) uint64 {
	var carry uint64
	for len(b) >= 32 {
		acc, carry = bits.Add64(acc, binary.BigEndian.Uint64(b[0:8]), carry)
		acc, carry = bits.Add64(acc, binary.BigEndian.Uint64(b[8:16]), carry)
		acc, carry = bits.Add64(acc, binary.BigEndian.Uint64(b[16:24]), carry)
		acc, carry = bits.Add64(acc, binary.BigEndian.Uint64(b[24:32]), carry)
		b = b[32:]
	}
	for len(b) >= 8 {
		acc, carry = bits.Add64(acc, binary.BigEndian.Uint64(b), carry)
		b = b[8:]
	}
	acc, carry = bits.Add64(acc, 0, carry)
	acc += carry
	if len(b) >= 4 {
		acc, carry = bits.Add64(acc, uint64(binary.BigEndian.Uint32(b)), 0)
		acc += carry
		b = b[4:]
	}
	if len(b) >= 2 {
		acc, carry = bits.Add64(acc, uint64(binary.BigEndian.Uint16(b)), 0)
		acc += carry
		b = b[2:]
	}
	if len(b) == 1 {
		acc, carry = bits.Add64(acc, uint64(b[0])<<8, 0)
		acc += carry
	}
	return acc
}

// fold reduces an unfolded sum to 16 bits.
func fold(acc uint64) uint16 {
	acc = acc>>32 + acc&0xffffffff
	acc = acc>>32 + acc&0xffffffff
	acc = acc>>16 + acc&0xffff
	acc = acc>>16 + acc&0xffff
	return uint16(acc)
}

// pseudoHeader is the unfolded sum of the IPv4 pseudo-header of a TCP or
// UDP segment of length l (its header included).
func pseudoHeader(ip []byte, proto byte, l int) uint64 {
	return uint64(binary.BigEndian.Uint32(ip[12:16])) +
		uint64(binary.BigEndian.Uint32(ip[16:20])) +
		uint64(proto) + uint64(l)
}

// setIPv4Checksum recomputes the header checksum of hdr (the whole header).
func setIPv4Checksum(hdr []byte) {
	hdr[10], hdr[11] = 0, 0
	binary.BigEndian.PutUint16(hdr[10:], ^fold(sum(hdr, 0)))
}
