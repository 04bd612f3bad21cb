package bench

import (
	"math"
	"slices"
	"testing"
)

func TestSummarize(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	tests := []struct {
		in     []float64
		want   Stat
		wantOK bool
	}{
		{nil, Stat{}, false},
		{[]float64{nan, inf}, Stat{}, false},
		{[]float64{5}, Stat{5, 5, 5, 1}, true},
		{[]float64{3, 1, 2}, Stat{2, 1, 3, 3}, true},
		{[]float64{4, 1, 3, 2}, Stat{2.5, 1, 4, 4}, true},
		{[]float64{nan, 7, 1}, Stat{4, 1, 7, 2}, true},
	}
	for _, tt := range tests {
		got, ok := Summarize(tt.in)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("Summarize(%v) = %+v, %v; want %+v, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestPercentile(t *testing.T) {
	hundred := make([]float64, 100)
	for i := range hundred {
		hundred[i] = float64(i + 1)
	}
	tests := []struct {
		in   []float64
		p    float64
		want float64
	}{
		{hundred, 50, 50},
		{hundred, 99, 99},
		{hundred, 100, 100},
		{hundred, 0.1, 1},
		{[]float64{10, 20, 30}, 50, 20},
		{[]float64{10, 20, 30}, 99, 30},
		{[]float64{42}, 99, 42},
	}
	for _, tt := range tests {
		if got := Percentile(tt.in, tt.p); got != tt.want {
			t.Errorf("Percentile(%d values, %v) = %v, want %v", len(tt.in), tt.p, got, tt.want)
		}
	}
	if !math.IsNaN(Percentile(nil, 50)) {
		t.Error("Percentile of nothing is not NaN")
	}
}

func TestRoundRatios(t *testing.T) {
	nan := math.NaN()
	tests := []struct {
		vals, ref, want []float64
	}{
		{[]float64{2, 4, 6}, []float64{1, 2, 3}, []float64{2, 2, 2}},
		// A round missing on either side, or a zero reference, is skipped.
		{[]float64{2, nan, 6}, []float64{1, 2, 0}, []float64{2}},
		{[]float64{1, 2}, []float64{4}, []float64{0.25}},
		{nil, []float64{1}, nil},
	}
	for _, tt := range tests {
		if got := RoundRatios(tt.vals, tt.ref); !slices.Equal(got, tt.want) {
			t.Errorf("RoundRatios(%v, %v) = %v, want %v", tt.vals, tt.ref, got, tt.want)
		}
	}
}
