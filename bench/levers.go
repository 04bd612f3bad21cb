package bench

import (
	"math"
	"strings"
)

// LeverSteps are the rows of the lever-by-lever table, in order: each mode
// adds one lever to the mode above it, so that the gain from one row to the
// next is that lever's share of weft's speed. Adds says what it adds.
var LeverSteps = []struct{ Mode, Adds string }{
	{"weft-classic", "baseline: one packet per syscall, one worker, no offloads"},
	{"weft-batch", "batched syscalls (up to 64 packets each), one worker per core"},
	{"weft-offload", "TUN TSO/USO and UDP GSO/GRO, through wireguard-go's copying offload device"},
	{"weft", "zero-copy segmentation on send: super-packets cut in place, payloads sent from the TUN read buffer (weft's own offload device)"},
}

// OptionalLevers are levers outside LeverSteps, which weftd does not turn
// on by default: each mode adds one to its base mode and is measured
// against the base in the same rounds (OptionalLever), not in the chain.
var OptionalLevers = []struct{ Mode, Base, Adds string }{
	{"weft-busy-poll", "weft", "busy polling: each loop keeps polling for 50 µs after traffic instead of sleeping at once"},
}

// OptionalLeverMetrics are the figures whose gains the optional levers
// table gives.
var OptionalLeverMetrics = []string{MTCP1, MRRP50, MRRP99}

// minShareGain is the smallest overall gain of a chain for which shares are
// given: a share is a step's log gain over the log of the whole, and near a
// whole of 1x that divides by nearly zero.
const minShareGain = 1.1

// LatencyLeverMetrics are the figures of the latency lever-by-lever tables,
// one chain each; lower is better.
var LatencyLeverMetrics = []string{MRRP50, MRRP99}

// LeverChain is one lever-by-lever table: one figure (Metric) through
// LeverSteps.
type LeverChain struct {
	// Metric is the key of the figure the chain follows. Results written
	// before chains of other figures than TCP 1 stream lack it; empty
	// means MTCP1.
	Metric string `json:"metric,omitempty"`
	// LowerIsBetter marks a figure such as a latency, whose gains are the
	// step above's value over the step's, so that above 1 is better for
	// every chain.
	LowerIsBetter bool `json:"lower_is_better,omitempty"`
	// UnderlayGSO is "off" for the chain through the rows with the
	// underlay's UDP segmentation off in a run with both settings (the modes
	// that send no UDP GSO have one row, in both chains); empty for the
	// chain through the run's ordinary rows.
	UnderlayGSO string      `json:"underlay_gso,omitempty"`
	Steps       []LeverStep `json:"steps"`
	// Total is the whole chain's gain, the last step over the first (the
	// first over the last when lower is better): the median (min, max) of
	// per-round ratios.
	Total *Stat `json:"total,omitempty"`
}

// LeverStep is one row of a LeverChain.
type LeverStep struct {
	Mode string `json:"mode"` // the row's name, as in Results.Modes
	// Adds is what the step adds to the one above: its own lever, or, when
	// steps in between are missing from the run, "levers of" their modes
	// and its own.
	Adds string `json:"adds"`
	// Value is the step's figure of the chain's Metric.
	Value Stat `json:"value"`
	// TCP1 is Value in a chain of TCP 1 stream, under the name it had
	// before chains of other figures; zero, and left out, in others.
	TCP1 Stat `json:"tcp1_gbps,omitzero"`
	// Gain is the step's figure over the step above's (the other way
	// round when lower is better), so that above 1 is better: the median
	// (min, max) of per-round ratios. Nil for the first step.
	Gain *Stat `json:"gain,omitempty"`
	// Share is the step's part of the whole gain on a log scale,
	// log(gain) / Σ log(gains), so that the shares of a chain add up to 1.
	// Nil for the first step, and when the chain gains less than
	// minShareGain overall.
	Share *float64 `json:"share,omitempty"`
}

// key is the chain's metric key.
func (c *LeverChain) key() string {
	if c.Metric == "" {
		return MTCP1
	}
	return c.Metric
}

// value is the step's figure, from TCP1 in results written before Value.
func (s *LeverStep) value() Stat {
	if s.Value.N == 0 && s.TCP1.N > 0 {
		return s.TCP1
	}
	return s.Value
}

