package engine

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weft-dev/weft/control"
)

// The packet tap: `weft dump` sees packets at the stages of the data path
// through it. Its contract with the forwarding loops is that it costs one
// atomic load per batch while no dump runs (activeTap), and that a dump
// never slows forwarding: captured packets are copied into a bounded queue,
// and what the reader has not taken back yet is dropped and counted, never
// waited for.

// Stage is a point of the data path where the tap sees packets.
type Stage uint8

// The stages, in the order a packet meets them from pod to pod.
const (
	StageTUNIn   Stage = iota // read from the TUN, before any check
	StageWireOut              // handed to the socket, TTL decremented; seen with its outer headers
	StageWireIn               // received from a peer, before any check; seen with its outer headers
	StageTUNOut               // written to the TUN: packets from peers and ICMP answers
	StageDrop                 // dropped, with the reason
	numStages
)

// String names the stage as the control protocol does: control.StageNames
// holds the names, in the order of the constants above, so that weft dump's
// --stage and the frames it reads speak of the same stages the engine taps.
func (s Stage) String() string {
	if s < numStages && int(s) < len(control.StageNames) {
		return control.StageNames[s]
	}
	return "unknown"
}

// ParseStage returns the stage named s (as Stage.String spells it).
func ParseStage(s string) (Stage, bool) {
	for i, n := range control.StageNames[:min(int(numStages), len(control.StageNames))] {
		if n == s {
			return Stage(i), true
		}
	}
	return 0, false
}

// Stages is a set of stages.
type Stages uint8

// AllStages holds every stage.
const AllStages = Stages(1<<numStages - 1)

// StagesOf returns the set holding ss.
func StagesOf(ss ...Stage) Stages {
	var set Stages
	for _, s := range ss {
		set |= 1 << s
	}
	return set
}

// Has reports whether s holds st.
func (s Stages) Has(st Stage) bool { return s&(1<<st) != 0 }

// Dump defaults.
const (
	// DefaultDumpQueue is how many captured packets wait for a slow reader
	// before the tap starts dropping: a few full batches of every worker.
	DefaultDumpQueue = 1024
	// maxSnaplen keeps every packet whole: no IPv4 packet is longer.
	maxSnaplen = 65535
	// slotStart is the buffer a queue slot starts with, enough for a whole
	// packet at the usual MTUs; a slot grows once for a longer packet.
	slotStart = 2048
)

// DumpConfig says what a dump captures.
type DumpConfig struct {
	// Stages are where to capture; zero means every stage.
	Stages Stages
	// Match, if set, picks the packets to capture. pkt begins with the
	// inner IPv4 header (it may be cut short); outerSrc and outerDst are
	// the datagram's addresses where the packet was seen as one (Wire), else
	// invalid. Match runs on the forwarding path while the dump is active:
	// it must be fast, must not block and must not keep pkt.
	Match func(pkt []byte, outerSrc, outerDst netip.AddrPort) bool
	// Snaplen is the most bytes kept of each inner packet; 0 or more than
	// 65535 means whole packets.
	Snaplen int
	// Queue is how many captured packets may wait for the reader; 0 means
	// DefaultDumpQueue.
	Queue int
}

// Captured is one packet the tap saw. It belongs to the reader until given
// back with Dump.Release.
type Captured struct {
	Stage  Stage
	Reason Drop      // why it was dropped, at StageDrop
	Time   time.Time // when the batch holding it was read or sent
	// Src and Dst are the datagram's outer addresses when the packet was
	// seen as a datagram (Wire).
	Src, Dst netip.AddrPort
	// Len is the inner packet's full length, even if fewer bytes were kept.
	Len int

	buf []byte // outerLen bytes of room for the outer headers, then the packet
	n   int    // bytes of the packet kept after the room
}

// Wire reports whether the packet was seen as a datagram: at the wire
// stages, and when a datagram received or sent was dropped. Data then
// starts with the outer IPv4 and UDP headers.
func (c *Captured) Wire() bool { return c.Src.IsValid() || c.Dst.IsValid() }

// Inner returns the bytes kept of the inner packet.
func (c *Captured) Inner() []byte { return c.buf[outerLen : outerLen+c.n] }

// Data returns the packet as it was seen, and its full length: the inner
// packet, preceded for a datagram by outer IPv4 and UDP headers as the
// kernel puts them on the wire (outer.go says which fields are inferred).
// The socket only ever sees payloads, so those headers are rebuilt here,
// on the reader's time, not the forwarding loop's.
func (c *Captured) Data() (data []byte, length int) {
	if !c.Wire() {
		return c.Inner(), c.Len
	}
	writeOuter(c.buf[:outerLen], c.Src, c.Dst, c.Len, c.Inner())
	return c.buf[:outerLen+c.n], outerLen + c.Len
}

