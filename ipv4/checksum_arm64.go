//go:build !purego

package ipv4

// sumLE is the unfolded one's-complement sum of b in little-endian words,
// in assembly: checksum_arm64.s. Its result is congruent to sumLEGeneric's
// mod 0xffff, and 0 only when every byte of b is: Sum's are the same bits.
//
//go:noescape
func sumLE(b []byte) uint64
