package ipv4

import (
	"encoding/binary"
	"encoding/hex"
	"math"
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/gopacket/gopacket"
)

func TestSumKnownVectors(t *testing.T) {
	tests := []struct {
		name string
		in   string // hex
		init uint64
		want uint16 // folded sum, not complemented
	}{
		{"empty", "", 0, 0},
		{"empty with init", "", 0x1_0002, 0x0003},
		{"one byte is the high half of a word", "ab", 0, 0xab00},
		// RFC 1071, section 3: the sum of these eight bytes is ddf2.
		{"RFC 1071", "0001f203f4f5f6f7", 0, 0xddf2},
		// An IPv4 header with its checksum (b861) in place sums to ffff.
		{"IPv4 header", "45000073000040004011b861c0a80001c0a800c7", 0, 0xffff},
		{"carry wraps around", "ffffffff", 0x0001, 0x0001},
		{"all ones stays negative zero", "ffff", 0, 0xffff},
		{"max init", "0001", math.MaxUint64, 0x0001},
		{"odd tail", "0102030405", 0, 0x0102 + 0x0304 + 0x0500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := hex.DecodeString(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got := Fold(Sum(b, tt.init)); got != tt.want {
				t.Errorf("Fold(Sum(%s, %#x)) = %#04x, want %#04x", tt.in, tt.init, got, tt.want)
			}
			if got := refSum(b, tt.init); got != tt.want {
				t.Errorf("reference disagrees with the vector: %#04x", got)
			}
		})
	}
}

// TestSumAgainstReference compares the eight-bytes-at-a-time sum with the
// 16-bit reference on random data of every length to 3000, at every
// alignment within a word, from random initial sums.
func TestSumAgainstReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 3000+8)
	for i := range buf {
		buf[i] = byte(r.Uint32())
	}
	inits := []uint64{0, 1, 0xffff, 0xffffffff, math.MaxUint64, math.MaxUint64 - 1}
	for n := 0; n <= 3000; n++ {
		align := n % 8
		b := buf[align : align+n]
		init := r.Uint64() >> (r.IntN(64)) // small and large values alike
		if n < len(inits) {
			init = inits[n]
		}
		if got, want := Fold(Sum(b, init)), refSum(b, init); got != want {
			t.Fatalf("len %d align %d init %#x: sum %#04x, reference %#04x", n, align, init, got, want)
		}
	}
	// Data that is mostly ones drives every carry.
	for i := range buf {
		buf[i] = 0xff
	}
	buf[r.IntN(len(buf))] = 0xfe
	for n := 0; n <= 3000; n += 7 {
		for _, init := range inits {
			if got, want := Fold(Sum(buf[:n], init)), refSum(buf[:n], init); got != want {
				t.Fatalf("ones, len %d init %#x: sum %#04x, reference %#04x", n, init, got, want)
			}
		}
	}
}

// TestSumChains checks that summing a buffer in two pieces, the first of
// even length, is summing it whole: tun's Split sums the header then the payload.
func TestSumChains(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		b := make([]byte, r.IntN(3000))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		cut := r.IntN(len(b)+1) &^ 1
		init := r.Uint64()
		if got, want := Fold(Sum(b[cut:], Sum(b[:cut], init))), Fold(Sum(b, init)); got != want {
			t.Fatalf("len %d cut %d: chained %#04x, whole %#04x", len(b), cut, got, want)
		}
	}
}

func TestFoldExtremes(t *testing.T) {
	for _, tt := range []struct {
		in   uint64
		want uint16
	}{
		{0, 0},
		{1, 1},
		{0xffff, 0xffff},
		{0x1_0000, 1},
		{math.MaxUint64, 0xffff},
		{0xffff_0000_0000_0001, 0x0001}, // ffff + 0001 wraps around to 0001
		{0x0001_0000_ffff_ffff, 0x0001}, // 0001 + ffff + ffff = 1_ffff, folded 0001
	} {
		if got, want := Fold(tt.in), refSum(nil, tt.in); got != want || got != tt.want {
			t.Errorf("Fold(%#x) = %#04x, reference %#04x, table %#04x", tt.in, got, want, tt.want)
		}
	}
}

