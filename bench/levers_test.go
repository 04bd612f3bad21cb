package bench

import (
	"math"
	"slices"
	"strings"
	"testing"
)

// leverFixture is a run with --underlay-gso both over three rounds: the
// modes of LeverSteps and OptionalLevers, the offload ones twice, and vxlan
// as a reference. Only TCP 1 stream matters here.
func leverFixture() *Results {
	r := &Results{Settings: Settings{Rounds: 3, UnderlayGSO: UnderlayGSOBoth}, Metrics: Metrics}
	mk := func(name string, gso bool, tcp1 ...float64) ModeResult {
		m := ModeResult{Name: name, SendsUDPGSO: gso}
		for i, v := range tcp1 {
			m.Rounds = append(m.Rounds, RoundResult{Round: i + 1, Values: map[string]float64{MTCP1: v}})
		}
		return m
	}
	r.Modes = []ModeResult{
		mk("vxlan", false, 10, 10, 10),
		mk("weft-classic", false, 0.5, 0.4, 0.5),
		mk("weft-batch", false, 1, 1, 0.9),
		mk("weft-offload", true, 4, 3, 3.6),
		mk("weft-offload"+UnderlayGSOOffSuffix, true, 2, 2, 1.8),
		mk("weft", true, 6, 4.5, 4.5),
		mk("weft"+UnderlayGSOOffSuffix, true, 3, 2.8, 2.7),
		mk("weft-busy-poll", true, 6.6, 4.5, 3.6),
		mk("weft-busy-poll"+UnderlayGSOOffSuffix, true, 3.3, 2.8, 2.7),
	}
	r.Summarize()
	return r
}

func TestLeverChains(t *testing.T) {
	r := leverFixture()
	if len(r.Levers) != 2 {
		t.Fatalf("%d chains, want 2: %+v", len(r.Levers), r.Levers)
	}
	tests := []struct {
		chain int
		modes []string
		// per-round ratios to the step above, medians
		gains []float64
		total float64
	}{
		// batch/classic: 2, 2.5, 1.8; offload/batch: 4, 3, 4;
		// weft/offload: 1.5, 1.5, 1.25. weft/classic: 12, 11.25, 9.
		{0, []string{"weft-classic", "weft-batch", "weft-offload", "weft"}, []float64{2, 4, 1.5}, 11.25},
		// The off chain goes through classic and batch, which ran once:
		// offload off/batch: 2, 2, 2; weft off/offload off: 1.5, 1.4, 1.5.
		// weft off/classic: 6, 7, 5.4.
		{1, []string{"weft-classic", "weft-batch", "weft-offload" + UnderlayGSOOffSuffix, "weft" + UnderlayGSOOffSuffix},
			[]float64{2, 2, 1.5}, 6},
	}
	for _, tt := range tests {
		c := r.Levers[tt.chain]
		if len(c.Steps) != len(tt.modes) {
			t.Fatalf("chain %d: steps %+v", tt.chain, c.Steps)
		}
		shares := 0.0
		for i, s := range c.Steps {
			if s.Mode != tt.modes[i] || s.Adds != LeverSteps[i].Adds {
				t.Errorf("chain %d step %d: %s adding %q", tt.chain, i, s.Mode, s.Adds)
			}
			if i == 0 {
				if s.Gain != nil || s.Share != nil {
					t.Errorf("chain %d: first step has a gain or share", tt.chain)
				}
				continue
			}
			if s.Gain == nil || math.Abs(s.Gain.Median-tt.gains[i-1]) > 1e-9 || s.Gain.N != 3 {
				t.Errorf("chain %d step %s: gain %+v, want median %v", tt.chain, s.Mode, s.Gain, tt.gains[i-1])
			}
			if s.Share == nil {
				t.Fatalf("chain %d step %s: no share", tt.chain, s.Mode)
			}
			want := math.Log(tt.gains[i-1])
			sum := 0.0
			for _, g := range tt.gains {
				sum += math.Log(g)
			}
			if math.Abs(*s.Share-want/sum) > 1e-9 {
				t.Errorf("chain %d step %s: share %v, want %v", tt.chain, s.Mode, *s.Share, want/sum)
			}
			shares += *s.Share
		}
		if math.Abs(shares-1) > 1e-9 {
			t.Errorf("chain %d: shares add up to %v", tt.chain, shares)
		}
		if c.Total == nil || math.Abs(c.Total.Median-tt.total) > 1e-9 {
			t.Errorf("chain %d: total %+v, want %v", tt.chain, c.Total, tt.total)
		}
	}
	if r.Levers[0].UnderlayGSO != "" || r.Levers[1].UnderlayGSO != UnderlayGSOOff {
		t.Errorf("chain labels %q, %q", r.Levers[0].UnderlayGSO, r.Levers[1].UnderlayGSO)
	}
}

