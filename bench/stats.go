package bench

import (
	"math"
	"slices"
)

// Stat summarizes one figure over the rounds: the median is what the tables
// quote, min and max show the spread that a single run would hide.
type Stat struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	N      int     `json:"n"`
}

// Summarize returns the median, min and max of vs; NaN and infinite values
// are left out. ok is false when nothing is left.
func Summarize(vs []float64) (s Stat, ok bool) {
	clean := make([]float64, 0, len(vs))
	for _, v := range vs {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			clean = append(clean, v)
		}
	}
	if len(clean) == 0 {
		return Stat{}, false
	}
	slices.Sort(clean)
	n := len(clean)
	med := clean[n/2]
	if n%2 == 0 {
		med = (clean[n/2-1] + clean[n/2]) / 2
	}
	return Stat{Median: med, Min: clean[0], Max: clean[n-1], N: n}, true
}

// Percentile returns the p-th percentile (0 < p <= 100) of sorted by the
// nearest-rank method: the smallest value with at least p% of the samples at
// or below it. It is what latency tables conventionally mean by p99.
func Percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// RoundRatios divides each round's value by the reference's value from the
// same round. Pairing by round, rather than dividing medians, cancels what a
// round shares (another job on the machine, a slow start) from the ratio.
// Rounds where either value is missing or the reference is zero are skipped.
func RoundRatios(vals, ref []float64) []float64 {
	var out []float64
	for i := range min(len(vals), len(ref)) {
		v, r := vals[i], ref[i]
		if math.IsNaN(v) || math.IsNaN(r) || r == 0 {
			continue
		}
		out = append(out, v/r)
	}
	return out
}
