package tun

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weft-dev/weft/internal/busypoll"
)

// queue is one queue of a plain TUN device (no virtio-net header): each
// read(2) gives one packet and each write(2) takes one. The file is
// non-blocking and registered with Go's poller; Read waits once, then drains
// what is ready with further reads until the batch is full, so a burst costs
// one wake-up.
type queue struct {
	file  *os.File
	raw   syscall.RawConn
	batch int
	poll  *busypoll.Window // nil: sleep as soon as nothing is ready

	// The calls to the poller, made once with their arguments and results
	// here: a closure built per read or write would allocate. One reader
	// at a time; writers hold wmu.
	readFn, writeFn func(fd uintptr) bool
	rd              struct {
		bufs           [][]byte
		sizes          []int
		offset, max, n int
		err            error
	}
	wmu sync.Mutex
	wr  struct {
		bufs               [][]byte
		offset, i, written int
		err                error
	}
}

func newQueue(f *os.File, batch int) (*queue, error) {
	raw, err := f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("tun queue: %w", err)
	}
	q := &queue{file: f, raw: raw, batch: batch}
	q.readFn, q.writeFn = q.readReady, q.writeReady
	return q, nil
}

// Caps implements Device: packets as the MTU has them, no header of its own.
func (q *queue) Caps() Caps { return Caps{Batch: q.batch} }

func (q *queue) SyscallConn() (syscall.RawConn, error) { return q.raw, nil }

// SetReadDeadline ends a blocked Read, and those after it, at t, leaving
// writes open: weftd stops reading, then writes what it holds.
func (q *queue) SetReadDeadline(t time.Time) error { return q.file.SetReadDeadline(t) }

func (q *queue) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	q.rd.bufs, q.rd.sizes, q.rd.offset = bufs, sizes, offset
	q.rd.max, q.rd.n, q.rd.err = min(len(bufs), q.batch), 0, nil
	err := q.raw.Read(q.readFn)
	n, rerr := q.rd.n, q.rd.err
	q.rd.bufs, q.rd.sizes = nil, nil // the caller's; not to be kept
	return drained(n, err, rerr)
}

// ReadGSO implements Device: a plain queue hands over packets, never
// super-packets.
func (q *queue) ReadGSO(bufs [][]byte, sizes []int, gso []GSO, offset int) (int, error) {
	n, err := q.Read(bufs, sizes, offset)
	clear(gso[:n])
	return n, err
}

// readReady reads packets until the batch is full or none is left, and
// asks to wait only while nothing was read and the busy-poll window, if
// any, has closed.
func (q *queue) readReady(fd uintptr) bool {
	r := &q.rd
	r.n, r.err = readPolling(int(fd), r.bufs[:r.max], r.offset, r.sizes[:r.max], q.poll)
	return r.n > 0 || r.err != nil
}

func (q *queue) Write(bufs [][]byte, offset int) (int, error) {
	q.wmu.Lock()
	defer q.wmu.Unlock()
	q.wr.bufs, q.wr.offset, q.wr.i, q.wr.written, q.wr.err = bufs, offset, 0, 0, nil
	err := q.raw.Write(q.writeFn)
	written, werr := q.wr.written, q.wr.err
	q.wr.bufs = nil
	if werr != nil {
		return written, werr
	}
	return written, err
}

// writeReady writes the packets left, one write(2) each, and asks to wait
// when the queue is full.
func (q *queue) writeReady(fd uintptr) bool {
	w := &q.wr
	for w.i < len(w.bufs) {
		_, err := unix.Write(int(fd), w.bufs[w.i][w.offset:])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return false // the queue is full: wait until it drains
		case err != nil:
			// The kernel refused this packet (malformed, or the device
			// is going): keep the first error, write the rest.
			if w.err == nil {
				w.err = err
			}
		default:
			w.written++
		}
		w.i++
	}
	return true
}

func (q *queue) Close() error {
	err := q.file.Close()
	if errors.Is(err, os.ErrClosed) {
		return nil
	}
	return err
}

// drained is what a draining read returns: the packets it got, else why it
// got none (the poller's error, then the read's).
func drained(n int, pollErr, readErr error) (int, error) {
	if n > 0 {
		return n, nil
	}
	if pollErr != nil {
		return 0, pollErr
	}
	return 0, readErr
}

// readPolling is readPackets that, while it finds nothing, tries again as
// long as poll's window is open, and tells poll when packets came.
func readPolling(fd int, bufs [][]byte, off int, sizes []int, poll *busypoll.Window) (int, error) {
	for {
		n, err := readPackets(fd, bufs, off, sizes)
		if err != nil {
			return n, err
		}
		if n > 0 {
			poll.Traffic()
			return n, nil
		}
		if !poll.Again() {
			return 0, nil
		}
	}
}

// readPackets reads packets from the non-blocking file fd into bufs[i][off:]
// until it has len(bufs) of them or the file has none left, and puts their
// lengths in sizes, one read(2) each. It returns how many it read, and an
// error only when a read failed for another reason than an empty queue; the
// packets before that read are still counted.
//
// Reading several packets per system call through io_uring was measured
// against this and not kept: see uringReads in uring_linux_test.go.
func readPackets(fd int, bufs [][]byte, off int, sizes []int) (int, error) {
	n := 0
	for n < len(bufs) {
		m, err := unix.Read(fd, bufs[n][off:])
		switch err {
		case nil:
			sizes[n] = m
			n++
		case unix.EINTR:
		case unix.EAGAIN:
			return n, nil
		default:
			return n, err
		}
	}
	return n, nil
}