func TestLeverChainsPartial(t *testing.T) {
	base := func() *Results {
		r := leverFixture()
		r.Settings.UnderlayGSO = UnderlayGSOOn
		return r
	}
	keep := func(r *Results, names ...string) {
		var ms []ModeResult
		for _, n := range names {
			ms = append(ms, *r.Mode(n))
		}
		r.Modes = ms
		r.Summarize()
	}

	// weft-batch missing: weft-offload's row adds both levers, and its
	// gain is over weft-classic (8, 7.5, 7.2); the next row adds its own.
	r := base()
	keep(r, "weft-classic", "weft-offload", "weft")
	if len(r.Levers) != 1 {
		t.Fatalf("chains %+v", r.Levers)
	}
	s := r.Levers[0].Steps[1]
	if s.Mode != "weft-offload" || s.Adds != "levers of weft-batch + weft-offload" || s.Gain.Median != 7.5 {
		t.Errorf("step after a missing one: %+v, gain %+v", s, s.Gain)
	}
	if s := r.Levers[0].Steps[2]; s.Mode != "weft" || s.Adds != LeverSteps[3].Adds {
		t.Errorf("step after that: %+v", s)
	}

	// The first present step is the baseline, with its own lever only.
	r = base()
	keep(r, "weft-batch", "weft")
	if s := r.Levers[0].Steps[0]; s.Mode != "weft-batch" || s.Adds != LeverSteps[1].Adds {
		t.Errorf("first step %+v", s)
	}
	// Two steps: the total would repeat the second row, so the report
	// leaves it out.
	if out := markdown(t, r); !strings.Contains(out, "| weft       | levers of weft-offload + weft ") || strings.Contains(out, "all of the above") {
		t.Errorf("two-step table:\n%s", out)
	}

	// One step, or a failed mode, is no chain; no twins, no off chain.
	r = base()
	keep(r, "vxlan", "weft")
	if len(r.Levers) != 0 {
		t.Errorf("one step made a chain: %+v", r.Levers)
	}
	r = base()
	keep(r, "weft-classic", "weft")
	r.Modes[1].Rounds = nil // weft failed in every round
	r.Summarize()
	if len(r.Levers) != 0 {
		t.Errorf("a mode without TCP figures made a chain: %+v", r.Levers)
	}

	// An off chain never borrows the on row of a mode that sends UDP GSO.
	r = base()
	keep(r, "weft-classic", "weft-offload", "weft"+UnderlayGSOOffSuffix)
	if len(r.Levers) != 2 {
		t.Fatalf("chains %+v", r.Levers)
	}
	var got []string
	for _, s := range r.Levers[1].Steps {
		got = append(got, s.Mode)
	}
	if strings.Join(got, ",") != "weft-classic,weft"+UnderlayGSOOffSuffix {
		t.Errorf("off chain %q", got)
	}

	// No shares when the chain gains next to nothing overall.
	r = base()
	keep(r, "weft-classic", "weft-batch")
	for i := range r.Modes[1].Rounds {
		r.Modes[1].Rounds[i].Values[MTCP1] = r.Modes[0].Rounds[i].Values[MTCP1] * 1.05
	}
	r.Summarize()
	if sh := r.Levers[0].Steps[1].Share; sh != nil {
		t.Errorf("share %v of a 1.05x chain", *sh)
	}
}