func TestPseudoHeaderSum(t *testing.T) {
	// The textbook IPv4 header, 192.168.0.1 to 192.168.0.199.
	p, err := hex.DecodeString("45000073000040004011b861c0a80001c0a800c7")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []int{0, 20, 25, 1480, 65515} {
		if got, want := Fold(PseudoHeaderSum(p, ProtoTCP, l)), refSum(nil, refPseudo(p, ProtoTCP, l)); got != want {
			t.Errorf("length %d: pseudo-header %#04x, reference %#04x", l, got, want)
		}
	}
}

func TestSetHeaderChecksum(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, ihl := range []int{20, 24, 40, 60} {
		h := make([]byte, ihl)
		for range 100 {
			for i := range h {
				h[i] = byte(r.Uint32())
			}
			SetHeaderChecksum(h)
			if s := refSum(h, 0); s != 0xffff {
				t.Fatalf("IHL %d: header sums to %#04x after SetHeaderChecksum", ihl, s)
			}
		}
	}
}

func TestChecksumVectors(t *testing.T) {
	for _, tc := range []struct {
		name string
		hex  string
		want uint16
	}{
		// RFC 1071 4.1's example bytes: their one's-complement sum is 0xddf2.
		{"RFC 1071 example", "0001f203f4f5f6f7", ^uint16(0xddf2)},
		// An odd length: the last byte is padded with a zero on the right.
		// 0xddf2 + 0xab00 = 0x188f2, folded 0x88f3.
		{"odd length", "0001f203f4f5f6f7ab", ^uint16(0x88f3)},
		{"empty", "", 0xffff},
		{"zeros", "00000000", 0xffff},
		{"all ones", "ffffffff", 0x0000},
		// The textbook header (Wikipedia, "IPv4 header checksum"), checksum field zeroed.
		{"IPv4 header", "450000730000400040110000c0a80001c0a800c7", 0xb861},
		// h1 -> h2, the first datagram of the flannel underlay recording: the
		// outer header flanneld's kernel wrote, checksum field zeroed.
		{"flannel outer header", "45000070509b400040110000c0000201c0000202", 0x65de},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := hex.DecodeString(tc.hex)
			if err != nil {
				t.Fatal(err)
			}
			if got := Checksum(b); got != tc.want {
				t.Errorf("Checksum = %#04x, want %#04x", got, tc.want)
			}
			if got := ^refSum(b, 0); got != tc.want {
				t.Errorf("reference = %#04x, want %#04x: the reference is wrong", got, tc.want)
			}
			if got := gopacket.FoldChecksum(gopacket.ComputeChecksum(b, 0)); got != tc.want {
				t.Errorf("gopacket = %#04x, want %#04x", got, tc.want)
			}
			// With the checksum in place, a header sums to zero.
			if len(b) == MinHeaderLen {
				binary.BigEndian.PutUint16(b[OffChecksum:], tc.want)
				if got := Checksum(b); got != 0 {
					t.Errorf("header with its checksum sums to %#04x, want 0", got)
				}
			}
		})
	}
}

