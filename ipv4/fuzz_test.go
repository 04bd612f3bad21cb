package ipv4

import (
	"encoding/binary"
	"testing"
)

// FuzzSum: the eight-bytes-at-a-time sum agrees with the 16-bit reference
// on any bytes from any initial sum, and chains at any even cut; Sum (in
// assembly on amd64 and arm64) gives the same bits as sumLEGeneric, the Go
// loop, with the bytes at any offset from a 64-byte boundary.
func FuzzSum(f *testing.F) {
	f.Add([]byte{}, uint64(0), 0, uint8(0))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff}, ^uint64(0), 2, uint8(3))
	f.Add(make([]byte, 129), uint64(0xffff), 64, uint8(7))
	f.Fuzz(func(t *testing.T, b []byte, init uint64, cut int, off uint8) {
		if got, want := Fold(Sum(b, init)), refSum(b, init); got != want {
			t.Fatalf("Sum %#04x, reference %#04x", got, want)
		}
		// The same bytes also moved to an offset in a buffer aligned on 64.
		o := int(off % 64)
		m := alignedBuf(o + len(b))[o:]
		copy(m, b)
		want := sumGeneric(b, init)
		eachLoop(func(loop string) {
			if got := Sum(b, init); got != want {
				t.Fatalf("loop %s: Sum %#x, Go loop %#x", loop, got, want)
			}
			if got := Sum(m, init); got != want {
				t.Fatalf("loop %s, at offset %d: Sum %#x, Go loop %#x", loop, o, got, want)
			}
		})
		if cut < 0 || cut > len(b) {
			return
		}
		cut &^= 1
		if got, want := Fold(Sum(b[cut:], Sum(b[:cut], init))), refSum(b, init); got != want {
			t.Fatalf("cut at %d: chained %#04x, reference %#04x", cut, got, want)
		}
		if len(b) >= MinHeaderLen+4 {
			// PseudoHeaderSum reads the addresses where the reference does.
			l := int(binary.BigEndian.Uint16(b[MinHeaderLen:]))
			if got, want := Fold(PseudoHeaderSum(b, b[OffProto], l)), refSum(nil, refPseudo(b, b[OffProto], l)); got != want {
				t.Fatalf("pseudo-header %#04x, reference %#04x", got, want)
			}
		}
	})
}
