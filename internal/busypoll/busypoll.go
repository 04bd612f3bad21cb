// Package busypoll keeps a forwarding loop awake for a short, bounded time
// after traffic, so that the next packet of a conversation finds it polling
// instead of asleep.
//
// Waking a sleeping thread is the largest part of weft's round trip: on a
// VM whose idle vCPUs halt, each wake-up is an interrupt and a VM entry, and
// a request/response crosses weftd four times. A loop that polls for a short
// while after traffic takes the reply to a request it just forwarded without
// any wake-up. It polls only while packets are flowing: after the window
// with no traffic it sleeps as before, so an idle weftd costs no CPU.
package busypoll

import (
	"sync/atomic"
	"time"
)

// epoch is the origin of Window's clock: time.Since reads the monotonic
// clock, and a duration fits an atomic int64.
var epoch = time.Now()

// Window is the polling state of the loops that share it: traffic seen by
// any of them keeps all of them polling. The zero Window never polls.
type Window struct {
	d    time.Duration
	last atomic.Int64 // when traffic was last seen, as time.Since(epoch); 0: never
}

// New returns a Window that keeps its loops polling for d after the last
// traffic; d <= 0 never polls.
func New(d time.Duration) *Window { return &Window{d: max(d, 0)} }

// Traffic records that packets moved now. A nil Window ignores it.
func (w *Window) Traffic() {
	if w != nil && w.d > 0 {
		w.last.Store(max(int64(time.Since(epoch)), 1))
	}
}

// Again reports whether a read that found nothing ready should try again
// rather than sleep: traffic was seen less than the window ago. Before it
// says so it yields the CPU to any other thread ready to run on it, so that
// polling never holds up the processes the packets are for (on a small
// machine, the pods and the other loops). A nil Window never polls.
func (w *Window) Again() bool {
	if w == nil || w.d <= 0 {
		return false
	}
	last := w.last.Load()
	if last == 0 || time.Since(epoch)-time.Duration(last) >= w.d {
		return false
	}
	yield()
	return true
}
