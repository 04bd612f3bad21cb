package tun

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/weft-dev/weft/internal/roottest"
)

// uringReads is an experiment, kept here so that BenchmarkReadBurst can
// measure it again on another kernel: weftd reads with read(2)
// (readPackets), because this did not beat it on the machine where it was
// measured (bench/RESULTS.md).
//
// It reads a TUN queue several packets per system call: one io_uring_enter
// submits a read into each of several buffers. Every read is
// non-blocking (RWF_NOWAIT, and the queue is O_NONBLOCK), so the reads that
// find the queue empty end at once with EAGAIN instead of waiting for a
// packet. Every read therefore completes inside the call: io_uring never
// holds a buffer past it, and the wait for a packet stays with Go's poller,
// as with read(2).
//
// How many reads to submit is a guess from the last call: one more than it
// got, so that a queue that fills as it did last time is drained in one call
// and one read finds it empty, as read(2)'s EAGAIN does. While every read
// finds a packet, the next call submits twice as many.
//
// No io_uring library is served by the module proxy this project builds
// from, and the experiment needs one operation of it, so the few structures
// it uses are declared here, after include/uapi/linux/io_uring.h.
type uringReads struct {
	mu   sync.Mutex // held while the rings are in use, so Close cannot unmap them under a read
	ring int        // the io_uring's descriptor; -1 once closed
	rmem []byte     // the submission and completion rings (one mapping)
	smem []byte     // the submission queue entries
	sqes []uringSQE
	cqes []uringCQE

	sqTail, sqHead *uint32
	cqTail, cqHead *uint32
	sqMask, cqMask uint32
	entries        int

	want int // reads to submit first, next time
}

// Declarations from include/uapi/linux/io_uring.h.
const (
	uringOpRead         = 22         // IORING_OP_READ
	uringFeatSingleMmap = 1 << 0     // IORING_FEAT_SINGLE_MMAP (Linux 5.4)
	uringEnterGetEvents = 1 << 0     // IORING_ENTER_GETEVENTS
	uringOffSQRing      = 0          // IORING_OFF_SQ_RING
	uringOffSQEs        = 0x10000000 // IORING_OFF_SQES
)

// uringSQE is struct io_uring_sqe as a read uses it.
type uringSQE struct {
	opcode      uint8
	flags       uint8
	ioprio      uint16
	fd          int32
	off         uint64
	addr        uint64
	len         uint32
	rwFlags     uint32
	userData    uint64
	bufIndex    uint16
	personality uint16
	spliceFdIn  int32
	addr3       uint64
	_           uint64
}

// uringCQE is struct io_uring_cqe.
type uringCQE struct {
	userData uint64
	res      int32
	flags    uint32
}

// uringParams is struct io_uring_params with its ring offsets.
type uringParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFD uint32
	_                                                                      [3]uint32
	sqOff                                                                  struct {
		head, tail, ringMask, ringEntries, flags, dropped, array, _ uint32
		_                                                           uint64
	}
	cqOff struct {
		head, tail, ringMask, ringEntries, overflow, cqes, flags, _ uint32
		_                                                           uint64
	}
}

// newURingReads sets up an io_uring of at least entries submission slots.
// It fails where the kernel has no io_uring or refuses it to this process
// (kernel.io_uring_disabled, a seccomp filter such as Docker's default):
// the caller then reads with read(2).
func newURingReads(entries int) (*uringReads, error) {
	var p uringParams
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", errno)
	}
	u := &uringReads{ring: int(fd)}
	if p.features&uringFeatSingleMmap == 0 {
		u.Close()
		return nil, errors.New("io_uring: kernel older than 5.4 (no IORING_FEAT_SINGLE_MMAP)")
	}
	size := max(p.sqOff.array+p.sqEntries*4, p.cqOff.cqes+p.cqEntries*uint32(unsafe.Sizeof(uringCQE{})))
	var err error
	u.rmem, err = unix.Mmap(u.ring, uringOffSQRing, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		u.Close()
		return nil, fmt.Errorf("io_uring: map rings: %w", err)
	}
	u.smem, err = unix.Mmap(u.ring, uringOffSQEs, int(p.sqEntries)*int(unsafe.Sizeof(uringSQE{})), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		u.Close()
		return nil, fmt.Errorf("io_uring: map submission entries: %w", err)
	}
	word := func(off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&u.rmem[off])) }
	u.sqHead, u.sqTail, u.sqMask = word(p.sqOff.head), word(p.sqOff.tail), *word(p.sqOff.ringMask)
	u.cqHead, u.cqTail, u.cqMask = word(p.cqOff.head), word(p.cqOff.tail), *word(p.cqOff.ringMask)
	u.sqes = unsafe.Slice((*uringSQE)(unsafe.Pointer(&u.smem[0])), p.sqEntries)
	u.cqes = unsafe.Slice((*uringCQE)(unsafe.Pointer(&u.rmem[p.cqOff.cqes])), p.cqEntries)
	// Slot i of the submission queue is always entry i.
	array := unsafe.Slice(word(p.sqOff.array), p.sqEntries)
	for i := range array {
		array[i] = uint32(i)
	}
	u.entries = int(p.sqEntries)
	u.want = 2
	return u, nil
}

