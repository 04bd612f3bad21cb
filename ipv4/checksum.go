package ipv4

import (
	"encoding/binary"
	"math/bits"
)

// Sum adds b to the one's-complement sum acc and returns the new unfolded
// sum. acc and the result are sums of big-endian words, so the folded result
// is the checksum in network order. Sums chain: summing b[:n], then b[n:]
// from that, is summing b, for an even n (an odd one would cut a word).
//
// The words of b are summed in little-endian order, the order the loads of
// amd64 and arm64 give without swapping bytes (sumLE: assembly on those two,
// sumLEGeneric elsewhere); then the folded sum is swapped back (RFC 1071: a
// one's-complement sum of byte-swapped words is the byte-swapped sum).
func Sum(b []byte, acc uint64) uint64 {
	return addSwapped(acc, sumLE(b))
}

// addSwapped adds s, an unfolded sum of little-endian words, to acc, a sum
// of big-endian ones.
func addSwapped(acc, s uint64) uint64 {
	acc, c := bits.Add64(acc, uint64(bits.ReverseBytes16(Fold(s))), 0)
	return acc + c
}

// sumLEGeneric is sumLE in Go: the unfolded one's-complement sum of b in
// little-endian words, an odd last byte the low half of one, in two
// independent carry chains. It is 0 only when every byte of b is, as the
// sum of any implementation must be for Sum's results to be the same bits:
// Fold of a sum depends only on its value mod 0xffff and on whether it is 0.
func sumLEGeneric(b []byte) uint64 {
	var a0, a1, c0, c1 uint64
	for len(b) >= 64 {
		a0, c0 = bits.Add64(a0, binary.LittleEndian.Uint64(b[0:8]), c0)
		a1, c1 = bits.Add64(a1, binary.LittleEndian.Uint64(b[8:16]), c1)
		a0, c0 = bits.Add64(a0, binary.LittleEndian.Uint64(b[16:24]), c0)
		a1, c1 = bits.Add64(a1, binary.LittleEndian.Uint64(b[24:32]), c1)
		a0, c0 = bits.Add64(a0, binary.LittleEndian.Uint64(b[32:40]), c0)
		a1, c1 = bits.Add64(a1, binary.LittleEndian.Uint64(b[40:48]), c1)
		a0, c0 = bits.Add64(a0, binary.LittleEndian.Uint64(b[48:56]), c0)
		a1, c1 = bits.Add64(a1, binary.LittleEndian.Uint64(b[56:64]), c1)
		b = b[64:]
	}
	for len(b) >= 8 {
		a0, c0 = bits.Add64(a0, binary.LittleEndian.Uint64(b), c0)
		b = b[8:]
	}
	var c uint64
	a0, c = bits.Add64(a0, a1, c0)
	a0, c = bits.Add64(a0, c1, c)
	a0 += c // cannot carry: a0 was at most 2^64-1 before adding c's 1 back
	if len(b) >= 4 {
		a0, c = bits.Add64(a0, uint64(binary.LittleEndian.Uint32(b)), 0)
		a0 += c
		b = b[4:]
	}
	if len(b) >= 2 {
		a0, c = bits.Add64(a0, uint64(binary.LittleEndian.Uint16(b)), 0)
		a0 += c
		b = b[2:]
	}
	if len(b) == 1 {
		// The odd last byte is the high half of a big-endian word: the low
		// half of a little-endian one.
		a0, c = bits.Add64(a0, uint64(b[0]), 0)
		a0 += c
	}
	return a0
}

// Fold reduces an unfolded sum to 16 bits.
func Fold(acc uint64) uint16 {
	acc = acc>>32 + acc&0xffffffff
	acc = acc>>32 + acc&0xffffffff
	acc = acc>>16 + acc&0xffff
	acc = acc>>16 + acc&0xffff
	return uint16(acc)
}

// Checksum is the Internet checksum of b: the complement of its folded sum.
// A header whose checksum field is right has Checksum 0.
func Checksum(b []byte) uint16 { return ^Fold(Sum(b, 0)) }

// PseudoHeaderSum is the unfolded sum of the pseudo-header of a TCP or UDP
// segment of length l (its header included) in the IPv4 packet ip: the
// addresses, the protocol and the length (RFC 768, RFC 9293 3.1).
func PseudoHeaderSum(ip []byte, proto byte, l int) uint64 {
	return uint64(binary.BigEndian.Uint32(ip[OffSrc:OffSrc+4])) +
		uint64(binary.BigEndian.Uint32(ip[OffDst:OffDst+4])) +
		uint64(proto) + uint64(l)
}

// SetHeaderChecksum recomputes the checksum of hdr, a whole IPv4 header.
func SetHeaderChecksum(hdr []byte) {
	hdr[OffChecksum], hdr[OffChecksum+1] = 0, 0
	binary.BigEndian.PutUint16(hdr[OffChecksum:], Checksum(hdr))
}
