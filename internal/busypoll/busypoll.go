// Package busypoll keeps a forwarding loop awake for a short, bounded time
// after traffic, so that the next packet of a conversation can find it
// polling instead of asleep.
//
// Waking a sleeping thread is a large part of weft's round trip: on a VM
// whose idle vCPUs halt, each wake-up is an interrupt and a VM entry, and a
// request/response crosses weftd four times. A loop that polls for a short
// while after traffic takes the next packet without a wake-up. It polls only
// while packets are flowing: after a window with no traffic it sleeps as
// before, so an idle weftd costs no CPU.
//
// Each loop has a Window of its own. A window shared by every loop kept them
// all polling on any traffic, more loops than the Go runtime has Ps, and the
// loop that had the reply to forward waited for a P: on two cores the round
// trip grew tenfold (bench/RESULTS.md).
package busypoll

import (
	"runtime"
	"time"
)

// Window is one loop's polling state. The zero Window and a nil one never
// poll. A Window belongs to one reader: it is not safe for concurrent use.
type Window struct {
	d    time.Duration
	last time.Time // when the last packet arrived
}

// New returns a Window that keeps its loop polling for d after the last
// packet; d <= 0 never polls, and New returns nil.
func New(d time.Duration) *Window {
	if d <= 0 {
		return nil
	}
	return &Window{d: d}
}

// Traffic records that packets arrived now.
func (w *Window) Traffic() {
	if w != nil {
		w.last = time.Now()
	}
}

// Again reports whether a read that found nothing ready should try again
// rather than sleep: a packet arrived less than the window ago. Before it
// says so it lets any other goroutine and any other thread ready to run have
// the CPU, so that polling never holds up the forwarding of the reply or the
// processes the packets are for.
func (w *Window) Again() bool {
	if w == nil || w.last.IsZero() || time.Since(w.last) >= w.d {
		return false
	}
	runtime.Gosched()
	yield()
	return true
}
