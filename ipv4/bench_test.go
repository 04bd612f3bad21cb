package ipv4

import (
	"fmt"
	"testing"
)

// BenchmarkSum sums one full-size packet.
func BenchmarkSum(b *testing.B) {
	p := make([]byte, 1472)
	for i := range p {
		p[i] = byte(i)
	}
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		if Fold(Sum(p, 0)) == 0 {
			b.Fatal("zero sum")
		}
	}
}

// BenchmarkSumSizes sums an option-less header, a small segment, a
// full-size packet and a 64 KiB super-packet. Built with -tags purego it
// measures the Go loop, to compare with the assembly.
func BenchmarkSumSizes(b *testing.B) {
	for _, n := range []int{20, 64, 1472, 65536} {
		b.Run(fmt.Sprintf("bytes=%d", n), func(b *testing.B) {
			p := make([]byte, n)
			for i := range p {
				p[i] = byte(i)
			}
			b.SetBytes(int64(n))
			for b.Loop() {
				if Fold(Sum(p, 0)) == 0 {
					b.Fatal("zero sum")
				}
			}
		})
	}
}

// BenchmarkHeaderChecksum checks one option-less header, as the engine
// does for every packet from the wire, against the 16-bit loop of RFC 1071
// (refSum, what the engine used before) in the same run.
func BenchmarkHeaderChecksum(b *testing.B) {
	h := []byte{0x45, 0, 0, 0x73, 0, 0, 0x40, 0, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0, 1, 0xc0, 0xa8, 0, 0xc7}
	b.Run("impl=Checksum", func(b *testing.B) {
		b.SetBytes(int64(len(h)))
		for b.Loop() {
			if Checksum(h) != 0 {
				b.Fatal("bad header")
			}
		}
	})
	b.Run("impl=16-bit", func(b *testing.B) {
		b.SetBytes(int64(len(h)))
		for b.Loop() {
			if ^refSum(h, 0) != 0 {
				b.Fatal("bad header")
			}
		}
	})
}
