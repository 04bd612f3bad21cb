package engine

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/weft-dev/weft/ipv4"
)

// TestChecksumFlannelCapture checks every header of the flannel recording,
// outer and inner: each sums to zero, and recomputing its checksum gives the
// value flannel's kernel wrote.
func TestChecksumFlannelCapture(t *testing.T) {
	for i, d := range needUnderlay(t) {
		for _, h := range []struct {
			name string
			p    []byte
		}{{"outer", d.outer}, {"inner", d.inner}} {
			total, drop := checkIPv4(h.p, true)
			if drop != DropNone || total != len(h.p) {
				t.Fatalf("datagram %d %s: checkIPv4 = %d, %v; want %d, none", i, h.name, total, drop, len(h.p))
			}
			hdr := append([]byte(nil), h.p[:int(h.p[0]&0xf)*4]...)
			stored := binary.BigEndian.Uint16(hdr[ipv4.OffChecksum:])
			binary.BigEndian.PutUint16(hdr[ipv4.OffChecksum:], 0)
			if got := ipv4.Checksum(hdr); got != stored {
				t.Fatalf("datagram %d %s: checksum = %#04x, the kernel wrote %#04x", i, h.name, got, stored)
			}
		}
	}
}

// randomHeader fills hdr (20..60 bytes) with a valid IPv4 header with random
// fields and options, TTL 2..255 and a checksum computed from scratch.
func randomHeader(rng *rand.Rand, hdr []byte) []byte {
	ihl := 5 + rng.IntN(11)
	hdr = hdr[:ihl*4]
	for i := range hdr {
		hdr[i] = byte(rng.Uint32())
	}
	hdr[0] = 0x40 | byte(ihl)
	hdr[ipv4.OffTTL] = byte(2 + rng.IntN(254))
	fixChecksum(hdr)
	return hdr
}

