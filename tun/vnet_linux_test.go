package tun

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weft-dev/weft/internal/busypoll"
	"github.com/weft-dev/weft/ipv4"
)

// vnetHdr encodes a virtio_net_hdr as the kernel writes it, in the host's
// byte order.
func vnetHdr(flags, gsoType byte, hdrLen, gsoSize, csumStart, csumOffset uint16) []byte {
	b := make([]byte, virtioNetHdrLen)
	b[0], b[1] = flags, gsoType
	binary.NativeEndian.PutUint16(b[2:], hdrLen)
	binary.NativeEndian.PutUint16(b[4:], gsoSize)
	binary.NativeEndian.PutUint16(b[6:], csumStart)
	binary.NativeEndian.PutUint16(b[8:], csumOffset)
	return b
}

func TestParseVnetHdr(t *testing.T) {
	tests := []struct {
		name    string
		hdr     []byte
		want    GSO
		wantErr bool
	}{
		{"none", vnetHdr(0, 0, 0, 0, 0, 0), GSO{}, false},
		{"none, checksum partial", vnetHdr(1, 0, 0, 0, 20, 6),
			GSO{NeedsCsum: true, CsumStart: 20, CsumOffset: 6}, false},
		{"none, data valid is not needs-csum", vnetHdr(2, 0, 0, 0, 0, 0), GSO{}, false},
		{"TCPv4", vnetHdr(1, 1, 52, 1448, 20, 16),
			GSO{Kind: GSOTCPv4, SegmentSize: 1448, NeedsCsum: true, CsumStart: 20, CsumOffset: 16}, false},
		{"TCPv4 with the ECN bit", vnetHdr(1, 0x81, 52, 1448, 20, 16),
			GSO{Kind: GSOTCPv4, SegmentSize: 1448, NeedsCsum: true, CsumStart: 20, CsumOffset: 16}, false},
		{"UDP L4 (USO)", vnetHdr(1, 5, 28, 1200, 20, 6),
			GSO{Kind: GSOUDPv4, SegmentSize: 1200, NeedsCsum: true, CsumStart: 20, CsumOffset: 6}, false},
		{"largest fields", vnetHdr(1, 1, 0xffff, 0xffff, 0xffff, 0xffff),
			GSO{Kind: GSOTCPv4, SegmentSize: 0xffff, NeedsCsum: true, CsumStart: 0xffff, CsumOffset: 0xffff}, false},
		{"UDP (UFO)", vnetHdr(0, 3, 0, 0, 0, 0), GSO{}, true},
		{"TCPv6", vnetHdr(1, 4, 72, 1428, 40, 16), GSO{}, true},
		{"TCPv6 with the ECN bit", vnetHdr(1, 0x84, 72, 1428, 40, 16), GSO{}, true},
		{"type 2", vnetHdr(0, 2, 0, 0, 0, 0), GSO{}, true},
		{"type 6", vnetHdr(0, 6, 0, 0, 0, 0), GSO{}, true},
		{"type 0x7f", vnetHdr(0, 0x7f, 0, 0, 0, 0), GSO{}, true},
		{"type 0xff", vnetHdr(0, 0xff, 0, 0, 0, 0), GSO{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := parseVnetHdr(tt.hdr)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseVnetHdr(%x) error %v, want error %v", tt.hdr, err, tt.wantErr)
			}
			if err == nil && g != tt.want {
				t.Fatalf("parseVnetHdr(%x) = %+v, want %+v", tt.hdr, g, tt.want)
			}
		})
	}
}

// fakeQueue is a vnetQueue whose "kernel" is the other end of a
// SOCK_SEQPACKET socket pair: each write(v) on one end is one message on the
// other, as each is one packet on a TUN.
func fakeQueue(t testing.TB, batch int) (*vnetQueue, int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		// Room for a few 64 KiB super-packets in flight.
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 1<<20)
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	}
	q, err := newVnetQueue(os.NewFile(uintptr(fds[0]), "fake-tun"), batch, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close(); unix.Close(fds[1]) })
	return q, fds[1]
}

