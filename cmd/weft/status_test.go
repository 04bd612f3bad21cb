package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/weft-dev/weft/control"
)

func TestRatesAndStatus(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	a := &control.Status{Time: t0, Started: t0.Add(-time.Hour), Mode: "static",
		Counters: control.Counters{TxPackets: 100, TxBytes: 1000, Drops: map[string]uint64{"no-route": 1}}}
	b := *a
	b.Time = t0.Add(2 * time.Second)
	b.Counters = control.Counters{TxPackets: 300, TxBytes: 251000, RxPackets: 10, Drops: map[string]uint64{"no-route": 5}}
	r := ratesBetween(a, &b)
	if r.IntervalSeconds != 2 || r.TxPackets != 100 || r.TxBits != 1e6 || r.RxPackets != 5 || r.Drops != 2 {
		t.Errorf("rates %+v", r)
	}
	var out bytes.Buffer
	printStatus(&out, &b, r, b.Time)
	for _, want := range []string{"static mode, forwarding for 1h0m2s", "lease      none: static mode", "1.0 Mbit/s", "no-route  5"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status output lacks %q:\n%s", want, out.String())
		}
	}
	// A daemon restarted between the two questions gives no negative rates.
	if r := ratesBetween(&b, a); r != nil {
		t.Errorf("rates over a negative interval: %+v", r)
	}
}

func TestUnits(t *testing.T) {
	for n, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536 << 20: "1.5 GiB"} {
		if got := bytesIEC(n); got != want {
			t.Errorf("bytesIEC(%d) = %q, want %q", n, got, want)
		}
	}
	for b, want := range map[float64]string{0: "0 bit/s", 999: "999 bit/s", 1500: "1.5 kbit/s", 9.41e9: "9.4 Gbit/s"} {
		if got := bitsSI(b); got != want {
			t.Errorf("bitsSI(%v) = %q, want %q", b, got, want)
		}
	}
}

func TestVersionCommand(t *testing.T) {
	var stderr strings.Builder
	if code := run([]string{"version"}, &stderr); code != 0 {
		t.Errorf("weft version: exit %d, %s", code, stderr.String())
	}
	if code := run([]string{"version", "extra"}, &stderr); code != 2 {
		t.Errorf("weft version extra: exit %d, want 2", code)
	}
}