// TestDecrementTTL checks the incremental checksum update against a full
// recompute. Where the two could differ, one's-complement +0 (0x0000) and
// -0 (0xffff), recomputing gives 0x0000 (the sum of a header, which is never
// all zeros, folds to 0xffff, never to 0), and so must decrementTTL: it does
// what Linux's ip_decrease_ttl does, check += htons(0x0100) plus one where
// the result is >= 0xffff, so a sum of exactly 0xffff becomes 0x0000 (RFC
// 1624's point: eqn. 3 never yields -0 for a header with a non-zero sum).
func TestDecrementTTL(t *testing.T) {
	check := func(t *testing.T, hdr []byte) {
		t.Helper()
		orig := append([]byte(nil), hdr...)
		decrementTTL(hdr)
		if hdr[ipv4.OffTTL] != orig[ipv4.OffTTL]-1 {
			t.Fatalf("TTL %d -> %d", orig[ipv4.OffTTL], hdr[ipv4.OffTTL])
		}
		for i := range hdr {
			if i != ipv4.OffTTL && i != ipv4.OffChecksum && i != ipv4.OffChecksum+1 && hdr[i] != orig[i] {
				t.Fatalf("byte %d changed: % x -> % x", i, orig, hdr)
			}
		}
		if s := ipv4.Checksum(hdr); s != 0 {
			t.Fatalf("header % x does not sum to 0 after decrementTTL (%#04x)", hdr, s)
		}
		got := binary.BigEndian.Uint16(hdr[ipv4.OffChecksum:])
		binary.BigEndian.PutUint16(hdr[ipv4.OffChecksum:], 0)
		want := refChecksum(hdr)
		binary.BigEndian.PutUint16(hdr[ipv4.OffChecksum:], got)
		if got != want {
			t.Fatalf("header % x (was % x): incremental checksum %#04x, recomputed %#04x", hdr, orig, got, want)
		}
	}
	t.Run("random headers", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(5, 5))
		buf := make([]byte, 60)
		for range 200000 {
			check(t, randomHeader(rng, buf))
		}
	})
	// Every checksum value before the decrement, so that the edges (old
	// checksum 0xfeff, whose update lands exactly on 0xffff, and the
	// wrap-arounds above 0xfeff) are all met: the ID field steers the sum.
	t.Run("every checksum", func(t *testing.T) {
		for _, ttl := range []byte{2, 64, 255} {
			seen := make(map[uint16]bool, 1<<16)
			for id := range 1 << 16 {
				hdr := ipv4Packet(ipv4Spec{src: pod1, dst: pod2, proto: 6, ttl: ttl, id: uint16(id), frag: 0x4000})
				seen[binary.BigEndian.Uint16(hdr[ipv4.OffChecksum:])] = true
				check(t, hdr)
			}
			// All but -0: a recomputed checksum is never 0xffff.
			if len(seen) != 1<<16-1 || seen[0xffff] {
				t.Fatalf("TTL %d: %d distinct checksums met, want all but 0xffff", ttl, len(seen))
			}
		}
	})
	t.Run("the +0/-0 edge", func(t *testing.T) {
		for _, tc := range []struct {
			name          string
			before, after uint16
		}{
			// ~HC + 0x100 = 0xffff exactly: Linux and RFC 1624 give 0x0000.
			{name: "0xfeff becomes 0x0000", before: 0xfeff, after: 0x0000},
			{name: "0xff00 wraps to 0x0001", before: 0xff00, after: 0x0001},
			{name: "0x0000 becomes 0x0100", before: 0x0000, after: 0x0100},
		} {
			t.Run(tc.name, func(t *testing.T) {
				// Find the ID that gives this checksum.
				for id := range 1 << 16 {
					hdr := ipv4Packet(ipv4Spec{src: pod2, dst: pod1, proto: 1, ttl: 64, id: uint16(id)})
					if binary.BigEndian.Uint16(hdr[ipv4.OffChecksum:]) != tc.before {
						continue
					}
					check(t, hdr)
					if got := binary.BigEndian.Uint16(hdr[ipv4.OffChecksum:]); got != tc.after {
						t.Fatalf("checksum %#04x -> %#04x, want %#04x", tc.before, got, tc.after)
					}
					return
				}
				t.Fatalf("no ID gives checksum %#04x", tc.before)
			})
		}
		// A header from the wire may carry -0 (0xffff) where a recompute
		// gives +0: both are valid, and decrementing either gives the
		// recomputed value.
		for id := range 1 << 16 {
			hdr := ipv4Packet(ipv4Spec{src: pod2, dst: pod1, proto: 1, ttl: 64, id: uint16(id)})
			if binary.BigEndian.Uint16(hdr[ipv4.OffChecksum:]) != 0 {
				continue
			}
			binary.BigEndian.PutUint16(hdr[ipv4.OffChecksum:], 0xffff)
			if _, drop := checkIPv4(hdr, true); drop != DropNone {
				t.Fatalf("header with checksum -0 (0xffff): %v", drop)
			}
			check(t, hdr)
			if got := binary.BigEndian.Uint16(hdr[ipv4.OffChecksum:]); got != 0x0100 {
				t.Fatalf("checksum 0xffff -> %#04x, want 0x0100", got)
			}
			return
		}
		t.Fatal("no ID gives checksum 0")
	})
}

