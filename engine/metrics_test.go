package engine

import (
	"testing"

	dto "github.com/prometheus/client_model/go"
)

func TestBatchHistogram(t *testing.T) {
	var b BatchSizes
	b.Buckets[0], b.Buckets[3], b.Buckets[11] = 2, 1, 1 // two of 1, one of 5-8, one over 1024
	b.Packets = 2 + 7 + 2000
	m := batchHistogram(b, "tx")
	var pb dto.Metric
	if err := m.Write(&pb); err != nil {
		t.Fatal(err)
	}
	h := pb.GetHistogram()
	if h.GetSampleCount() != 4 || h.GetSampleSum() != 2009 {
		t.Errorf("count %d, sum %v", h.GetSampleCount(), h.GetSampleSum())
	}
	want := map[float64]uint64{1: 2, 2: 2, 4: 2, 8: 3, 1024: 3}
	for _, bk := range h.GetBucket() {
		if w, ok := want[bk.GetUpperBound()]; ok && bk.GetCumulativeCount() != w {
			t.Errorf("bucket le=%v: %d, want %d", bk.GetUpperBound(), bk.GetCumulativeCount(), w)
		}
	}
}
