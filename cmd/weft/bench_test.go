package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weft-dev/weft/bench"
	"github.com/weft-dev/weft/internal/roottest"
)

func TestParseBenchFlags(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		rounds   int
		workload time.Duration
		modes    []string
		wantErr  error
	}{
		{"defaults", nil, 3, 8 * time.Second, nil, nil},
		{"quick", []string{"--quick"}, 2, 2 * time.Second, nil, nil},
		{"quick with rounds", []string{"--quick", "--rounds", "1"}, 1, 2 * time.Second, nil, nil},
		{"explicit", []string{"--rounds", "5", "--workload", "3s", "--modes", "underlay, weft,"}, 5, 3 * time.Second,
			[]string{"underlay", "weft"}, nil},
		{"both underlay settings", []string{"--underlay-gso", "both"}, 3, 6 * time.Second, nil, nil},
		{"both, quick", []string{"--underlay-gso", "both", "--quick"}, 2, 2 * time.Second, nil, nil},
		{"both, explicit workload", []string{"--underlay-gso", "both", "--workload", "8s"}, 3, 8 * time.Second, nil, nil},
		{"underlay GSO off", []string{"--underlay-gso", "off"}, 3, 8 * time.Second, nil, nil},
		{"stray argument", []string{"underlay"}, 0, 0, nil, errUsage},
		{"bad flag", []string{"--roundz", "2"}, 0, 0, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := parseBenchFlags(tt.args)
			if tt.name == "bad flag" {
				if err == nil {
					t.Fatal("no error")
				}
				return
			}
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("error %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if f.rounds != tt.rounds || f.workload != tt.workload || !slices.Equal(f.modeList(), tt.modes) {
				t.Errorf("got rounds %d, workload %v, modes %q", f.rounds, f.workload, f.modeList())
			}
		})
	}
}

func TestParseBenchUnderlayGSO(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
		ok   bool
	}{
		{nil, "on", true},
		{[]string{"--underlay-gso", "off"}, "off", true},
		{[]string{"--underlay-gso=both", "--quick"}, "both", true},
		{[]string{"--underlay-gso", "auto"}, "", false},
	} {
		f, err := parseBenchFlags(tt.args)
		if !tt.ok {
			if !errors.Is(err, errUsage) {
				t.Errorf("%q: error %v, want a usage error", tt.args, err)
			}
			continue
		}
		if err != nil || f.underlayGSO != tt.want {
			t.Errorf("%q: %v, %v; want %s", tt.args, f, err, tt.want)
		}
	}
}

func TestBenchHelp(t *testing.T) {
	_, err := parseBenchFlags([]string{"--help"})
	if !errors.Is(err, flag.ErrHelp) {
		t.Errorf("--help: %v", err)
	}
}

// TestBenchEndToEnd runs the benchmark end to end: `weft bench --quick
// --modes underlay,weft` with a weftd built from this tree, and every figure
// of the results present and non-zero.
func TestBenchEndToEnd(t *testing.T) {
	roottest.NeedRoot(t, bench.HarnessTools...)
	weftd := buildWeftd(t)
	out := t.TempDir()
	prefix := fmt.Sprintf("wt%de", os.Getpid())
	err := runBench(globals{}, []string{"--quick", "--modes", "underlay,weft",
		"--weftd", weftd, "--out", out, "--prefix", prefix})
	if err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob("/run/netns/" + prefix + "-*"); len(left) > 0 {
		t.Errorf("namespaces left behind: %v", left)
	}

	data, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var res bench.Results
	if err := json.Unmarshal(data, &res); err != nil {
		t.Fatal(err)
	}
	if got := res.Settings.Modes; !slices.Equal(got, []string{"underlay", "weft"}) {
		t.Fatalf("modes %v", got)
	}
	for _, m := range res.Modes {
		if len(m.Rounds) != res.Settings.Rounds {
			t.Errorf("%s: %d rounds, want %d", m.Name, len(m.Rounds), res.Settings.Rounds)
		}
		for _, met := range bench.Metrics {
			if met.DaemonOnly && m.Name == "underlay" {
				continue // no daemon to measure
			}
			s, ok := m.Summary[met.Key]
			switch {
			case !ok:
				t.Errorf("%s: %s missing", m.Name, met.Key)
			case s.Median == 0 && !met.MayBeZero:
				t.Errorf("%s: %s is zero", m.Name, met.Key)
			}
			if !met.NoRatio {
				if r, ok := m.VsUnderlay[met.Key]; !ok || r.Median == 0 {
					t.Errorf("%s: ratio to underlay of %s missing or zero", m.Name, met.Key)
				}
			}
		}
	}
	for _, f := range []string{"throughput.svg", "throughput.png", "latency.svg", "latency.png"} {
		if fi, err := os.Stat(filepath.Join(out, f)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// TestBenchUnderlayGSOEndToEnd checks the underlay-GSO comparison: one quick round of
// weft-classic and weft with --underlay-gso both gives three rows (weft
// twice, its underlay's UDP segmentation off in the second), each with its
// TCP figures, and the two lever-by-lever chains of TCP and the four of
// latency; the veths are left as created, since the namespaces are gone.
func TestBenchUnderlayGSOEndToEnd(t *testing.T) {
	roottest.NeedRoot(t, bench.ToolsFor(bench.UnderlayGSOBoth)...)
	weftd := buildWeftd(t)
	out := t.TempDir()
	prefix := fmt.Sprintf("wt%dg", os.Getpid())
	err := runBench(globals{}, []string{"--quick", "--rounds", "1", "--modes", "weft-classic,weft", "--underlay-gso", "both",
		"--weftd", weftd, "--out", out, "--prefix", prefix})
	if err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob("/run/netns/" + prefix + "-*"); len(left) > 0 {
		t.Errorf("namespaces left behind: %v", left)
	}
	data, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var res bench.Results
	if err := json.Unmarshal(data, &res); err != nil {
		t.Fatal(err)
	}
	twin := "weft" + bench.UnderlayGSOOffSuffix
	if got := res.Settings.Modes; !slices.Equal(got, []string{"weft-classic", "weft", twin}) {
		t.Fatalf("rows %v", got)
	}
	for _, m := range res.Modes {
		want := bench.UnderlayGSOOn
		if m.Name == twin {
			want = bench.UnderlayGSOOff
		}
		if m.UnderlayGSO != want {
			t.Errorf("%s: underlay GSO %q, want %q", m.Name, m.UnderlayGSO, want)
		}
		for _, key := range []string{bench.MTCP1, bench.MTCP4, bench.MUDPPPS} {
			if s, ok := m.Summary[key]; !ok || s.Median == 0 {
				t.Errorf("%s: %s missing or zero", m.Name, key)
			}
		}
	}
	if len(res.Levers) != 2 || res.Levers[1].Steps[1].Mode != twin || res.Levers[1].Steps[1].Gain == nil {
		t.Errorf("levers %+v", res.Levers)
	}
	// RR p50 and p99, each through both settings' rows.
	if len(res.LatencyLevers) != 4 || res.LatencyLevers[1].Steps[1].Mode != twin || res.LatencyLevers[3].Steps[1].Gain == nil {
		t.Errorf("latency levers %+v", res.LatencyLevers)
	}
}

// buildWeftd builds ./cmd/weftd of this module into a temporary directory.
func buildWeftd(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	bin := filepath.Join(t.TempDir(), "weftd")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/weftd")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building weftd: %v\n%s", err, out)
	}
	return bin
}
