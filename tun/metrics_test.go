package tun

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestMetrics: the kernel's drop count is exported for a device that
// exists (lo is in every network namespace) and absent for one that does
// not, rather than read as 0.
func TestMetrics(t *testing.T) {
	for _, tc := range []struct {
		dev    string
		series int
	}{
		{"lo", 1},
		{"weft-none", 0},
	} {
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(Metrics(tc.dev))
		fams, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, f := range fams {
			if f.GetName() != "weft_tun_kernel_dropped_total" {
				t.Errorf("unexpected family %s", f.GetName())
			}
			n += len(f.GetMetric())
		}
		if n != tc.series {
			t.Errorf("device %s: %d series, want %d", tc.dev, n, tc.series)
		}
	}
}