func TestWriteMarkdownLevers(t *testing.T) {
	r := leverFixture()
	r.Modes[2].About = "weftd --offload off: batched"
	out := markdown(t, r)
	for _, want := range []string{
		`Rows marked "(underlay-gso off)" ran with the underlay's UDP segmentation off`,
		"- `weft-batch`: weftd --offload off: batched\n",
		"\nLever by lever (TCP 1 stream;",
		"\nLever by lever, underlay UDP segmentation off (TCP 1 stream;",
		"| mode                | adds ",
		"| weft-classic        | " + LeverSteps[0].Adds,
		"| 0.500 (0.400–0.500)   | –                 | –     |",
		"| 2.00× (1.80–2.50) |",
		"| weft-classic → weft | all of the above",
		"| 11.2× (9.00–12.0) | 100%  |",
		"| weft (underlay-gso off)                | ",
		"| weft-classic → weft (underlay-gso off) | all of the above",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	// Shares: log 2, log 4, log 1.5 of log 12.
	for _, want := range []string{"| 28%   |", "| 56%   |", "| 16%   |"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks share %q:\n%s", want, out)
		}
	}
}

// latencyFixture is leverFixture with RR p50 and p99 in every round, in µs.
func latencyFixture() *Results {
	r := leverFixture()
	off := UnderlayGSOOffSuffix
	rr := map[string][2][]float64{ // mode: p50 and p99 by round
		"vxlan":                {{20, 20, 20}, {60, 60, 60}},
		"weft-classic":         {{160, 150, 140}, {400, 400, 400}},
		"weft-batch":           {{80, 100, 70}, {200, 400, 400}},
		"weft-offload":         {{100, 100, 70}, {100, 200, 400}},
		"weft-offload" + off:   {{40, 50, 35}, {200, 400, 400}},
		"weft":                 {{40, 50, 35}, {50, 100, 400}},
		"weft" + off:           {{20, 25, 35}, {100, 200, 200}},
		"weft-busy-poll":       {{30, 50, 35}, {50, 50, 200}},
		"weft-busy-poll" + off: {{20, 25, 35}, {50, 100, 200}},
	}
	for i := range r.Modes {
		m := &r.Modes[i]
		for j := range m.Rounds {
			m.Rounds[j].Values[MRRP50] = rr[m.Name][0][j]
			m.Rounds[j].Values[MRRP99] = rr[m.Name][1][j]
		}
	}
	r.Summarize()
	return r
}