// readSome is readPackets through the ring.
func (u *uringReads) readSome(fd int, bufs [][]byte, off int, sizes []int) (int, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.ring < 0 {
		return 0, unix.EBADF
	}
	n, want := 0, u.want
	defer func() { u.want = min(n+1, u.entries) }()
	for n < len(bufs) {
		k := min(want, len(bufs)-n, u.entries)
		got, empty, err := u.submit(fd, bufs[n:n+k], off, sizes[n:n+k])
		n += got
		if err != nil || empty {
			return n, err
		}
		want *= 2
	}
	return n, nil
}

// submit makes one read into each of bufs in one io_uring_enter and collects
// the results, in order. A read may find the queue empty and a later one a
// packet that came in between; that packet is moved up, so the packets read
// are always bufs[:got]. empty reports that some read found no packet.
func (u *uringReads) submit(fd int, bufs [][]byte, off int, sizes []int) (got int, empty bool, err error) {
	k := uint32(len(bufs))
	tail := *u.sqTail // written only here, under mu
	for i, b := range bufs {
		u.sqes[(tail+uint32(i))&u.sqMask] = uringSQE{
			opcode:   uringOpRead,
			fd:       int32(fd),
			off:      ^uint64(0), // the file's position, as read(2); a TUN has none
			addr:     uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b[off:])))),
			len:      uint32(len(b) - off),
			rwFlags:  unix.RWF_NOWAIT,
			userData: uint64(i),
		}
	}
	atomic.StoreUint32(u.sqTail, tail+k)
	head := *u.cqHead // written only here, under mu
	for {
		unsubmitted := tail + k - atomic.LoadUint32(u.sqHead)
		done := atomic.LoadUint32(u.cqTail) - head
		if unsubmitted == 0 && done >= k {
			break
		}
		// The reads never wait, so neither does this call, beyond
		// running them.
		// Submitting runs the reads; waiting is asked for only if some
		// did not complete, which they all should.
		flags, wait := uintptr(0), uintptr(0)
		if unsubmitted == 0 {
			flags, wait = uringEnterGetEvents, uintptr(k-done)
		}
		_, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(u.ring), uintptr(unsubmitted), wait, flags, 0, 0)
		if errno != 0 && errno != unix.EINTR && errno != unix.EAGAIN && errno != unix.EBUSY {
			// Nothing was submitted (the ring itself failed): no
			// buffer is in the kernel's hands.
			*u.sqTail = atomic.LoadUint32(u.sqHead)
			return 0, false, fmt.Errorf("io_uring_enter: %w", errno)
		}
	}
	runtime.KeepAlive(bufs)
	for i := range k {
		c := u.cqes[(head+i)&u.cqMask]
		sizes[c.userData] = int(c.res) // a length, or -errno
	}
	atomic.StoreUint32(u.cqHead, head+k)
	for i := range bufs {
		m := sizes[i]
		switch {
		case m >= 0:
			if i != got {
				sizes[got] = copy(bufs[got][off:], bufs[i][off:off+m])
			} else {
				sizes[got] = m
			}
			got++
		case m == -int(unix.EAGAIN) || m == -int(unix.EINTR):
			empty = true
		default:
			if err == nil {
				err = unix.Errno(-m)
			}
		}
	}
	return got, empty, err
}

// Close releases the ring. Reads after it fail with EBADF.
func (u *uringReads) Close() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.smem != nil {
		unix.Munmap(u.smem)
		u.smem, u.sqes = nil, nil
	}
	if u.rmem != nil {
		unix.Munmap(u.rmem)
		u.rmem, u.cqes = nil, nil
	}
	if u.ring < 0 {
		return nil
	}
	err := unix.Close(u.ring)
	u.ring = -1
	return err
}

// burstSource sends bursts of small UDP datagrams, from inside ns, to a
// pod routed into the device under test. Each send returns once its
// datagram is in the device's queue.
type burstSource struct {
	conn *net.UDPConn
	to   *net.UDPAddr
	seq  byte
}

func newBurstSource(tb testing.TB, ns string) *burstSource {
	tb.Helper()
	s := &burstSource{to: &net.UDPAddr{IP: pod2.AsSlice(), Port: 9999}}
	err := inNS(ns, func() (err error) {
		s.conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: dutAddr.AsSlice()})
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.conn.Close() })
	return s
}