// leverChains builds the lever-by-lever tables of the figure key from the
// summarized modes: one through the rows named as in LeverSteps, and, when
// the run has rows with UnderlayGSOOffSuffix, one through those. A chain
// needs two steps with the figure. Gains are per-round ratios of each step's
// figure to the step above's, inverted where lower is better (r.gain).
func (r *Results) leverChains(key string) []LeverChain {
	lowerIsBetter := !r.metric(key).HigherIsBetter
	var chains []LeverChain
	for _, gso := range []string{"", UnderlayGSOOff} {
		suffix := ""
		if gso != "" {
			suffix = UnderlayGSOOffSuffix
		}
		c := LeverChain{Metric: key, LowerIsBetter: lowerIsBetter, UnderlayGSO: gso}
		var rows []*ModeResult
		var skipped []string // modes of LeverSteps since the last step
		twins := 0
		for _, st := range LeverSteps {
			skipped = append(skipped, st.Mode)
			m := r.Mode(st.Mode + suffix)
			if m != nil && suffix != "" {
				twins++
			}
			if m == nil && suffix != "" {
				// A mode that sends no UDP GSO ran once; its row serves
				// both chains.
				if b := r.Mode(st.Mode); b != nil && !b.SendsUDPGSO {
					m = b
				}
			}
			if m == nil {
				continue
			}
			v, ok := m.Summary[key]
			if !ok {
				continue
			}
			step := LeverStep{Mode: m.Name, Adds: st.Adds, Value: v}
			if key == MTCP1 {
				step.TCP1 = v
			}
			if len(rows) > 0 { // the first step is the baseline
				if len(skipped) > 1 {
					step.Adds = "levers of " + strings.Join(skipped, " + ")
				}
				if g, ok := r.gain(m, rows[len(rows)-1], key); ok {
					step.Gain = &g
				}
			}
			skipped = nil
			rows = append(rows, m)
			c.Steps = append(c.Steps, step)
		}
		if len(c.Steps) < 2 || (suffix != "" && twins == 0) {
			continue
		}
		if t, ok := r.gain(rows[len(rows)-1], rows[0], key); ok {
			c.Total = &t
		}
		c.setShares()
		chains = append(chains, c)
	}
	return chains
}

// setShares fills each step's Share when every step after the first has a
// gain and together they gain at least minShareGain.
func (c *LeverChain) setShares() {
	sum := 0.0
	for _, s := range c.Steps[1:] {
		if s.Gain == nil || s.Gain.Median <= 0 {
			return
		}
		sum += math.Log(s.Gain.Median)
	}
	if sum < math.Log(minShareGain) {
		return
	}
	for i := range c.Steps[1:] {
		s := &c.Steps[i+1]
		share := math.Log(s.Gain.Median) / sum
		s.Share = &share
	}
}

// OptionalLever is one row of the optional levers table: a mode of
// OptionalLevers against its base mode.
type OptionalLever struct {
	Mode string `json:"mode"` // the row's name, as in Results.Modes
	Base string `json:"base"` // the base mode's row
	Adds string `json:"adds"`
	// Gains are keyed by Metric.Key: the mode's figure over the base's
	// (the other way round when lower is better), so that above 1 is
	// better, as the median (min, max) of per-round ratios. A figure
	// either row lacks is absent.
	Gains map[string]Stat `json:"gains"`
}

// optionalLevers builds the rows of the optional levers present with their
// base: for each, one with the run's underlay setting, and, when the run
// has rows with UnderlayGSOOffSuffix, one through those. A base that sends
// no UDP GSO ran once and serves both.
func (r *Results) optionalLevers() []OptionalLever {
	var out []OptionalLever
	for _, ol := range OptionalLevers {
		for _, suffix := range []string{"", UnderlayGSOOffSuffix} {
			m := r.Mode(ol.Mode + suffix)
			if m == nil {
				continue
			}
			base := r.Mode(ol.Base + suffix)
			if base == nil && suffix != "" {
				if b := r.Mode(ol.Base); b != nil && !b.SendsUDPGSO {
					base = b
				}
			}
			if base == nil {
				continue
			}
			row := OptionalLever{Mode: m.Name, Base: base.Name, Adds: ol.Adds, Gains: map[string]Stat{}}
			for _, key := range OptionalLeverMetrics {
				if g, ok := r.gain(m, base, key); ok {
					row.Gains[key] = g
				}
			}
			out = append(out, row)
		}
	}
	return out
}

// gain is the figure key of m over that of ref (ref's over m's where lower
// is better), so that above 1 is better: the median (min, max) of per-round
// ratios.
func (r *Results) gain(m, ref *ModeResult, key string) (Stat, bool) {
	if !r.metric(key).HigherIsBetter {
		m, ref = ref, m
	}
	n := r.Settings.Rounds
	return Summarize(RoundRatios(m.series(key, n), ref.series(key, n)))
}
