package bench

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

// leverFixture is a run with --underlay-gso both over three rounds: the
// modes of LeverSteps, the offload ones twice, and vxlan as a reference.
// Only TCP 1 stream matters here.
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
		mk("weft-zc-send", true, 5, 3.75, 4.5),
		mk("weft-zc-send"+UnderlayGSOOffSuffix, true, 2.5, 2.5, 2.25),
		mk("weft", true, 6, 4.5, 4.5),
		mk("weft"+UnderlayGSOOffSuffix, true, 3, 2.8, 2.7),
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
		// zc-send/offload: 1.25, 1.25, 1.25; weft/zc-send: 1.2, 1.2, 1.
		// weft/classic: 12, 11.25, 9.
		{0, []string{"weft-classic", "weft-batch", "weft-offload", "weft-zc-send", "weft"}, []float64{2, 4, 1.25, 1.2}, 11.25},
		// The off chain goes through classic and batch, which ran once:
		// offload off/batch: 2, 2, 2; zc-send off/offload off: 1.25, 1.25,
		// 1.25; weft off/zc-send off: 1.2, 1.12, 1.2.
		{1, []string{"weft-classic", "weft-batch", "weft-offload" + UnderlayGSOOffSuffix, "weft-zc-send" + UnderlayGSOOffSuffix, "weft" + UnderlayGSOOffSuffix},
			[]float64{2, 2, 1.25, 1.2}, 6},
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
	if s := r.Levers[0].Steps[2]; s.Adds != "levers of weft-zc-send + weft" {
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
	var b bytes.Buffer
	if err := r.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	if out := b.String(); !strings.Contains(out, "| weft       | levers of weft-offload + weft-zc-send + weft ") || strings.Contains(out, "all of the above") {
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
	var b bytes.Buffer
	if err := r.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
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
	// Shares: log 2, log 4, log 1.25, log 1.2 of log 12.
	for _, want := range []string{"| 28%   |", "| 56%   |", "| 9%    |", "| 7%    |"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks share %q:\n%s", want, out)
		}
	}
}
