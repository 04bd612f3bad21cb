package bench

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var plotOut = flag.String("plot-out", "", "`DIR` to keep the test plots in, for looking at them")

func TestPlots(t *testing.T) {
	dir := t.TempDir()
	if *plotOut != "" {
		dir = *plotOut
	}
	// missing is fixture with figures lost: weft's echo failed in every
	// round, vxlan's p99 and TCP 4 streams in one.
	missing := func() *Results {
		r := fixture()
		for i := range r.Mode("weft").Rounds {
			delete(r.Mode("weft").Rounds[i].Values, MRRP50)
			delete(r.Mode("weft").Rounds[i].Values, MRRP99)
			delete(r.Mode("weft").Rounds[i].Values, MTCP1)
		}
		delete(r.Mode("vxlan").Rounds[1].Values, MRRP99)
		delete(r.Mode("vxlan").Rounds[1].Values, MTCP4)
		r.Summarize()
		return r
	}
	// outlier is fixture with one round of weft's p99 a hundred times
	// the others: its spread is cut at the axis and labelled.
	outlier := func() *Results {
		r := fixture()
		r.Mode("weft").Rounds[0].Values[MRRP99] *= 100
		r.Summarize()
		return r
	}
	plots := []struct {
		name string
		plot func(r *Results, dir, base string) ([]string, error)
	}{
		{"throughput", (*Results).PlotThroughput},
		{"latency", (*Results).PlotLatency},
	}
	gso := leverFixture()
	tests := []struct {
		name string
		res  *Results
		// na is how many bars of each plot have no figure and are marked
		// so; cut, how many spreads are cut at the top of the axis.
		na, cut map[string]int
	}{
		{"complete", fixture(), nil, nil}, // weft lost TCP 4 streams in one round only: no mark
		{"missing", missing(), map[string]int{"throughput": 1, "latency": 2}, nil},
		{"outlier", outlier(), nil, map[string]int{"latency": 1}},
		// Rows of both underlay settings, with only TCP 1 stream measured:
		// the long names go on two lines, and every other bar is missing.
		{"gso", gso, map[string]int{"throughput": len(gso.Modes), "latency": 2 * len(gso.Modes)}, nil},
	}
	magic := map[string]string{".svg": "<?xml", ".png": "\x89PNG"}
	for _, tt := range tests {
		for _, p := range plots {
			base := p.name + "-" + tt.name
			files, err := p.plot(tt.res, dir, base)
			if err != nil {
				t.Errorf("%s: %v", base, err)
				continue
			}
			want := []string{filepath.Join(dir, base+".svg"), filepath.Join(dir, base+".png")}
			if !slices.Equal(files, want) {
				t.Errorf("%s: files %v, want %v", base, files, want)
			}
			for _, f := range files {
				data, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				if m := magic[filepath.Ext(f)]; !bytes.HasPrefix(data, []byte(m)) || len(data) < 1000 {
					t.Errorf("%s: %d bytes, does not start with %q", f, len(data), m)
				}
				if filepath.Ext(f) == ".svg" {
					if n := strings.Count(string(data), ">n/a<"); n != tt.na[p.name] {
						t.Errorf("%s: %d bars marked n/a, want %d", f, n, tt.na[p.name])
					}
					if n := strings.Count(string(data), ">max "); n != tt.cut[p.name] {
						t.Errorf("%s: %d spreads cut, want %d", f, n, tt.cut[p.name])
					}
				}
			}
		}
	}
	for _, p := range plots {
		if _, err := p.plot(&Results{}, dir, "empty"); err == nil {
			t.Errorf("%s plot of no modes: no error", p.name)
		}
	}
}

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