func TestLatencyLeverChains(t *testing.T) {
	r := latencyFixture()
	// The TCP chains are those of leverFixture, unchanged.
	if len(r.Levers) != 2 || r.Levers[0].Total.Median != 11.25 || r.Levers[0].Metric != MTCP1 || r.Levers[0].LowerIsBetter {
		t.Fatalf("TCP chains %+v", r.Levers)
	}
	if len(r.LatencyLevers) != 4 {
		t.Fatalf("%d latency chains, want 4: %+v", len(r.LatencyLevers), r.LatencyLevers)
	}
	on := []string{"weft-classic", "weft-batch", "weft-offload", "weft"}
	off := []string{"weft-classic", "weft-batch", "weft-offload" + UnderlayGSOOffSuffix, "weft" + UnderlayGSOOffSuffix}
	tests := []struct {
		chain  int
		metric string
		gso    string
		modes  []string
		// medians of the per-round ratios of the step above's latency to
		// the step's, then their min and max
		gains    []float64
		min, max []float64
		total    float64
	}{
		// batch: 160/80, 150/100, 140/70; offload: 0.8, 1, 1; weft: 2.5,
		// 2, 2. classic/weft: 4, 3, 4.
		{0, MRRP50, "", on, []float64{2, 1, 2}, []float64{1.5, 0.8, 2}, []float64{2, 1, 2.5}, 4},
		// offload off/batch: 2, 2, 2; weft off: 2, 2, 1. classic/weft
		// off: 8, 6, 4.
		{1, MRRP50, UnderlayGSOOff, off, []float64{2, 2, 2}, []float64{1.5, 2, 1}, []float64{2, 2, 2}, 6},
		// batch: 2, 1, 1; offload: 2, 2, 1; weft: 2, 2, 1. classic/weft:
		// 8, 4, 1.
		{2, MRRP99, "", on, []float64{1, 2, 2}, []float64{1, 1, 1}, []float64{2, 2, 2}, 4},
		// offload off: 1, 1, 1; weft off: 2, 2, 2. classic/weft off: 4, 2,
		// 2.
		{3, MRRP99, UnderlayGSOOff, off, []float64{1, 1, 2}, []float64{1, 1, 2}, []float64{2, 1, 2}, 2},
	}
	for _, tt := range tests {
		c := r.LatencyLevers[tt.chain]
		if c.Metric != tt.metric || !c.LowerIsBetter || c.UnderlayGSO != tt.gso {
			t.Errorf("chain %d: metric %q, lower is better %v, underlay GSO %q", tt.chain, c.Metric, c.LowerIsBetter, c.UnderlayGSO)
		}
		if len(c.Steps) != len(tt.modes) {
			t.Fatalf("chain %d: steps %+v", tt.chain, c.Steps)
		}
		for i, s := range c.Steps {
			want := r.Mode(tt.modes[i]).Summary[tt.metric]
			if s.Mode != tt.modes[i] || s.Value != want || s.TCP1 != (Stat{}) {
				t.Errorf("chain %d step %d: %s, value %+v, tcp1 %+v; want %s, %+v", tt.chain, i, s.Mode, s.Value, s.TCP1, tt.modes[i], want)
			}
			if i == 0 {
				if s.Gain != nil {
					t.Errorf("chain %d: first step has a gain", tt.chain)
				}
				continue
			}
			wantGain := Stat{tt.gains[i-1], tt.min[i-1], tt.max[i-1], 3}
			if s.Gain == nil || !statNear(*s.Gain, wantGain) {
				t.Errorf("chain %d step %s: gain %+v, want %+v", tt.chain, s.Mode, s.Gain, wantGain)
			}
		}
		if c.Total == nil || math.Abs(c.Total.Median-tt.total) > 1e-9 {
			t.Errorf("chain %d: total %+v, want %v", tt.chain, c.Total, tt.total)
		}
	}
}

