package bench

import "testing"

func TestParseProcPIDStat(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    uint64
		wantErr bool
	}{
		{"weftd", "4242 (weftd) S 1 4242 4242 0 -1 4194560 1510 0 0 0 250 117 0 0 20 0 4 0 9000 1 2 3", 367, false},
		// A name may hold spaces and parentheses; fields count from the last ')'.
		{"odd name", "7 (a) b) c) R 1 7 7 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 1 1 1", 7, false},
		{"no name", "7 a R 1", 0, true},
		{"short", "7 (x) R 1 2 3", 0, true},
		{"not a number", "7 (x) R 1 7 7 0 -1 0 0 0 0 0 x 4 0", 0, true},
	}
	for _, tt := range tests {
		got, err := parseProcPIDStat([]byte(tt.in))
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("%s: got %d, %v; want %d, error %v", tt.name, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParseProcStatSoftirq(t *testing.T) {
	tests := []struct {
		in      string
		want    uint64
		wantErr bool
	}{
		{"cpu  5005 12 2003 900000 55 0 1234 0 0 0\ncpu0 1 2 3 4 5 6 7 0 0 0\n", 1234, false},
		{"cpu0 1 2 3 4 5 6 7\n", 0, true},
		{"cpu 1 2 3\n", 0, true},
		{"", 0, true},
	}
	for _, tt := range tests {
		got, err := parseProcStatSoftirq([]byte(tt.in))
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("%q: got %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestCPUCost(t *testing.T) {
	tests := []struct {
		ticks uint64
		bytes int64
		want  float64
	}{
		{100, 1e9, 1},   // 1 s for 1 GB
		{50, 2e9, 0.25}, // 0.5 s for 2 GB
		{0, 1e9, 0},     // nothing used
		{100, 0, 0},     // nothing moved: no figure rather than infinity
	}
	for _, tt := range tests {
		if got := cpuCost(tt.ticks, tt.bytes); got != tt.want {
			t.Errorf("cpuCost(%d, %d) = %v, want %v", tt.ticks, tt.bytes, got, tt.want)
		}
	}
}
