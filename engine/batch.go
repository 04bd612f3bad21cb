package engine

import (
	"math/bits"
	"sync/atomic"
)

// Batch sizes are counted per loop in fixed buckets, as a histogram with
// powers of two as bounds, so that observing one costs two uncontended
// atomic adds and no lock; Stats sums the loops.

// numBatchBuckets is the buckets of the histogram: batches of at most 1, 2,
// 4, ... 1024 packets (weftd's largest --batch), and a last one for more.
const numBatchBuckets = 12

// BatchBounds returns the upper bounds of the batch size buckets but the
// last, which holds every larger batch.
func BatchBounds() []float64 {
	b := make([]float64, numBatchBuckets-1)
	for i := range b {
		b[i] = float64(uint(1) << i)
	}
	return b
}

// batchSizes is one loop's histogram.
type batchSizes struct {
	buckets [numBatchBuckets]atomic.Uint64
	packets atomic.Uint64
}

// observe counts a batch of n packets.
func (b *batchSizes) observe(n int) {
	i := 0
	if n > 1 {
		i = min(bits.Len(uint(n-1)), numBatchBuckets-1) // n <= 1<<i
	}
	b.buckets[i].Add(1)
	b.packets.Add(uint64(n))
}

// BatchSizes is a histogram of batch sizes: Buckets[i] counts the batches of
// more than BatchBounds()[i-1] and at most BatchBounds()[i] packets (not
// cumulative); Packets is the sum of their sizes.
type BatchSizes struct {
	Buckets [numBatchBuckets]uint64
	Packets uint64
}

// Batches is the number of batches counted.
func (h BatchSizes) Batches() uint64 {
	var n uint64
	for _, c := range h.Buckets {
		n += c
	}
	return n
}

func (h *BatchSizes) add(b *batchSizes) {
	for i := range b.buckets {
		h.Buckets[i] += b.buckets[i].Load()
	}
	h.Packets += b.packets.Load()
}
