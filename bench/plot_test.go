package bench

import (
	"slices"
	"testing"
)

func TestLinearTicks(t *testing.T) {
	tests := []struct {
		lo, hi float64
		want   []string
	}{
		{0, 11, []string{"0", "2", "4", "6", "8", "10"}},
		{0, 27.5, []string{"0", "5", "10", "15", "20", "25"}},
		{0, 1.25, []string{"0.0", "0.5", "1.0"}},
		{0, 0.6, []string{"0.0", "0.1", "0.2", "0.3", "0.4", "0.5", "0.6"}},
		{1, 1, nil},
	}
	for _, tt := range tests {
		var got []string
		for _, tk := range linearTicks(tt.lo, tt.hi) {
			got = append(got, tk.Label)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("linearTicks(%v, %v) = %q, want %q", tt.lo, tt.hi, got, tt.want)
		}
	}
}
