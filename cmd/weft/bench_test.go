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

func TestBenchHelp(t *testing.T) {
	_, err := parseBenchFlags([]string{"--help"})
	if !errors.Is(err, flag.ErrHelp) {
		t.Errorf("--help: %v", err)
	}
}

// needRoot skips a test that needs root, except under CI, where a skipped
// end-to-end test would hide that it never ran.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("needs root (network namespaces); CI=true, so not skipping")
	}
	t.Skip("needs root (network namespaces): run as root, e.g. sudo go test ./cmd/weft/")
}

// TestBenchEndToEnd is issue 4's end-to-end test: `weft bench --quick
// --modes underlay,weft` with a weftd built from this tree, and every figure
// of the results present and non-zero.
func TestBenchEndToEnd(t *testing.T) {
	needRoot(t)
	if err := bench.CheckTools(); err != nil {
		t.Fatal(err)
	}
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
	for _, f := range []string{"throughput.svg", "throughput.png"} {
		if fi, err := os.Stat(filepath.Join(out, f)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
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