// TestHeaderFields reads the fields of the textbook header through the
// offsets and accessors.
func TestHeaderFields(t *testing.T) {
	p, err := hex.DecodeString("45000073000040004011b861c0a80001c0a800c7")
	if err != nil {
		t.Fatal(err)
	}
	if p[OffVersionIHL] != VersionIHL5 || HeaderLen(p) != MinHeaderLen {
		t.Errorf("version/IHL %#02x, header length %d", p[OffVersionIHL], HeaderLen(p))
	}
	if got := binary.BigEndian.Uint16(p[OffTotalLen:]); got != 0x73 {
		t.Errorf("total length %d", got)
	}
	if got := binary.BigEndian.Uint16(p[OffFlagsFrag:]); got&FlagDF == 0 || got&(FlagMF|FragOffsetMask) != 0 {
		t.Errorf("flags and offset %#04x, want DF only", got)
	}
	if p[OffTTL] != 64 || p[OffProto] != ProtoUDP || binary.BigEndian.Uint16(p[OffChecksum:]) != 0xb861 {
		t.Errorf("TTL %d, protocol %d, checksum %#04x", p[OffTTL], p[OffProto], binary.BigEndian.Uint16(p[OffChecksum:]))
	}
	if Src(p) != 0xc0a80001 || Dst(p) != 0xc0a800c7 {
		t.Errorf("source %#08x, destination %#08x", Src(p), Dst(p))
	}
	tcp := make([]byte, TCPMinHeaderLen)
	tcp[TCPOffDataOffset] = 8 << 4
	if TCPHeaderLen(tcp) != 32 {
		t.Errorf("TCP data offset 8: %d bytes", TCPHeaderLen(tcp))
	}
}

// sumGeneric is Sum with the Go loop, whatever the architecture: what the
// assembly must give the same bits as.
func sumGeneric(b []byte, acc uint64) uint64 { return addSwapped(acc, sumLEGeneric(b)) }

// alignedBuf returns n bytes starting on a 64-byte boundary.
func alignedBuf(n int) []byte {
	b := make([]byte, n+64)
	o := -int(uintptr(unsafe.Pointer(unsafe.SliceData(b)))) & 63
	return b[o : o+n]
}

// TestSumMatchesGeneric compares Sum (assembly on amd64 and arm64) with the
// Go loop bit for bit, and with the reference folded, on the lengths around
// each piece of the loops and their tails, at every offset from a 64-byte
// boundary to 15 (and a few beyond for the long ones), from initial sums
// that carry and that don't; with each loop the assembly has here.
func TestSumMatchesGeneric(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	var lengths []int
	for n := 0; n <= 200; n++ {
		lengths = append(lengths, n)
	}
	lengths = append(lengths, 255, 256, 257, 1471, 1472, 1473, 1500, 9000, 65535, 65536, 65537)
	inits := []uint64{0, 1, 0xffff, 0x1_0000, 0xffffffff, math.MaxUint64 - 1, math.MaxUint64, r.Uint64()}
	for _, tt := range []struct {
		name string
		fill func(b []byte)
	}{
		{"zeros", func(b []byte) { clear(b) }},
		{"ones", func(b []byte) {
			for i := range b {
				b[i] = 0xff
			}
		}},
		{"ones but one", func(b []byte) {
			for i := range b {
				b[i] = 0xff
			}
			if len(b) > 0 {
				b[r.IntN(len(b))] = 0xfe
			}
		}},
		{"one byte set", func(b []byte) {
			clear(b)
			if len(b) > 0 {
				b[r.IntN(len(b))] = byte(r.Uint32()) | 1
			}
		}},
		{"random", func(b []byte) {
			for i := range b {
				b[i] = byte(r.Uint32())
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			eachLoop(func(loop string) { testSumMatchesGeneric(t, loop, lengths, inits, tt.fill) })
		})
	}
}

func testSumMatchesGeneric(t *testing.T, loop string, lengths []int, inits []uint64, fill func([]byte)) {
	for _, n := range lengths {
		offs := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
		if n > 256 {
			offs = []int{0, 1, 7, 8, 31, 33, 63}
		}
		for _, o := range offs {
			b := alignedBuf(o + n)[o:]
			fill(b)
			for _, init := range inits {
				got, want := Sum(b, init), sumGeneric(b, init)
				if got != want {
					t.Fatalf("loop %s, len %d offset %d init %#x: Sum %#x, Go loop %#x", loop, n, o, init, got, want)
				}
				if n <= 1500 || o == 0 && init == inits[0] {
					if f, ref := Fold(got), refSum(b, init); f != ref {
						t.Fatalf("loop %s, len %d offset %d init %#x: Sum folds to %#04x, reference %#04x", loop, n, o, init, f, ref)
					}
				}
			}
		}
	}
}