// send sends n datagrams of 36 bytes (64-byte packets), each numbered in its
// first byte.
func (s *burstSource) send(tb testing.TB, n int) {
	var msg [36]byte
	for range n {
		s.seq++
		msg[0] = s.seq
		if _, err := s.conn.WriteToUDP(msg[:], s.to); err != nil {
			tb.Fatal(err)
		}
	}
}

// readerFixture is a real offloading TUN queue in its own namespace, the
// bursts that fill it, and its descriptor, read here directly: the
// benchmark measures the reads, not Go's poller.
type readerFixture struct {
	src *burstSource
	raw syscall.RawConn
}

func newReaderFixture(tb testing.TB) *readerFixture {
	roottest.NeedRoot(tb, "ip")
	ns := newNetns(tb, "rb")
	dut := createIn(tb, ns, Config{Name: "wdut", Queues: 1, MTU: 1500, Addr: dutAddr, Network: dutNet, Batch: 64, Kind: Offload})
	raw, err := dut.Queues[0].SyscallConn()
	if err != nil {
		tb.Fatal(err)
	}
	return &readerFixture{src: newBurstSource(tb, ns), raw: raw}
}

// read reads the queue until it is empty, with read(2) or through ring.
func (f *readerFixture) read(tb testing.TB, ring *uringReads, bufs [][]byte, sizes []int) int {
	var n int
	var err error
	cerr := f.raw.Control(func(fd uintptr) {
		if ring != nil {
			n, err = ring.readSome(int(fd), bufs, Headroom-virtioNetHdrLen, sizes)
		} else {
			n, err = readPackets(int(fd), bufs, Headroom-virtioNetHdrLen, sizes)
		}
	})
	if err := errors.Join(cerr, err); err != nil {
		tb.Fatal(err)
	}
	return n
}

// newTestURing returns a ring closed when tb ends. Where the kernel refuses
// io_uring the test is skipped, except under CI=true, whose machine has it.
func newTestURing(tb testing.TB) *uringReads {
	ring, err := newURingReads(64)
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("no io_uring here, and CI=true forbids skipping: %v", err)
		}
		tb.Skipf("no io_uring here: %v", err)
	}
	tb.Cleanup(func() { ring.Close() })
	return ring
}

// TestURingReads: the experiment reads what read(2) reads, in order, in as
// many calls as it takes, and a queue with nothing in it gives nothing at
// once instead of waiting.
func TestURingReads(t *testing.T) {
	f := newReaderFixture(t)
	ring := newTestURing(t)
	bufs, sizes := newBufs(64), make([]int, 64)
	if n := f.read(t, ring, bufs, sizes); n != 0 {
		t.Fatalf("empty queue: %d packets", n)
	}
	for _, burst := range []int{1, 5, 64, 30, 2} {
		f.src.send(t, burst)
		first := f.src.seq - byte(burst) + 1
		got := 0
		for calls := 0; got < burst; calls++ {
			if calls > burst {
				t.Fatalf("burst of %d: %d packets after %d calls", burst, got, calls)
			}
			n := f.read(t, ring, bufs[got:], sizes[got:])
			got += n
		}
		if got != burst {
			t.Fatalf("burst of %d: read %d", burst, got)
		}
		for i := range got {
			p := bufs[i][Headroom : Headroom-virtioNetHdrLen+sizes[i]]
			if len(p) != 64 || !bytes.Equal(p[12:16], dutAddr.AsSlice()) || p[28] != first+byte(i) {
				t.Fatalf("burst of %d, packet %d: % x, want datagram %d of 64 bytes", burst, i, p, first+byte(i))
			}
		}
	}
	ring.Close()
	if _, err := ring.readSome(0, bufs, Headroom, sizes); !errors.Is(err, unix.EBADF) {
		t.Fatalf("read after Close: %v, want EBADF", err)
	}
}

// BenchmarkReadBurst reads bursts of 64-byte packets from a real TUN queue
// until it is empty: with read(2), one system call per packet and one more
// that finds the queue empty, and through io_uring, about one call per
// burst. The time is the reads' alone: bursts are sent with the timer
// stopped.
func BenchmarkReadBurst(b *testing.B) {
	for _, reads := range []string{"read", "io_uring"} {
		for _, burst := range []int{1, 8, 64} {
			b.Run(reads+"/"+strconv.Itoa(burst), func(b *testing.B) {
				f := newReaderFixture(b)
				var ring *uringReads
				if reads == "io_uring" {
					ring = newTestURing(b)
				}
				bufs, sizes := newBufs(64), make([]int, 64)
				b.ReportAllocs()
				for b.Loop() {
					b.StopTimer()
					f.src.send(b, burst)
					b.StartTimer()
					for got := 0; got < burst; {
						got += f.read(b, ring, bufs, sizes)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*burst), "ns/packet")
			})
		}
	}
}
