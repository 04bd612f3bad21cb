package tun

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weft-dev/weft/internal/roottest"
	wgtun "golang.zx2c4.com/wireguard/tun"
)

// Tests of the devices' read paths against what the kernel may hand over:
// super-packets of more segments than the buffers, segments larger than
// the MTU, and (fuzzed) any virtio-net header and payload.

// copyingQueue is wireguard-go's device as weft opens it, except that after
// opening, its descriptor is swapped for one end of a SOCK_SEQPACKET socket
// pair: wireguard-go needs a real TUN queue to start (it asks the kernel
// for its flags), and the test then plays the kernel, handing over any
// bytes. Each Read must follow a kernelSend: the swapped descriptor is no
// longer watched by Go's poller, so a Read finding nothing would wait until
// its deadline.
func copyingQueue(t testing.TB, ns string) (*offloadQueue, int) {
	t.Helper()
	var fd int
	var dev wgtun.Device
	err := inNS(ns, func() (err error) {
		if fd, err = openVnetFD(fmt.Sprintf("wcp%d", os.Getpid()%100000), 0); err != nil {
			return err
		}
		dev, _, err = wgtun.CreateUnmonitoredTUNFromFD(fd)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range pair {
		unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_SNDBUF, 1<<20)
		unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	}
	if err := unix.SetNonblock(pair[0], true); err != nil {
		t.Fatal(err)
	}
	if err := unix.Dup3(pair[0], fd, unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	unix.Close(pair[0])
	f := dev.(interface{ File() *os.File }).File()
	q := newOffloadQueue(dev, f)
	// A bound, so that a Read that finds nothing fails instead of hanging.
	f.SetReadDeadline(time.Now().Add(time.Minute))
	t.Cleanup(func() { q.Close(); unix.Close(pair[1]) })
	return q, pair[1]
}

// readWindows hands pkt over as the kernel would and reads it with
// buffers of ReadSize, nbufs at a time, until the device holds no more of
// it. It returns the packets handed over, or dropped if the device dropped
// it; any other error fails tb.
func readWindows(tb testing.TB, q Device, k int, pkt []byte, nbufs int) (got [][]byte, dropped bool) {
	tb.Helper()
	kernelSend(tb, k, pkt)
	size := Headroom + max(q.Caps().ReadSize, 1500)
	for len(readBufs) < nbufs {
		readBufs = append(readBufs, make([]byte, Headroom+65535))
	}
	bufs := make([][]byte, nbufs)
	for i := range bufs {
		bufs[i] = readBufs[i][:size]
	}
	sizes := make([]int, nbufs)
	for range 70000 {
		n, err := q.Read(bufs, sizes, Headroom)
		if errors.Is(err, ErrDropped) {
			return got, true
		}
		if err != nil {
			tb.Fatalf("Read: %v", err)
		}
		if n < 1 || n > nbufs {
			tb.Fatalf("Read = %d into %d buffers", n, nbufs)
		}
		for i := range n {
			if sizes[i] < 0 || sizes[i] > len(bufs[i])-Headroom {
				tb.Fatalf("packet %d: size %d in a buffer of %d", i, sizes[i], len(bufs[i])-Headroom)
			}
			got = append(got, bytes.Clone(bufs[i][Headroom:Headroom+sizes[i]]))
		}
		if !holdsMore(q) {
			return got, false
		}
	}
	tb.Fatal("the device never finished handing the packet over")
	return nil, false
}

// readBufs are readWindows' buffers, allocated once.
var readBufs [][]byte

// holdsMore reports whether q holds segments of a super-packet not yet
// handed over.
func holdsMore(q Device) bool {
	switch q := q.(type) {
	case *vnetQueue:
		return q.cut != 0
	case *offloadQueue:
		return q.next < q.pending
	}
	return false
}

// copyingDevices runs fn on each device that cuts super-packets by copying:
// weft's (its Read) and wireguard-go's (as root).
func copyingDevices(t *testing.T, fn func(t *testing.T, q Device, k int)) {
	t.Run("weft", func(t *testing.T) {
		q, k := fakeQueue(t, 64)
		fn(t, q, k)
	})
	t.Run("wireguard", func(t *testing.T) {
		roottest.NeedRoot(t, "ip")
		q, k := copyingQueue(t, newNetns(t, "wgread"))
		fn(t, q, k)
	})
}

// TestCopyingReadWindows: a super-packet of more segments than the caller's
// buffers, or than 64 (a pod with MSS 536 sends 120), is handed over
// whole, window by window; so are segments of a raised MTU.
func TestCopyingReadWindows(t *testing.T) {
	mss536 := tcpSpec{seq: 7, flags: flagACK, payload: bytes.Repeat([]byte("weft"), 120*536/4)}.build()
	jumbo := tcpSpec{seq: 8, flags: flagACK | flagPSH, payload: bytes.Repeat([]byte("jumbo"), 6*8960/5)}.build()
	udp := udpSpec{dst: farPod, dport: 7, payload: bytes.Repeat([]byte{9}, 100*600)}.build()
	for _, tc := range []struct {
		name  string
		hdr   []byte
		pkt   []byte
		kind  GSOKind
		mss   int
		nbufs int
	}{
		{"120 segments into 64 buffers", vnetHdr(1, 1, 40, 536, 20, 16), mss536, GSOTCPv4, 536, 64},
		{"120 segments into 7 buffers", vnetHdr(1, 1, 40, 536, 20, 16), mss536, GSOTCPv4, 536, 7},
		{"100 UDP segments into 64 buffers", vnetHdr(1, 5, 28, 600, 20, 6), udp, GSOUDPv4, 600, 64},
		{"segments of MTU 9000", vnetHdr(1, 1, 40, 8960, 20, 16), jumbo, GSOTCPv4, 8960, 64},
		{"segments of MTU 9000 into 1 buffer", vnetHdr(1, 1, 40, 8960, 20, 16), jumbo, GSOTCPv4, 8960, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := kernelSplit(tc.pkt, tc.kind, tc.mss)
			copyingDevices(t, func(t *testing.T, q Device, k int) {
				got, dropped := readWindows(t, q, k, append(append([]byte(nil), tc.hdr...), tc.pkt...), tc.nbufs)
				if dropped || len(got) != len(want) {
					t.Fatalf("handed over %d segments (dropped %v), want %d", len(got), dropped, len(want))
				}
				for i := range want {
					if err := checkIPv4(got[i]); err != nil {
						t.Fatalf("segment %d: %v", i, err)
					}
					if !bytes.Equal(got[i][20:], want[i][20:]) {
						t.Fatalf("segment %d of %d differs from the kernel's", i, len(want))
					}
				}
				// The device goes on with the next packet.
				one := tcpSpec{flags: flagACK, payload: []byte("next")}.build()
				got, dropped = readWindows(t, q, k, append(vnetHdr(0, 0, 0, 0, 0, 0), one...), tc.nbufs)
				if dropped || len(got) != 1 || !bytes.Equal(got[0], one) {
					t.Fatalf("the packet after: %x (dropped %v)", got, dropped)
				}
			})
		})
	}
}

// TestCopyingReadShortBuffers: wireguard-go's Read indexes past a buffer
// shorter than a segment; weft's device drops the packet instead.
func TestCopyingReadShortBuffers(t *testing.T) {
	roottest.NeedRoot(t, "ip")
	q, k := copyingQueue(t, newNetns(t, "wgshort"))
	jumbo := tcpSpec{flags: flagACK, payload: make([]byte, 3*8960)}.build()
	kernelSend(t, k, vnetHdr(1, 1, 40, 8960, 20, 16), jumbo)
	bufs, sizes := make([][]byte, 8), make([]int, 8)
	for i := range bufs {
		bufs[i] = make([]byte, Headroom+1500)
	}
	if n, err := q.Read(bufs, sizes, Headroom); !errors.Is(err, ErrDropped) {
		t.Fatalf("Read of 8960-byte segments into 1500-byte buffers = %d, %v; want ErrDropped", n, err)
	}
}

// TestReadPastMTU: after the device's MTU is raised from outside, packets
// longer than the buffers sized for the old one come cut short (the kernel
// says so of the bytes it copied) or dropped, and the device reads on: no
// size past a buffer, which the engine would slice beyond.
func TestReadPastMTU(t *testing.T) {
	roottest.NeedRoot(t, "ip")
	for _, kind := range []Kind{Plain, Offload, CopyingOffload} {
		t.Run(kind.String(), func(t *testing.T) {
			ns := newNetns(t, "mtu"+kind.String()[:2])
			dut := createIn(t, ns, Config{Name: "wdut", Queues: 1, MTU: 1500, Addr: dutAddr, Network: dutNet, Batch: 8, Kind: kind})
			if out, err := exec.Command("ip", "-n", ns, "link", "set", "wdut", "mtu", "9000").CombinedOutput(); err != nil {
				t.Fatalf("ip link set mtu 9000: %v: %s", err, out)
			}
			var conn *net.UDPConn
			err := inNS(ns, func() (err error) {
				conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: dutAddr.AsSlice()})
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			big := bytes.Repeat([]byte("m"), 4000)
			for _, msg := range [][]byte{big, []byte("small")} {
				if _, err := conn.WriteToUDP(msg, &net.UDPAddr{IP: pod2.AsSlice(), Port: 9999}); err != nil {
					t.Fatal(err)
				}
			}
			q := dut.Queues[0]
			bufs, sizes, gso := make([][]byte, 8), make([]int, 8), make([]GSO, 8)
			for i := range bufs {
				bufs[i] = make([]byte, Headroom+1500)
			}
			q.SetReadDeadline(time.Now().Add(10 * time.Second))
			sawSmall := false
			for range 50 {
				n, err := q.ReadGSO(bufs, sizes, gso, Headroom)
				if errors.Is(err, ErrDropped) {
					continue
				}
				if err != nil {
					t.Fatalf("ReadGSO: %v", err)
				}
				for i := range n {
					if sizes[i] > 1500 {
						t.Fatalf("packet %d: size %d in a buffer of 1500", i, sizes[i])
					}
					p := bufs[i][Headroom : Headroom+sizes[i]]
					if toAddr(pod2, 17)(p) && bytes.HasSuffix(p, []byte("small")) {
						sawSmall = true
					}
				}
				if sawSmall {
					return
				}
			}
			t.Fatal("the small datagram after the big one never came")
		})
	}
}

// fuzzSeeds are virtio-net headers and packets the kernel makes, and some
// it never makes.
func fuzzSeeds(f *testing.F) {
	tcp := tcpSpec{seq: 1, flags: flagACK, payload: bytes.Repeat([]byte("f"), 5000)}.build()
	udp := udpSpec{dst: farPod, dport: 7, payload: make([]byte, 3000)}.build()
	for _, s := range []struct {
		hdr   []byte
		pkt   []byte
		nbufs uint8
	}{
		{vnetHdr(1, 1, 40, 1448, 20, 16), tcp, 64},
		{vnetHdr(1, 1, 40, 536, 20, 16), tcp, 3},
		{vnetHdr(1, 0x81, 40, 100, 20, 16), tcp, 64},
		{vnetHdr(1, 5, 28, 1000, 20, 6), udp, 2},
		{vnetHdr(1, 0, 0, 0, 20, 6), udp, 1},
		{vnetHdr(1, 0, 0, 0, 20, 0xffff), udp, 1},    // checksum past the packet
		{vnetHdr(1, 0, 0, 0, 0xfff0, 16), udp, 1},    // checksum start past it
		{vnetHdr(1, 1, 40, 1, 20, 16), tcp[:200], 9}, // one byte a segment
		{vnetHdr(1, 1, 40, 0, 20, 16), tcp, 9},       // segment size 0
		{vnetHdr(1, 1, 40, 1448, 60, 16), tcp, 9},    // transport header past the IPv4 one
		{vnetHdr(1, 1, 40, 1448, 0, 0), tcp[:30], 9},
		{vnetHdr(1, 4, 40, 1448, 40, 16), tcp, 9}, // TCPv6
		{vnetHdr(1, 3, 40, 1448, 20, 16), tcp, 9}, // UDP fragmentation offload
		{nil, []byte{1, 2, 3}, 1},
		{vnetHdr(1, 1, 40, 1448, 20, 16), nil, 1},
	} {
		f.Add(append(append([]byte(nil), s.hdr...), s.pkt...), s.nbufs)
	}
}

// fuzzRead: whatever the kernel hands over, Read hands over packets that
// fit the buffers or drops it, and cuts a super-packet into the same
// segments however few buffers it is given at a time (wide reads nbufs
// at once, 200 at most for the wide read).
func fuzzRead(t *testing.T, q Device, k int, data []byte, nbufs uint8, sameWindows bool) {
	if len(data) == 0 {
		return // the socket pair would carry no message: a TUN read is never empty
	}
	narrow, narrowDropped := readWindows(t, q, k, data, max(int(nbufs)%200, 1))
	if !sameWindows {
		return
	}
	wide, wideDropped := readWindows(t, q, k, data, 200)
	if narrowDropped != wideDropped || len(narrow) != len(wide) {
		t.Fatalf("%d buffers at a time: %d packets (dropped %v); 200: %d (dropped %v)",
			nbufs, len(narrow), narrowDropped, len(wide), wideDropped)
	}
	for i := range wide {
		if !bytes.Equal(narrow[i], wide[i]) {
			t.Fatalf("packet %d differs between %d buffers at a time and 200", i, nbufs)
		}
	}
}

// FuzzVnetRead fuzzes weft's offloading device: Read, which cuts by
// copying, and ReadGSO, which hands super-packets over uncut.
func FuzzVnetRead(f *testing.F) {
	fuzzSeeds(f)
	q, k := fakeQueue(f, 64)
	bufs, sizes, gso := [][]byte{make([]byte, Headroom+65535)}, make([]int, 1), make([]GSO, 1)
	f.Fuzz(func(t *testing.T, data []byte, nbufs uint8) {
		fuzzRead(t, q, k, data, nbufs, true)
		if len(data) == 0 {
			return
		}
		kernelSend(t, k, data)
		n, err := q.ReadGSO(bufs, sizes, gso, Headroom)
		if err != nil || n != 1 || sizes[0] > 65535 {
			t.Fatalf("ReadGSO = %d, %v, size %d", n, err, sizes[0])
		}
	})
}

// FuzzCopyingRead fuzzes wireguard-go's device as weft wraps it. Only
// headers with the transport header within 60 bytes, as the kernel's are,
// must cut the same however many buffers: the spare buffers hold segments
// of at most 120 bytes of headers.
func FuzzCopyingRead(f *testing.F) {
	roottest.NeedRoot(f, "ip")
	fuzzSeeds(f)
	q, k := copyingQueue(f, newNetns(f, "wgfuzz"))
	f.Fuzz(func(t *testing.T, data []byte, nbufs uint8) {
		plausible := len(data) >= virtioNetHdrLen && int(data[6])|int(data[7])<<8 <= 60
		fuzzRead(t, q, k, data, nbufs, plausible)
	})
}

// FuzzPlainRead fuzzes the plain device, which hands over what it reads.
func FuzzPlainRead(f *testing.F) {
	fuzzSeeds(f)
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		f.Fatal(err)
	}
	unix.SetsockoptInt(pair[1], unix.SOL_SOCKET, unix.SO_SNDBUF, 1<<20)
	unix.SetsockoptInt(pair[0], unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	if err := unix.SetNonblock(pair[0], true); err != nil {
		f.Fatal(err)
	}
	q, err := newQueue(os.NewFile(uintptr(pair[0]), "fake-tun"), 8)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { q.Close(); unix.Close(pair[1]) })
	f.Fuzz(func(t *testing.T, data []byte, nbufs uint8) {
		if len(data) == 0 {
			return // the socket pair would carry no message: a TUN read is never empty
		}
		got, dropped := readWindows(t, q, pair[1], data, max(int(nbufs)%8, 1))
		if dropped || len(got) != 1 || !bytes.Equal(got[0], data[:min(len(data), len(got[0]))]) {
			t.Fatalf("read %d packets (dropped %v) of one", len(got), dropped)
		}
	})
}

// TestCopyingReadAllocs: wireguard-go's device as weft wraps it reads a
// super-packet of more segments than the buffers, spares and all, without
// allocating once the spares are cut.
func TestCopyingReadAllocs(t *testing.T) {
	roottest.NeedRoot(t, "ip")
	q, k := copyingQueue(t, newNetns(t, "wgalloc"))
	msg := append(vnetHdr(1, 1, 40, 536, 20, 16), tcpSpec{flags: flagACK, payload: make([]byte, 120*536)}.build()...)
	bufs, sizes := newBufs(64), make([]int, 64)
	read := func() {
		if _, err := unix.Write(k, msg); err != nil {
			t.Fatal(err)
		}
		for first := true; first || holdsMore(q); first = false {
			if _, err := q.Read(bufs, sizes, Headroom); err != nil {
				t.Fatal(err)
			}
		}
	}
	read()
	if a := testing.AllocsPerRun(20, read); a != 0 {
		t.Fatalf("%v allocations per super-packet read", a)
	}
}