// kernelSend writes one message as the TUN would hand it over.
func kernelSend(t testing.TB, fd int, parts ...[]byte) {
	t.Helper()
	if _, err := unix.Write(fd, bytes.Join(parts, nil)); err != nil {
		t.Fatal(err)
	}
}

// kernelRecv reads one message the queue wrote.
func kernelRecv(t *testing.T, fd int) []byte {
	t.Helper()
	b := make([]byte, 70000)
	n, err := unix.Read(fd, b)
	if err != nil {
		t.Fatal(err)
	}
	return b[:n]
}

func newBufs(n int) [][]byte {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, Headroom+65536)
	}
	return bufs
}

// TestVnetReadGSO: ReadGSO drains what is ready, hands super-packets over
// uncut with their GSO, completes a single packet's partial checksum, and
// hands what it cannot use up marked GSOInvalid, so that its drop is counted.
func TestVnetReadGSO(t *testing.T) {
	q, k := fakeQueue(t, 8)
	udp := udpSpec{payload: []byte("checksum left to the receiver")}.build()
	binary.BigEndian.PutUint16(udp[26:], ipv4.Fold(ipv4.PseudoHeaderSum(udp, 17, len(udp)-20)))
	sc := superCase{pkt: tcpSpec{flags: flagACK | flagPSH, tcpOptions: tsOptions(1, 2), payload: make([]byte, 4000)}.build(),
		g: GSO{Kind: GSOTCPv4, SegmentSize: 1448, NeedsCsum: true, CsumStart: 20, CsumOffset: 16}}
	binary.BigEndian.PutUint16(sc.pkt[36:], ipv4.Fold(ipv4.PseudoHeaderSum(sc.pkt, 6, len(sc.pkt)-20)))
	whole := tcpSpec{flags: flagACK, payload: []byte("done")}.build()

	kernelSend(t, k, vnetHdr(1, 0, 0, 0, 20, 6), udp)
	kernelSend(t, k, vnetHdr(1, 0x81, 52, 1448, 20, 16), sc.pkt)
	kernelSend(t, k, vnetHdr(1, 4, 72, 1428, 40, 16), make([]byte, 100)) // TCPv6: invalid
	kernelSend(t, k, []byte{1, 2, 3})                                    // shorter than the header: invalid
	kernelSend(t, k, vnetHdr(1, 0, 0, 0, 20, 30), whole)                 // checksum offset past the packet: invalid
	kernelSend(t, k, vnetHdr(0, 0, 0, 0, 0, 0), whole)

	bufs := newBufs(8)
	sizes := make([]int, 8)
	gso := make([]GSO, 8)
	n, err := q.ReadGSO(bufs, sizes, gso, Headroom)
	if err != nil {
		t.Fatal(err)
	}
	if n != 6 {
		t.Fatalf("ReadGSO read %d packets, want 6", n)
	}
	for i := 2; i <= 4; i++ {
		if gso[i].Kind != GSOInvalid {
			t.Errorf("packet %d: %+v, want it marked GSOInvalid", i, gso[i])
		}
	}
	got := func(i int) []byte { return bufs[i][Headroom : Headroom+sizes[i]] }
	if gso[0] != (GSO{CsumStart: 20, CsumOffset: 6}) {
		t.Errorf("packet 0: %+v, want a complete packet", gso[0])
	}
	if err := checkIPv4(got(0)); err != nil {
		t.Errorf("packet 0: %v", err)
	}
	if want := (GSO{Kind: GSOTCPv4, SegmentSize: 1448, NeedsCsum: true, CsumStart: 20, CsumOffset: 16}); gso[1] != want {
		t.Errorf("packet 1: %+v, want %+v", gso[1], want)
	}
	if !bytes.Equal(got(1), sc.pkt) {
		t.Errorf("packet 1: the super-packet changed on the way")
	}
	heads := make([]byte, MaxSegments*MaxHeader)
	segs := make([]Segment, MaxSegments)
	m, err := Split(got(1), gso[1], heads, segs)
	if err != nil {
		t.Fatal(err)
	}
	checkSplit(t, superCase{pkt: got(1), g: gso[1]}, segs[:m])
	if gso[5] != (GSO{}) || !bytes.Equal(got(5), whole) {
		t.Errorf("packet 5: %+v %x", gso[5], got(5))
	}

	if _, err := q.ReadGSO(bufs, sizes, gso, virtioNetHdrLen-1); err == nil {
		t.Error("ReadGSO with no headroom for the virtio-net header: no error")
	}
}

