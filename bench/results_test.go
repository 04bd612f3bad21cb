package bench

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fixture is three modes over three rounds; weft lost its tcp4 figure in
// round 2 and recorded why.
func fixture() *Results {
	r := &Results{
		Settings: Settings{Rounds: 3, WorkloadSeconds: 2, Modes: []string{"underlay", "vxlan", "weft"}},
		Metrics:  Metrics,
	}
	mk := func(name string, rounds ...map[string]float64) ModeResult {
		m := ModeResult{Name: name}
		for i, v := range rounds {
			m.Rounds = append(m.Rounds, RoundResult{Round: i + 1, Values: v})
		}
		return m
	}
	r.Modes = []ModeResult{
		mk("underlay",
			map[string]float64{MTCP1: 10, MTCP4: 20, MUDPPPS: 200, MUDPLoss: 0, MRRP50: 20, MRRP99: 60, MSoftirq: 0.2, MCPU: 0.2},
			map[string]float64{MTCP1: 12, MTCP4: 22, MUDPPPS: 220, MUDPLoss: 1, MRRP50: 18, MRRP99: 50, MSoftirq: 0.3, MCPU: 0.3},
			map[string]float64{MTCP1: 8, MTCP4: 18, MUDPPPS: 180, MUDPLoss: 0.5, MRRP50: 22, MRRP99: 70, MSoftirq: 0.25, MCPU: 0.25}),
		mk("vxlan",
			map[string]float64{MTCP1: 5, MTCP4: 10, MUDPPPS: 100, MUDPLoss: 2, MRRP50: 25, MRRP99: 80, MSoftirq: 0.4, MCPU: 0.4},
			map[string]float64{MTCP1: 6, MTCP4: 11, MUDPPPS: 110, MUDPLoss: 3, MRRP50: 24, MRRP99: 75, MSoftirq: 0.5, MCPU: 0.5},
			map[string]float64{MTCP1: 4, MTCP4: 9, MUDPPPS: 90, MUDPLoss: 4, MRRP50: 26, MRRP99: 85, MSoftirq: 0.45, MCPU: 0.45}),
		mk("weft",
			map[string]float64{MTCP1: 5, MTCP4: 15, MUDPPPS: 150, MUDPLoss: 5, MRRP50: 40, MRRP99: 100, MDaemonCPU: 1, MSoftirq: 0.5, MCPU: 1.5},
			map[string]float64{MTCP1: 6, MUDPPPS: 160, MUDPLoss: 6, MRRP50: 42, MRRP99: 110, MDaemonCPU: 1.2, MSoftirq: 0.6, MCPU: 1.8},
			map[string]float64{MTCP1: 2, MTCP4: 12, MUDPPPS: 140, MUDPLoss: 7, MRRP50: 44, MRRP99: 120, MDaemonCPU: 1.1, MSoftirq: 0.55, MCPU: 1.65}),
	}
	r.Modes[2].Rounds[1].Errors = []string{"tcp-4: iperf3: the server is busy"}
	r.Summarize()
	return r
}

func TestSummarizeResults(t *testing.T) {
	r := fixture()
	weft := r.Mode("weft")
	tests := []struct {
		name string
		got  map[string]Stat
		key  string
		want Stat
		ok   bool
	}{
		{"median of 3", r.Mode("underlay").Summary, MTCP1, Stat{10, 8, 12, 3}, true},
		{"missing round skipped", weft.Summary, MTCP4, Stat{13.5, 12, 15, 2}, true},
		{"daemon only", r.Mode("vxlan").Summary, MDaemonCPU, Stat{}, false},
		// Per-round ratios: 5/10, 6/12, 2/8.
		{"vs underlay by round", weft.VsUnderlay, MTCP1, Stat{0.5, 0.25, 0.5, 3}, true},
		// 15/10 and 12/9 (round 2 has no weft tcp4).
		{"vs vxlan, two rounds", weft.VsVXLAN, MTCP4, Stat{(1.5 + 12.0/9) / 2, 12.0 / 9, 1.5, 2}, true},
		{"no ratio for loss", weft.VsUnderlay, MUDPLoss, Stat{}, false},
		{"no ratio for daemon CPU", weft.VsVXLAN, MDaemonCPU, Stat{}, false},
		{"reference to itself", r.Mode("vxlan").VsVXLAN, MRRP99, Stat{1, 1, 1, 3}, true},
	}
	for _, tt := range tests {
		got, ok := tt.got[tt.key]
		if ok != tt.ok || !statNear(got, tt.want) {
			t.Errorf("%s: %s = %+v, %v; want %+v, %v", tt.name, tt.key, got, ok, tt.want, tt.ok)
		}
	}
}

func statNear(a, b Stat) bool {
	near := func(x, y float64) bool { return math.Abs(x-y) < 1e-9 }
	return near(a.Median, b.Median) && near(a.Min, b.Min) && near(a.Max, b.Max) && a.N == b.N
}

