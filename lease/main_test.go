package lease

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMain fails the run if any goroutine of this package (a watcher, a
// prober, Keep, a test helper) outlives the tests: every one must end when
// its ctx ends.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if left := lingering(5 * time.Second); left != "" {
			fmt.Fprintf(os.Stderr, "goroutines still running after the tests:\n\n%s\n", left)
			code = 1
		}
	}
	os.Exit(code)
}

// lingering waits up to wait for this package's goroutines to end (they stop
// soon after their ctx is cancelled) and returns the stacks of any left.
func lingering(wait time.Duration) string {
	deadline := time.Now().Add(wait)
	for {
		buf := make([]byte, 4<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var left []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "weft/lease.") && !strings.Contains(g, "lease.TestMain") {
				left = append(left, g)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return strings.Join(left, "\n\n")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