func TestVnetReadGSOBatch(t *testing.T) {
	q, k := fakeQueue(t, 2)
	p := tcpSpec{flags: flagACK, payload: []byte("x")}.build()
	for range 3 {
		kernelSend(t, k, vnetHdr(0, 0, 0, 0, 0, 0), p)
	}
	bufs, sizes, gso := newBufs(8), make([]int, 8), make([]GSO, 8)
	if n, err := q.ReadGSO(bufs, sizes, gso, Headroom); n != 2 || err != nil {
		t.Fatalf("ReadGSO on a queue of batch 2 = %d, %v", n, err)
	}
	if n, err := q.ReadGSO(bufs[:1], sizes, gso, Headroom); n != 1 || err != nil {
		t.Fatalf("ReadGSO into one buffer = %d, %v", n, err)
	}
	q.Close()
	if n, err := q.ReadGSO(bufs, sizes, gso, Headroom); n != 0 || err == nil {
		t.Fatalf("ReadGSO after Close = %d, %v", n, err)
	}
}

// TestVnetRead: Read cuts super-packets by copying, and hands single packets
// over whole.
func TestVnetRead(t *testing.T) {
	q, k := fakeQueue(t, 8)
	pkt := tcpSpec{seq: 5, flags: flagACK | flagPSH, payload: bytes.Repeat([]byte("abcd"), 1000)}.build()
	g := GSO{Kind: GSOTCPv4, SegmentSize: 1448}
	want := kernelSplit(pkt, g.Kind, g.SegmentSize)
	bufs, sizes := newBufs(8), make([]int, 8)

	kernelSend(t, k, vnetHdr(1, 1, 40, 1448, 20, 16), pkt)
	n, err := q.Read(bufs, sizes, Headroom)
	if err != nil || n != len(want) {
		t.Fatalf("Read = %d, %v; want %d segments", n, err, len(want))
	}
	for i := range n {
		if got := bufs[i][Headroom : Headroom+sizes[i]]; !bytes.Equal(got, want[i]) {
			t.Errorf("segment %d differs from the kernel's", i)
		}
	}

	kernelSend(t, k, vnetHdr(0, 0, 0, 0, 0, 0), want[0])
	if n, err := q.Read(bufs, sizes, Headroom); n != 1 || err != nil || !bytes.Equal(bufs[0][Headroom:Headroom+sizes[0]], want[0]) {
		t.Fatalf("Read of one packet = %d, %v", n, err)
	}

	// More segments than buffers: handed over window by window.
	kernelSend(t, k, vnetHdr(1, 1, 40, 1448, 20, 16), pkt)
	kernelSend(t, k, vnetHdr(0, 0, 0, 0, 0, 0), want[0])
	for _, w := range []struct{ n, first int }{{2, 0}, {1, 2}} {
		n, err := q.Read(bufs[:2], sizes, Headroom)
		if err != nil || n != w.n {
			t.Fatalf("Read of 3 segments into 2 buffers = %d, %v; want %d", n, err, w.n)
		}
		for i := range n {
			if got := bufs[i][Headroom : Headroom+sizes[i]]; !bytes.Equal(got, want[w.first+i]) {
				t.Errorf("segment %d differs from the kernel's", w.first+i)
			}
		}
	}
	if n, err := q.Read(bufs, sizes, Headroom); n != 1 || err != nil || !bytes.Equal(bufs[0][Headroom:Headroom+sizes[0]], want[0]) {
		t.Fatalf("Read after the windows = %d, %v; want the next packet", n, err)
	}

	// A pod with MSS 536: 120 segments, more than Split's 64 at once.
	small := tcpSpec{seq: 9, flags: flagACK, payload: bytes.Repeat([]byte("efgh"), 120*536/4)}.build()
	wantSmall := kernelSplit(small, GSOTCPv4, 536)
	kernelSend(t, k, vnetHdr(1, 1, 40, 536, 20, 16), small)
	bufs, sizes = newBufs(100), make([]int, 100)
	var got [][]byte
	for len(got) < len(wantSmall) {
		n, err := q.Read(bufs, sizes, Headroom)
		if err != nil {
			t.Fatalf("Read of a super-packet of %d segments, after %d: %v", len(wantSmall), len(got), err)
		}
		for i := range n {
			got = append(got, bytes.Clone(bufs[i][Headroom:Headroom+sizes[i]]))
		}
	}
	for i := range wantSmall {
		if !bytes.Equal(got[i], wantSmall[i]) {
			t.Fatalf("segment %d of %d differs from the kernel's", i, len(wantSmall))
		}
	}

	// A super-packet Split cannot cut is consumed: a counted drop, not the
	// end of the device.
	kernelSend(t, k, vnetHdr(1, 1, 40, 0, 20, 16), pkt)
	if _, err := q.Read(bufs, sizes, Headroom); !errors.Is(err, ErrDropped) {
		t.Fatalf("Read of a super-packet of segment size 0: %v, want ErrDropped", err)
	}
}