func TestCheckIPv4(t *testing.T) {
	valid := udpPacket(pod1, pod2, 30) // 58 bytes
	withOptions := ipv4Packet(ipv4Spec{src: pod1, dst: pod2, proto: 17, ttl: 64,
		options: []byte{0x94, 0x04, 0, 0}, payload: make([]byte, 8)}) // router alert, IHL 6
	maxOptions := ipv4Packet(ipv4Spec{src: pod1, dst: pod2, proto: 17, ttl: 64,
		options: make([]byte, 40)}) // IHL 15, no payload
	for _, tc := range []struct {
		name      string
		pkt       []byte
		verify    bool
		wantTotal int
		want      Drop
	}{
		{"valid", valid, true, len(valid), DropNone},
		{"valid, unverified", valid, false, len(valid), DropNone},
		{"valid with options", withOptions, true, len(withOptions), DropNone},
		{"IHL 15, header only", maxOptions, true, 60, DropNone},
		{"trailing bytes after the packet", append(append([]byte(nil), valid...), 1, 2, 3), true, len(valid), DropNone},
		{"header only", ipv4Packet(ipv4Spec{src: pod1, dst: pod2, ttl: 1}), true, 20, DropNone},
		{"checksum -0", with(valid, func(p []byte) {
			// Make the checksum 0 by adjusting the ID, then store -0.
			for id := range 1 << 16 {
				binary.BigEndian.PutUint16(p[4:], uint16(id))
				fixChecksum(p)
				if p[ipv4.OffChecksum] == 0 && p[ipv4.OffChecksum+1] == 0 {
					p[ipv4.OffChecksum], p[ipv4.OffChecksum+1] = 0xff, 0xff
					return
				}
			}
		}), true, len(valid), DropNone},

		{"empty", nil, true, 0, DropTruncated},
		{"19 bytes", valid[:19], true, 0, DropTruncated},
		{"IPv6 in 19 bytes", append([]byte{0x60}, make([]byte, 18)...), true, 0, DropTruncated},

		{"IPv6", append([]byte{0x60}, make([]byte, 39)...), true, 0, DropNotIPv4},
		{"version 0", with(valid, func(p []byte) { p[0] = 0x05; fixChecksum(p) }), true, 0, DropNotIPv4},
		{"version 5", with(valid, func(p []byte) { p[0] = 0x55; fixChecksum(p) }), true, 0, DropNotIPv4},
		{"version 15, unverified", with(valid, func(p []byte) { p[0] = 0xf5 }), false, 0, DropNotIPv4},

		{"IHL 0", with(valid, func(p []byte) { p[0] = 0x40 }), true, 0, DropBadHeaderLen},
		{"IHL 4", with(valid, func(p []byte) { p[0] = 0x44 }), false, 0, DropBadHeaderLen},
		{"IHL beyond the bytes", with(valid, func(p []byte) { p[0] = 0x4f })[:59], true, 0, DropBadHeaderLen},
		{"IHL 6 in 20 bytes", with(valid, func(p []byte) { p[0] = 0x46 })[:20], true, 0, DropBadHeaderLen},

		{"total length 0", with(valid, func(p []byte) { p[2], p[3] = 0, 0; fixChecksum(p) }), true, 0, DropBadTotalLen},
		{"total length 19", with(valid, func(p []byte) { p[2], p[3] = 0, 19; fixChecksum(p) }), true, 0, DropBadTotalLen},
		{"total length below IHL", with(withOptions, func(p []byte) { p[2], p[3] = 0, 20; fixChecksum(p) }), true, 0, DropBadTotalLen},
		{"total length beyond the bytes", valid[:len(valid)-1], true, 0, DropBadTotalLen},
		{"total length 65535", with(valid, func(p []byte) { p[2], p[3] = 0xff, 0xff; fixChecksum(p) }), false, 0, DropBadTotalLen},

		{"checksum off by one", with(valid, func(p []byte) { p[ipv4.OffChecksum+1]++ }), true, 0, DropBadChecksum},
		{"checksum zeroed", with(valid, func(p []byte) { p[ipv4.OffChecksum], p[ipv4.OffChecksum+1] = 0, 0 }), true, 0, DropBadChecksum},
		{"TTL changed, checksum not", with(valid, func(p []byte) { p[ipv4.OffTTL]-- }), true, 0, DropBadChecksum},
		{"bad option byte", with(withOptions, func(p []byte) { p[21]++ }), true, 0, DropBadChecksum},
		{"bad checksum, unverified", with(valid, func(p []byte) { p[ipv4.OffChecksum]++ }), false, len(valid), DropNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			total, drop := checkIPv4(tc.pkt, tc.verify)
			if drop != tc.want || total != tc.wantTotal {
				t.Fatalf("checkIPv4 = %d, %v; want %d, %v", total, drop, tc.wantTotal, tc.want)
			}
		})
	}
}

func TestDropNames(t *testing.T) {
	seen := map[string]bool{}
	for _, d := range DropReasons() {
		name := d.String()
		if name == "" || name == "none" || name == "unknown" || seen[name] {
			t.Errorf("drop %d has name %q", d, name)
		}
		seen[name] = true
	}
	if len(seen) != int(numDrops)-1 {
		t.Errorf("DropReasons() lists %d reasons, want %d", len(seen), numDrops-1)
	}
	if got := fmt.Sprint(Drop(200)); got != "unknown" {
		t.Errorf("Drop(200) = %q", got)
	}
}
