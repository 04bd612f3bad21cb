//go:build !purego

package ipv4

import "golang.org/x/sys/cpu"

// useAVX2 picks the vector loop of sumLE for 128 bytes and more. AVX2 is
// not in the amd64 baseline (GOAMD64=v1), so it is asked of the CPU and OS.
var useAVX2 = cpu.X86.HasAVX2

// sumLE is the unfolded one's-complement sum of b in little-endian words,
// in assembly: checksum_amd64.s. Its result is congruent to sumLEGeneric's
// mod 0xffff, and 0 only when every byte of b is: Sum's are the same bits.
//
//go:noescape
func sumLE(b []byte) uint64
