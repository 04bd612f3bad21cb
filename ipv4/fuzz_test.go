package ipv4

import (
	"encoding/binary"
	"testing"
)

// FuzzSum: the eight-bytes-at-a-time sum agrees with the 16-bit reference
// on any bytes from any initial sum, and chains at any even cut.
func FuzzSum(f *testing.F) {
	f.Add([]byte{}, uint64(0), 0)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff}, ^uint64(0), 2)
	f.Add(make([]byte, 129), uint64(0xffff), 64)
	f.Fuzz(func(t *testing.T, b []byte, init uint64, cut int) {
		if got, want := Fold(Sum(b, init)), refSum(b, init); got != want {
			t.Fatalf("Sum %#04x, reference %#04x", got, want)
		}
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
