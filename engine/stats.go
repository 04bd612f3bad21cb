package engine

import "sync/atomic"

// counters belong to one loop: only that loop's goroutine adds to them, so
// the atomic adds never contend, and Stats sums the loops at read time.
type counters struct {
	packets atomic.Uint64
	bytes   atomic.Uint64
	icmp    atomic.Uint64
	drops   [numDrops]atomic.Uint64
	batches batchSizes // packets per read, TUN or socket (batch.go)
	inbound bool
	_       [64]byte // keep loops' counters on separate cache lines
}

// Stats are the engine's counters, summed over its loops.
type Stats struct {
	TxPackets, TxBytes uint64 // from the TUN, sent to peers
	RxPackets, RxBytes uint64 // from peers, written to the TUN
	ICMPSent           uint64 // net unreachable answers written to the TUN
	Drops              [numDrops]uint64
	// TxBatches and RxBatches are the sizes of the TUN reads and of the
	// socket reads.
	TxBatches, RxBatches BatchSizes
}

// Dropped is the number of packets dropped for reason d.
func (s Stats) Dropped(d Drop) uint64 { return s.Drops[d] }

// Stats sums the counters of every loop.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	var s Stats
	for _, c := range e.loops {
		if c.inbound {
			s.RxPackets += c.packets.Load()
			s.RxBytes += c.bytes.Load()
			s.RxBatches.add(&c.batches)
		} else {
			s.TxPackets += c.packets.Load()
			s.TxBytes += c.bytes.Load()
			s.TxBatches.add(&c.batches)
		}
		s.ICMPSent += c.icmp.Load()
		for d := range c.drops {
			s.Drops[d] += c.drops[d].Load()
		}
	}
	return s
}