// Dump is a running capture. Its packets come from Packets; each goes back
// to the queue with Release once read.
type Dump struct {
	tap     *tap
	stages  Stages
	match   func(pkt []byte, outerSrc, outerDst netip.AddrPort) bool
	snaplen int

	free chan *Captured // empty slots, taken by the forwarding loops
	out  chan *Captured // filled slots, in capture order per loop

	captured atomic.Uint64
	dropped  atomic.Uint64
	once     sync.Once
}

// Packets delivers the captured packets. It is never closed: after Close
// it holds only what was captured before.
func (d *Dump) Packets() <-chan *Captured { return d.out }

// Release gives c's slot back to the queue.
func (d *Dump) Release(c *Captured) {
	select {
	case d.free <- c:
	default: // not one of ours; never block
	}
}

// Captured is the number of packets queued for the reader so far.
func (d *Dump) Captured() uint64 { return d.captured.Load() }

// Dropped is the number of matching packets the tap dropped because the
// reader had not given enough slots back.
func (d *Dump) Dropped() uint64 { return d.dropped.Load() }

// Close stops the capture. Packets already queued stay readable.
func (d *Dump) Close() { d.once.Do(func() { d.tap.remove(d) }) }

// tap is the engine's side of the dumps: the set of running dumps the
// forwarding loops read through one atomic pointer, nil while there is none,
// and totals over every dump for the metrics.
type tap struct {
	mu       sync.Mutex
	active   atomic.Pointer[tapSet]
	captured atomic.Uint64
	dropped  atomic.Uint64
}

// tapSet is an immutable set of running dumps; starting or ending a dump
// swaps in a new one.
type tapSet struct {
	tap   *tap
	dumps []*Dump
}

// StartDump starts capturing as cfg says. Close the dump when done: until
// then, the forwarding loops copy every packet it matches.
func (e *Engine) StartDump(cfg DumpConfig) *Dump {
	queue := cfg.Queue
	if queue <= 0 {
		queue = DefaultDumpQueue
	}
	snap := cfg.Snaplen
	if snap <= 0 || snap > maxSnaplen {
		snap = maxSnaplen
	}
	stages := cfg.Stages & AllStages
	if stages == 0 {
		stages = AllStages
	}
	d := &Dump{
		tap:     &e.tap,
		stages:  stages,
		match:   cfg.Match,
		snaplen: snap,
		free:    make(chan *Captured, queue),
		out:     make(chan *Captured, queue),
	}
	for range queue {
		d.free <- &Captured{buf: make([]byte, outerLen+min(snap, slotStart))}
	}
	e.tap.add(d)
	return d
}

// DumpStats are the tap's totals over every dump since the engine started.
type DumpStats struct {
	Active   int    // dumps running now
	Captured uint64 // packets queued for readers
	Dropped  uint64 // matching packets dropped because a reader was slow
}

// DumpStats returns the tap's totals.
func (e *Engine) DumpStats() DumpStats {
	s := DumpStats{Captured: e.tap.captured.Load(), Dropped: e.tap.dropped.Load()}
	if set := e.tap.active.Load(); set != nil {
		s.Active = len(set.dumps)
	}
	return s
}

func (t *tap) add(d *Dump) {
	t.mu.Lock()
	defer t.mu.Unlock()
	set := &tapSet{tap: t}
	if old := t.active.Load(); old != nil {
		set.dumps = append(set.dumps, old.dumps...)
	}
	set.dumps = append(set.dumps, d)
	t.active.Store(set)
}

func (t *tap) remove(d *Dump) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.active.Load()
	if old == nil {
		return
	}
	set := &tapSet{tap: t}
	for _, x := range old.dumps {
		if x != d {
			set.dumps = append(set.dumps, x)
		}
	}
	if len(set.dumps) == 0 {
		set = nil // idle again: the loops' one load finds nil
	}
	t.active.Store(set)
}

// capture offers one packet to every dump of the set. The packet is head
// followed by pkt (head holds a segment's own headers, or nothing); src and
// dst are its outer addresses if it was seen as a datagram.
func (s *tapSet) capture(st Stage, why Drop, head, pkt []byte, src, dst netip.AddrPort, now time.Time) {
	first := pkt
	if len(head) > 0 {
		first = head
	}
	for _, d := range s.dumps {
		if !d.stages.Has(st) || d.match != nil && !d.match(first, src, dst) {
			continue
		}
		var c *Captured
		select {
		case c = <-d.free:
		default:
			d.dropped.Add(1)
			s.tap.dropped.Add(1)
			continue
		}
		c.Stage, c.Reason, c.Time, c.Src, c.Dst = st, why, now, src, dst
		c.Len = len(head) + len(pkt)
		keep := min(c.Len, d.snaplen)
		if cap(c.buf) < outerLen+keep {
			// Only while a dump runs, once per slot and size.
			c.buf = make([]byte, outerLen+keep)
		}
		c.buf = c.buf[:outerLen+keep]
		k := copy(c.buf[outerLen:], head)
		copy(c.buf[outerLen+k:], pkt)
		c.n = keep
		d.captured.Add(1)
		s.tap.captured.Add(1)
		d.out <- c // never blocks: out holds as many as there are slots
	}
}
