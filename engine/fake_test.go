package engine

import (
	"testing"
	"time"

	"github.com/weft-dev/weft/tun"
	"github.com/weft-dev/weft/tun/tuntest"
)

// newFakeDevice is a TUN queue of batch packets per read, plain.
func newFakeDevice(batch int) *tuntest.Device { return tuntest.NewDevice(tun.Caps{Batch: batch}) }

// newTestEngine returns an engine for h1 (subnet 100.96.1.0/24) routing to
// h2 and h3.
func newTestEngine(tb testing.TB, batch int) *Engine {
	tb.Helper()
	e, err := New(Config{Subnet: localSubnet, BatchSize: batch, MaxPacket: 1500})
	if err != nil {
		tb.Fatal(err)
	}
	t, err := NewTable(testRoutes())
	if err != nil {
		tb.Fatal(err)
	}
	e.SetRoutes(t)
	return e
}

// checkDrops fails tb unless the drop counters are exactly want.
func checkDrops(tb testing.TB, s Stats, want map[Drop]uint64) {
	tb.Helper()
	for d := range numDrops {
		if s.Drops[d] != want[d] {
			tb.Errorf("drops[%v] = %d, want %d", d, s.Drops[d], want[d])
		}
	}
}

// eventually polls cond until it holds or a generous deadline passes: the
// deadline only stops a test that would otherwise hang, it measures nothing.
func eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