// TestVnetWrite: Write sends each run as one message, a coalesced run as a
// virtio-net header for TCPv4 GSO and the super-packet run.header makes,
// without touching the packets; the kernel's cut of it gives them back.
func TestVnetWrite(t *testing.T) {
	q, k := fakeQueue(t, 64)
	flowA := flowSegs(5, at(4, func(s *tcpSpec) { s.flags |= flagPSH; s.payload = s.payload[:300] }))
	flowB := flowSegs(3, func(_ int, s *tcpSpec) { s.sport = 40001 })
	var pkts [][]byte
	for _, s := range flowA {
		pkts = append(pkts, s.build())
	}
	pkts = append(pkts, udpSpec{payload: []byte("alone")}.build())
	for _, s := range flowB {
		pkts = append(pkts, s.build())
	}
	bufs := bufsOf(pkts)
	before := make([][]byte, len(bufs))
	for i, b := range bufs {
		before[i] = bytes.Clone(b)
	}
	n, err := q.Write(bufs, Headroom)
	if err != nil || n != len(pkts) {
		t.Fatalf("Write = %d, %v; want %d", n, err, len(pkts))
	}
	for i := range bufs {
		if !bytes.Equal(bufs[i], before[i]) {
			t.Fatalf("Write changed packet %d", i)
		}
	}
	for _, w := range []struct{ start, end int }{{0, 5}, {5, 6}, {6, 9}} {
		msg := kernelRecv(t, k)
		g, err := parseVnetHdr(msg[:virtioNetHdrLen])
		if err != nil {
			t.Fatal(err)
		}
		body := msg[virtioNetHdrLen:]
		if w.end-w.start == 1 {
			if !bytes.Equal(msg[:virtioNetHdrLen], make([]byte, virtioNetHdrLen)) || !bytes.Equal(body, pkts[w.start]) {
				t.Fatalf("packet %d: written as %x", w.start, msg)
			}
			continue
		}
		run := planRuns(bufs[w.start:w.end], Headroom, nil, true)[0]
		super, wantG := superPacket(run, pkts[w.start:w.end])
		if g != wantG || binary.NativeEndian.Uint16(msg[2:]) != uint16(run.hlen) {
			t.Fatalf("run [%d,%d): virtio-net header %x (%+v), want %+v with hdr_len %d", w.start, w.end, msg[:virtioNetHdrLen], g, wantG, run.hlen)
		}
		if !bytes.Equal(body, super) {
			t.Fatalf("run [%d,%d): super-packet differs from run.header's", w.start, w.end)
		}
		if err := roundTrip(run, pkts[w.start:w.end]); err != nil {
			t.Fatalf("run [%d,%d): %v", w.start, w.end, err)
		}
	}
	q.Close()
	if n, err := q.Write(bufs, Headroom); n != 0 || !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Write after Close = %d, %v; want os.ErrClosed", n, err)
	}
}

