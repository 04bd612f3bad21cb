// Package threadwait makes a forwarding loop wait for its descriptor in
// poll(2), on the loop's own thread, instead of in Go's poller.
//
// In Go's poller a loop that finds nothing to read parks its goroutine; when
// the packet comes, the thread blocked in epoll_wait wakes, finds a P, hands
// the goroutine on, and wakes one more thread to look for work in case
// there is more. On this machine that scheduling was about a third of
// weftd's CPU per crossing of a request/response (bench/RESULTS.md). A loop
// that waits in poll(2) itself is woken by the kernel, on its own thread,
// and goes straight on.
//
// The Go runtime still counts the waiting loop as a goroutine in a system
// call that holds its P. With more waiting loops than Ps, a loop coming back
// from its wait finds no P free until the runtime's monitor takes one back
// from another waiting loop, which it may take milliseconds to do: a process
// whose loops wait here must raise GOMAXPROCS by one for each of them.
package threadwait

import (
	"encoding/binary"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Waiter is one loop's wait: its descriptor and an eventfd that ends a wait
// early, for a new deadline or Close. Wait is for one reader at a time;
// SetDeadline and Close may be called from any goroutine.
type Waiter struct {
	wake     int
	deadline atomic.Int64 // UnixNano, 0 for none
	closed   atomic.Bool

	mu  sync.Mutex // held by Wait while it polls, so Close cannot close wake under it
	fds [2]unix.PollFd
	kmu sync.Mutex // held while wake is written to, so Close cannot close it under a kick
}

// New returns a Waiter, or an error if the kernel gives no eventfd.
func New() (*Waiter, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, os.NewSyscallError("eventfd", err)
	}
	return &Waiter{wake: fd}, nil
}

// Wait blocks until fd is readable (or in error, which the read after it
// will tell), the deadline has passed, or the Waiter is closed. It returns
// os.ErrDeadlineExceeded past the deadline and os.ErrClosed after Close, as
// a read on Go's poller would.
func (w *Waiter) Wait(fd uintptr) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.fds[0] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
	w.fds[1] = unix.PollFd{Fd: int32(w.wake), Events: unix.POLLIN}
	for {
		if w.closed.Load() {
			return os.ErrClosed
		}
		timeout := -1
		if d := w.deadline.Load(); d != 0 {
			left := time.Until(time.Unix(0, d))
			if left <= 0 {
				return os.ErrDeadlineExceeded
			}
			timeout = int((left + time.Millisecond - 1) / time.Millisecond)
		}
		_, err := unix.Poll(w.fds[:], timeout)
		if err != nil && err != unix.EINTR {
			return os.NewSyscallError("poll", err)
		}
		if w.fds[1].Revents != 0 {
			var b [8]byte
			unix.Read(w.wake, b[:]) // reset the eventfd; then look again
			continue
		}
		if w.fds[0].Revents != 0 {
			return nil
		}
	}
}

// SetDeadline ends a Wait, and those after it, at t; the zero t removes the
// deadline. A Wait in progress sees the new deadline at once.
func (w *Waiter) SetDeadline(t time.Time) {
	var d int64
	if !t.IsZero() {
		d = t.UnixNano()
	}
	w.deadline.Store(d)
	w.kick()
}

// Close ends a Wait in progress and every Wait after it, and releases the
// eventfd once no Wait uses it.
func (w *Waiter) Close() error {
	if w.closed.Swap(true) {
		return nil
	}
	w.kick()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.kmu.Lock()
	defer w.kmu.Unlock()
	err := unix.Close(w.wake)
	w.wake = -1
	return err
}

func (w *Waiter) kick() {
	w.kmu.Lock()
	defer w.kmu.Unlock()
	if w.wake < 0 {
		return
	}
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	unix.Write(w.wake, one[:]) // fails only when kicked 2^64-2 times unread
}
