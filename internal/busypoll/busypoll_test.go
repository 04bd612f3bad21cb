package busypoll

import (
	"testing"
	"time"
)

func TestWindow(t *testing.T) {
	tests := []struct {
		name    string
		w       *Window
		traffic bool
		want    bool
	}{
		{"nil window", nil, true, false},
		{"zero window", &Window{}, true, false},
		{"negative window", New(-time.Second), true, false},
		{"no traffic yet", New(time.Hour), false, false},
		{"traffic within the window", New(time.Hour), true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.traffic {
				tt.w.Traffic()
			}
			if got := tt.w.Again(); got != tt.want {
				t.Errorf("Again() = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestWindowCloses checks that polling stops once the window has passed
// with no traffic, and starts again with the next.
func TestWindowCloses(t *testing.T) {
	w := New(time.Microsecond)
	w.Traffic()
	time.Sleep(2 * time.Millisecond)
	if w.Again() {
		t.Fatal("Again() = true a thousand windows after the last traffic")
	}
	w.d = time.Hour
	w.Traffic()
	if !w.Again() {
		t.Fatal("Again() = false right after traffic")
	}
}

func TestWindowAllocs(t *testing.T) {
	w := New(time.Millisecond)
	if n := testing.AllocsPerRun(100, func() { w.Traffic(); w.Again() }); n != 0 {
		t.Errorf("%v allocations per Traffic and Again, want 0", n)
	}
}