// TestVnetWriteRefused: a packet the kernel refuses is reported, and the
// others are still written.
func TestVnetWriteRefused(t *testing.T) {
	q, k := fakeQueue(t, 8)
	unix.SetsockoptInt(k, unix.SOL_SOCKET, unix.SO_RCVBUF, 4096)
	big := make([]byte, Headroom+70000) // larger than the socket takes in one message
	small := udpSpec{payload: []byte("small")}.build()
	q.raw.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, 4096) })
	n, err := q.Write([][]byte{big, withHeadroom(small, Headroom)}, Headroom)
	if err == nil || !strings.Contains(err.Error(), "message too long") || n != 1 {
		t.Fatalf("Write = %d, %v; want 1 and EMSGSIZE", n, err)
	}
	if got := kernelRecv(t, k); !bytes.Equal(got[virtioNetHdrLen:], small) {
		t.Fatalf("the packet after the refused one: %x", got)
	}
}

// TestVnetAllocs: reading and writing allocate nothing, whether a packet
// comes at once or the reader waits for it.
func TestVnetAllocs(t *testing.T) {
	q, k := fakeQueue(t, 8)
	pkt := udpSpec{payload: make([]byte, 100)}.build()
	msg := append(vnetHdr(0, 0, 0, 0, 0, 0), pkt...)
	const runs = 20
	for range runs + 1 { // AllocsPerRun runs once more to warm up
		if _, err := unix.Write(k, msg); err != nil {
			t.Fatal(err)
		}
	}
	bufs := make([][]byte, 8)
	for i := range bufs {
		bufs[i] = make([]byte, Headroom+65535)
	}
	sizes, gso := make([]int, 8), make([]GSO, 8)
	read := 0
	if a := testing.AllocsPerRun(runs, func() {
		n, _ := q.ReadGSO(bufs[:1], sizes, gso, Headroom)
		read += n
	}); a != 0 || read != runs+1 {
		t.Errorf("ReadGSO: %.1f allocations per read, %d packets read; want 0, %d", a, read, runs+1)
	}
	out := bufsOf([][]byte{pkt})
	if a := testing.AllocsPerRun(runs, func() {
		if _, err := q.Write(out, Headroom); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("Write: %.1f allocations per write, want 0", a)
	}
}

// TestVnetReadPolls: with a busy-poll window, a read that finds nothing
// after traffic keeps polling and takes the next packet when it comes, and a
// read deadline still ends it once the window has closed, as SIGTERM needs.
func TestVnetReadPolls(t *testing.T) {
	q, k := fakeQueue(t, 8)
	q.poll = busypoll.New(20 * time.Millisecond)
	pkt := tcpSpec{flags: flagACK, payload: []byte("ping")}.build()
	bufs, sizes, gso := newBufs(8), make([]int, 8), make([]GSO, 8)

	kernelSend(t, k, vnetHdr(0, 0, 0, 0, 0, 0), pkt)
	if n, err := q.ReadGSO(bufs, sizes, gso, Headroom); n != 1 || err != nil {
		t.Fatalf("first ReadGSO: %d packets, %v", n, err)
	}
	// The window is open: this read polls until the packet comes.
	go unix.Write(k, append(vnetHdr(0, 0, 0, 0, 0, 0), pkt...))
	if n, err := q.ReadGSO(bufs, sizes, gso, Headroom); n != 1 || err != nil {
		t.Fatalf("polling ReadGSO: %d packets, %v", n, err)
	}
	if !bytes.Equal(bufs[0][Headroom:Headroom+sizes[0]], pkt) {
		t.Fatal("polling ReadGSO: the packet changed on the way")
	}

	q.SetReadDeadline(time.Now())
	if _, err := q.ReadGSO(bufs, sizes, gso, Headroom); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ReadGSO past its deadline with the window open: %v, want a deadline error", err)
	}
}