// markdown is r's report, as WriteMarkdown writes it.
func markdown(t *testing.T, r *Results) string {
	t.Helper()
	var b bytes.Buffer
	if err := r.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestWriteMarkdown(t *testing.T) {
	out := markdown(t, fixture())
	for _, want := range []string{
		"Median of 3 round(s)",
		"| mode     | TCP 1 stream (Gbit/s) |",
		"| underlay | 10.0 (8.00–12.0)      |",
		"| weft     | 5.00 (2.00–6.00)      | 13.5 (12.0–15.0)       |",
		"Ratio to underlay",
		"Ratio to vxlan",
		"| weft     | 0.500×       |",
		"- weft round 2: tcp-4: iperf3: the server is busy",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	checkRowsEven(t, out)
}

func TestFormatNumber(t *testing.T) {
	tests := []struct {
		in   float64
		want string
	}{
		{0, "0"}, {1234.5, "1234"}, {99.94, "99.9"}, {9.414, "9.41"}, {0.01234, "0.0123"}, {0.3, "0.300"}, {0.999, "0.999"},
		{-2.5, "-2.50"}, {math.NaN(), "–"}, {math.Inf(1), "–"},
	}
	for _, tt := range tests {
		if got := FormatNumber(tt.in); got != tt.want {
			t.Errorf("FormatNumber(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestWriteJSON(t *testing.T) {
	path := filepath.Join(t.TempDir(), "results.json")
	if err := fixture().WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var back Results
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if got := back.Mode("weft").Summary[MTCP4].Median; got != 13.5 {
		t.Errorf("weft tcp4 median after round trip: %v", got)
	}
	if len(back.Metrics) != len(Metrics) || back.Settings.Rounds != 3 {
		t.Errorf("metrics or settings lost: %+v", back.Settings)
	}
}

func TestWriteJSONLevers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "results.json")
	if err := leverFixture().WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var back Results
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Levers) != 2 || back.Settings.UnderlayGSO != UnderlayGSOBoth {
		t.Fatalf("levers or setting lost: %+v, %q", back.Levers, back.Settings.UnderlayGSO)
	}
	off := back.Levers[1]
	last := off.Steps[len(off.Steps)-1]
	if off.UnderlayGSO != UnderlayGSOOff || last.Mode != "weft"+UnderlayGSOOffSuffix ||
		last.Gain == nil || last.Share == nil || off.Total == nil || off.Total.Median != 6 {
		t.Errorf("off chain after round trip: %+v, last step %+v", off, last)
	}
	for _, key := range []string{`"levers"`, `"adds"`, `"gain"`, `"share"`, `"underlay_gso": "both"`, `"sends_udp_gso": true`} {
		if !bytes.Contains(data, []byte(key)) {
			t.Errorf("results.json lacks %s", key)
		}
	}
}

func TestWriteJSONLatencyLevers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "results.json")
	if err := latencyFixture().WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var back Results
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Levers) != 2 || len(back.LatencyLevers) != 4 {
		t.Fatalf("%d TCP chains, %d latency chains", len(back.Levers), len(back.LatencyLevers))
	}
	if s := back.Levers[0].Steps[1]; s.TCP1 != s.Value || s.TCP1.N != 3 {
		t.Errorf("TCP step after round trip: %+v", s)
	}
	c := back.LatencyLevers[2]
	if c.Metric != MRRP99 || !c.LowerIsBetter || c.Steps[1].TCP1 != (Stat{}) || c.Total == nil || c.Total.Median != 4 {
		t.Errorf("latency chain after round trip: %+v", c)
	}
	// The TCP chains keep their fields; the latency chains have no TCP
	// figure.
	var raw struct {
		Levers        []map[string]any `json:"levers"`
		LatencyLevers []struct {
			Steps []map[string]any `json:"steps"`
		} `json:"latency_levers"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	step := raw.Levers[0]["steps"].([]any)[1].(map[string]any)
	for _, key := range []string{"mode", "adds", "tcp1_gbps", "value", "gain", "share"} {
		if _, ok := step[key]; !ok {
			t.Errorf("TCP step lacks %s: %v", key, step)
		}
	}
	if _, ok := raw.LatencyLevers[0].Steps[1]["tcp1_gbps"]; ok {
		t.Errorf("latency step has tcp1_gbps: %v", raw.LatencyLevers[0].Steps[1])
	}
}

// TestReadOldLevers reads a lever chain as results.json had it before
// chains of other figures than TCP 1 stream: no metric, no value.
func TestReadOldLevers(t *testing.T) {
	old := `{"settings": {"rounds": 2}, "levers": [{"steps": [
		{"mode": "weft-classic", "adds": "baseline", "tcp1_gbps": {"median": 0.5, "min": 0.4, "max": 0.6, "n": 2}},
		{"mode": "weft-batch", "adds": "batching", "tcp1_gbps": {"median": 1, "min": 0.9, "max": 1.1, "n": 2},
		 "gain": {"median": 2, "min": 1.8, "max": 2.2, "n": 2}, "share": 1}],
		"total": {"median": 2, "min": 1.8, "max": 2.2, "n": 2}}]}`
	var r Results
	if err := json.Unmarshal([]byte(old), &r); err != nil {
		t.Fatal(err)
	}
	out := markdown(t, &r)
	for _, want := range []string{
		"\nLever by lever (TCP 1 stream; ",
		"| weft-classic | baseline | 0.500 (0.400–0.600)   | –                 | –     |",
		"| weft-batch   | batching | 1.00 (0.900–1.10)     | 2.00× (1.80–2.20) | 100%  |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

// checkRowsEven fails t for a row of a markdown table with more or fewer
// cells than its header.
func checkRowsEven(t *testing.T, out string) {
	t.Helper()
	cells := 0
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(line, "| mode"):
			cells = strings.Count(line, "|")
		case strings.HasPrefix(line, "|") && strings.Count(line, "|") != cells:
			t.Errorf("ragged row: %q", line)
		}
	}
}
