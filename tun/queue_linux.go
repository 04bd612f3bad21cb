package tun

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
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
}

func newQueue(f *os.File, batch int) (*queue, error) {
	raw, err := f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("tun queue: %w", err)
	}
	return &queue{file: f, raw: raw, batch: batch}, nil
}

func (q *queue) BatchSize() int { return q.batch }

// SetReadDeadline ends a blocked Read, and those after it, at t, leaving
// writes open: weftd stops reading, then writes what it holds.
func (q *queue) SetReadDeadline(t time.Time) error { return q.file.SetReadDeadline(t) }

func (q *queue) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	max := min(len(bufs), q.batch)
	n := 0
	var rerr error
	err := q.raw.Read(func(fd uintptr) bool {
		for n < max {
			m, err := unix.Read(int(fd), bufs[n][offset:])
			if err == unix.EINTR {
				continue
			}
			if err == unix.EAGAIN {
				break
			}
			if err != nil {
				rerr = err
				return true
			}
			sizes[n] = m
			n++
		}
		// Wait for readiness only while nothing was read.
		return n > 0
	})
	return drained(n, err, rerr)
}

func (q *queue) Write(bufs [][]byte, offset int) (int, error) {
	i, written := 0, 0
	var werr error
	err := q.raw.Write(func(fd uintptr) bool {
		for i < len(bufs) {
			_, err := unix.Write(int(fd), bufs[i][offset:])
			switch {
			case err == unix.EINTR:
				continue
			case err == unix.EAGAIN:
				return false // the queue is full: wait until it drains
			case err != nil:
				// The kernel refused this packet (malformed, or the
				// device is going): keep the first error, write the rest.
				if werr == nil {
					werr = err
				}
			default:
				written++
			}
			i++
		}
		return true
	})
	if werr != nil {
		return written, werr
	}
	return written, err
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
