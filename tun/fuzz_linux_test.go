package tun

import (
	"encoding/binary"
	"testing"
)

// FuzzParseVnetHdr: any ten bytes parse without panic, into the fields the
// header holds, and only the IPv4 GSO kinds weft handles are accepted.
func FuzzParseVnetHdr(f *testing.F) {
	for _, typ := range []byte{0, 1, 3, 4, 5, 0x80, 0x81, 0x84, 0x85, 0xff} {
		f.Add(vnetHdr(1, typ, 52, 1448, 20, 16))
	}
	f.Add(vnetHdr(0, 0, 0, 0, 0, 0))
	f.Add(vnetHdr(0xff, 5, 0xffff, 0xffff, 0xffff, 0xffff))
	f.Fuzz(func(t *testing.T, data []byte) {
		b := make([]byte, virtioNetHdrLen)
		copy(b, data)
		g, err := parseVnetHdr(b)
		kinds := map[byte]GSOKind{0: GSONone, 1: GSOTCPv4, 5: GSOUDPv4}
		kind, known := kinds[b[1]&^0x80]
		if known != (err == nil) {
			t.Fatalf("type %#02x: error %v", b[1], err)
		}
		if err != nil {
			return
		}
		want := GSO{
			Kind:        kind,
			SegmentSize: int(binary.NativeEndian.Uint16(b[4:])),
			NeedsCsum:   b[0]&1 != 0,
			CsumStart:   int(binary.NativeEndian.Uint16(b[6:])),
			CsumOffset:  int(binary.NativeEndian.Uint16(b[8:])),
		}
		if g != want {
			t.Fatalf("parseVnetHdr(%x) = %+v, want %+v", b, g, want)
		}
	})
}