func TestLatencyLeverChainsPartial(t *testing.T) {
	// The echo failed for weft-batch in every round: the latency chains go
	// from weft-classic to weft-offload (160/100, 150/100, 140/70), the
	// TCP chain still through weft-batch.
	r := latencyFixture()
	for i := range r.Mode("weft-batch").Rounds {
		delete(r.Mode("weft-batch").Rounds[i].Values, MRRP50)
		delete(r.Mode("weft-batch").Rounds[i].Values, MRRP99)
	}
	r.Summarize()
	if s := r.Levers[0].Steps[1]; s.Mode != "weft-batch" {
		t.Errorf("TCP step %+v", s)
	}
	s := r.LatencyLevers[0].Steps[1]
	if s.Mode != "weft-offload" || s.Adds != "levers of weft-batch + weft-offload" || s.Gain == nil || s.Gain.Median != 1.6 {
		t.Errorf("latency step after a missing one: %+v, gain %+v", s, s.Gain)
	}

	// No RR figures at all: no latency chains, and no latency table.
	r = leverFixture()
	if len(r.LatencyLevers) != 0 {
		t.Errorf("latency chains without RR figures: %+v", r.LatencyLevers)
	}
	out := markdown(t, r)
	if strings.Contains(out, "Lever by lever (RR") {
		t.Errorf("latency table without RR figures:\n%s", out)
	}

	// p99 lost in weft-offload only: the chains of p50 and p99 go through
	// different rows, so each gets its own table.
	r = latencyFixture()
	r.Settings.UnderlayGSO = UnderlayGSOOn
	for i := range r.Mode("weft-offload").Rounds {
		delete(r.Mode("weft-offload").Rounds[i].Values, MRRP99)
	}
	r.Summarize()
	out = markdown(t, r)
	for _, want := range []string{
		"\nLever by lever (RR p50; each row adds",
		"\nLever by lever (RR p99; each row adds",
		"| weft                | levers of weft-offload + weft ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

func TestWriteMarkdownLatencyLevers(t *testing.T) {
	r := latencyFixture()
	out := markdown(t, r)
	tcp := strings.Index(out, "\nLever by lever (TCP 1 stream;")
	lat := strings.Index(out, "\nLever by lever (RR p50, RR p99; each row adds its lever to the row above; "+
		"gain: median of per-round ratios of the row above's figure to the row's, as lower is better, so that above 1 is better")
	latOff := strings.Index(out, "\nLever by lever, underlay UDP segmentation off (RR p50, RR p99;")
	if tcp < 0 || lat < tcp || latOff < lat {
		t.Fatalf("TCP table at %d, latency tables at %d and %d:\n%s", tcp, lat, latOff, out)
	}
	for _, want := range []string{
		// p50 gains 2, 1, 2, 1 share log 4 between them: 50% and 0%;
		// p99 gains 1, 2, 1, 2 likewise.
		"| mode                | adds ",
		" | RR p50 (µs)      | gain               | share | RR p99 (µs)    | gain              | share |\n",
		"| 150 (140–160)    | –                  | –     | 400 (400–400)  | –                 | –     |\n",
		"| 80.0 (70.0–100)  | 2.00× (1.50–2.00)  | 50%   | 400 (200–400)  | 1.00× (1.00–2.00) | 0%    |\n",
		"| 100 (70.0–100)   | 1.00× (0.800–1.00) | 0%    | 200 (100–400)  | 2.00× (1.00–2.00) | 50%   |\n",
		"| weft-classic → weft | all of the above",
		"|                  | 4.00× (3.00–4.00)  | 100%  |                | 4.00× (1.00–8.00) | 100%  |\n",
		"| weft-classic → weft (underlay-gso off) | all of the above",
	} {
		if !strings.Contains(out[lat:], want) {
			t.Errorf("latency tables lack %q:\n%s", want, out[lat:])
		}
	}
	checkRowsEven(t, out)
}

func TestOptionalLevers(t *testing.T) {
	bp, off := "weft-busy-poll", UnderlayGSOOffSuffix
	type row struct {
		mode, base string
		// per key, the median, min and max of the per-round gains; absent
		// keys are figures the row lacks
		gains map[string][3]float64
	}
	tests := []struct {
		name   string
		levers []struct{ Mode, Base, Adds string } // nil: OptionalLevers
		r      func() *Results
		want   []row
	}{
		{"both settings", nil, latencyFixture, []row{
			// TCP 6.6/6, 4.5/4.5, 3.6/4.5; RR p50 40/30, 50/50, 35/35;
			// p99 50/50, 100/50, 400/200.
			{bp, "weft", map[string][3]float64{MTCP1: {1, 0.8, 1.1}, MRRP50: {1, 1, 4.0 / 3}, MRRP99: {2, 1, 2}}},
			// TCP 3.3/3, 1, 1; p50 1, 1, 1; p99 100/50, 200/100, 1.
			{bp + off, "weft" + off, map[string][3]float64{MTCP1: {1, 1, 1.1}, MRRP50: {1, 1, 1}, MRRP99: {2, 1, 2}}},
		}},
		{"TCP only", nil, leverFixture, []row{
			{bp, "weft", map[string][3]float64{MTCP1: {1, 0.8, 1.1}}},
			{bp + off, "weft" + off, map[string][3]float64{MTCP1: {1, 1, 1.1}}},
		}},
		{"no base", nil, func() *Results {
			r := latencyFixture()
			r.Modes = slices.DeleteFunc(r.Modes, func(m ModeResult) bool { return strings.HasPrefix(m.Name, "weft ") || m.Name == "weft" })
			r.Summarize()
			return r
		}, nil},
		{"no lever", nil, func() *Results {
			r := latencyFixture()
			r.Modes = slices.DeleteFunc(r.Modes, func(m ModeResult) bool { return strings.HasPrefix(m.Name, bp) })
			r.Summarize()
			return r
		}, nil},
		// A base that sends no UDP GSO ran once and serves both rows:
		// TCP 4/1, 3/1, 3.6/0.9 and 2/1, 2/1, 1.8/0.9.
		{"base without UDP GSO", []struct{ Mode, Base, Adds string }{{"weft-offload", "weft-batch", "offloads"}}, leverFixture, []row{
			{"weft-offload", "weft-batch", map[string][3]float64{MTCP1: {4, 3, 4}}},
			{"weft-offload" + off, "weft-batch", map[string][3]float64{MTCP1: {2, 2, 2}}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.levers != nil {
				saved := OptionalLevers
				OptionalLevers = tt.levers
				defer func() { OptionalLevers = saved }()
			}
			r := tt.r()
			r.Summarize()
			if len(r.OptionalLevers) != len(tt.want) {
				t.Fatalf("rows %+v, want %d", r.OptionalLevers, len(tt.want))
			}
			for i, w := range tt.want {
				got := r.OptionalLevers[i]
				if got.Mode != w.mode || got.Base != w.base || got.Adds == "" {
					t.Errorf("row %d: %s over %s adding %q, want %s over %s", i, got.Mode, got.Base, got.Adds, w.mode, w.base)
				}
				if len(got.Gains) != len(w.gains) {
					t.Errorf("row %d: gains %+v, want %v", i, got.Gains, w.gains)
				}
				for key, g := range w.gains {
					if want := (Stat{g[0], g[1], g[2], 3}); !statNear(got.Gains[key], want) {
						t.Errorf("row %d: %s gain %+v, want %+v", i, key, got.Gains[key], want)
					}
				}
			}
		})
	}
}

func TestWriteMarkdownOptionalLevers(t *testing.T) {
	r := latencyFixture()
	out := markdown(t, r)
	at := strings.Index(out, "\nOptional levers (")
	if at < strings.Index(out, "\nLever by lever, underlay UDP segmentation off (RR p50") {
		t.Fatalf("optional levers at %d, not after the lever tables:\n%s", at, out)
	}
	for _, want := range []string{
		"| mode                              | base                    | adds ",
		" | TCP 1 stream gain  | RR p50 gain       | RR p99 gain       |\n",
		"| weft-busy-poll                    | weft                    | " + OptionalLevers[0].Adds,
		" | 1.00× (0.800–1.10) | 1.00× (1.00–1.33) | 2.00× (1.00–2.00) |\n",
		"| weft-busy-poll (underlay-gso off) | weft (underlay-gso off) | ",
	} {
		if !strings.Contains(out[at:], want) {
			t.Errorf("optional levers lack %q:\n%s", want, out[at:])
		}
	}

	// Without the lever's rows, no table.
	r.Modes = slices.DeleteFunc(r.Modes, func(m ModeResult) bool { return strings.HasPrefix(m.Name, "weft-busy-poll") })
	r.Summarize()
	if out := markdown(t, r); strings.Contains(out, "Optional levers") {
		t.Errorf("optional levers table without their rows:\n%s", out)
	}
}
