package bench

import (
	"encoding/json"
	"math"
	"os"
	"strconv"
	"time"
)

// Metric is one figure a round measures for a mode.
type Metric struct {
	Key   string // key in results.json
	Title string
	Unit  string
	// HigherIsBetter tells readers which way a ratio above 1 points.
	HigherIsBetter bool
	// NoRatio marks figures whose ratio means nothing (a loss of 0%).
	NoRatio bool
	// DaemonOnly marks figures that exist only for modes with a forwarding
	// process; the kernel modes have none.
	DaemonOnly bool
	// MayBeZero marks figures for which zero is a valid measurement.
	MayBeZero bool
}

// Keys of the metrics.
const (
	MTCP1      = "tcp1_gbps"
	MTCP4      = "tcp4_gbps"
	MUDPPPS    = "udp64_kpps"
	MUDPLoss   = "udp64_loss_pct"
	MRRP50     = "rr_p50_us"
	MRRP99     = "rr_p99_us"
	MDaemonCPU = "daemon_cpu_s_per_gb"
	MSoftirq   = "softirq_s_per_gb"
	MCPU       = "cpu_s_per_gb"
)

// Metrics lists every figure, in table order.
var Metrics = []Metric{
	{Key: MTCP1, Title: "TCP 1 stream", Unit: "Gbit/s", HigherIsBetter: true},
	{Key: MTCP4, Title: "TCP 4 streams", Unit: "Gbit/s", HigherIsBetter: true},
	{Key: MUDPPPS, Title: "UDP 64 B rx", Unit: "kpps", HigherIsBetter: true},
	{Key: MUDPLoss, Title: "UDP 64 B loss", Unit: "%", NoRatio: true, MayBeZero: true},
	{Key: MRRP50, Title: "RR p50", Unit: "µs"},
	{Key: MRRP99, Title: "RR p99", Unit: "µs"},
	// The kernel modes have no daemon, so the daemon's own figure has no
	// reference to compare with; the sum with softirq, which is where the
	// kernel modes do all their forwarding, does.
	{Key: MDaemonCPU, Title: "daemon CPU", Unit: "s/GB", DaemonOnly: true, NoRatio: true},
	{Key: MSoftirq, Title: "softirq CPU", Unit: "s/GB"},
	{Key: MCPU, Title: "forwarding CPU", Unit: "s/GB"},
}

// Results is everything one `weft bench` run measured; it is what
// results.json holds.
type Results struct {
	Started  time.Time    `json:"started"`
	Seconds  float64      `json:"seconds"` // wall time of the whole run
	Machine  Machine      `json:"machine"`
	Settings Settings     `json:"settings"`
	Metrics  []Metric     `json:"metrics"`
	Modes    []ModeResult `json:"modes"`
	// Levers are the lever-by-lever tables of TCP 1 stream (see
	// LeverSteps): one through the rows with the run's underlay setting,
	// and with --underlay-gso both one through the rows with the
	// underlay's UDP segmentation off.
	Levers []LeverChain `json:"levers,omitempty"`
	// LatencyLevers are the same of each of LatencyLeverMetrics, lower
	// being better: the chains of RR p50, then those of RR p99.
	LatencyLevers []LeverChain `json:"latency_levers,omitempty"`
	// OptionalLevers are the gains of the modes of OptionalLevers over
	// their base modes, with each underlay setting the run had.
	OptionalLevers []OptionalLever `json:"optional_levers,omitempty"`
}

// Machine names where the numbers come from.
type Machine struct {
	Kernel    string `json:"kernel"`
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpu_model,omitempty"`
	GoVersion string `json:"go_version"`
	Iperf3    string `json:"iperf3,omitempty"`
	Weftd     string `json:"weftd,omitempty"`
}

// Settings are the options the run was made with.
type Settings struct {
	Rounds          int      `json:"rounds"`
	WorkloadSeconds float64  `json:"workload_seconds"`
	Quick           bool     `json:"quick"`
	Modes           []string `json:"modes"`
	// UnderlayGSO is --underlay-gso: on, off or both.
	UnderlayGSO string `json:"underlay_gso,omitempty"`
}

// ModeResult is one mode's rounds and their summary.
type ModeResult struct {
	Name  string   `json:"name"`
	About string   `json:"about"`
	Flags []string `json:"flags,omitempty"` // weftd flags beyond the static-mode ones
	// UnderlayGSO is the state the underlay's UDP segmentation was put in
	// for this row ("on" or "off"); empty: left as created (on).
	UnderlayGSO string `json:"underlay_gso,omitempty"`
	// SendsUDPGSO marks a mode whose path the underlay's UDP segmentation
	// is on (Mode.SendsUDPGSO).
	SendsUDPGSO bool          `json:"sends_udp_gso,omitempty"`
	Rounds      []RoundResult `json:"rounds"`
	// Summary, VsUnderlay and VsVXLAN are keyed by Metric.Key; a figure
	// that could not be measured (or has no reference) is absent.
	Summary    map[string]Stat `json:"summary"`
	VsUnderlay map[string]Stat `json:"vs_underlay,omitempty"`
	VsVXLAN    map[string]Stat `json:"vs_vxlan,omitempty"`
}

// RoundResult is what one round measured for one mode.
type RoundResult struct {
	Round  int                `json:"round"`
	Values map[string]float64 `json:"values"`
	Errors []string           `json:"errors,omitempty"`
}

// series returns mode m's values of key by round, NaN where missing, so
// that rounds of different modes line up.
func (m *ModeResult) series(key string, rounds int) []float64 {
	out := make([]float64, rounds)
	for i := range out {
		out[i] = math.NaN()
	}
	for _, r := range m.Rounds {
		if v, ok := r.Values[key]; ok && r.Round >= 1 && r.Round <= rounds {
			out[r.Round-1] = v
		}
	}
	return out
}

// Mode returns the named mode's result, or nil.
func (r *Results) Mode(name string) *ModeResult {
	for i := range r.Modes {
		if r.Modes[i].Name == name {
			return &r.Modes[i]
		}
	}
	return nil
}

// Summarize fills every mode's Summary and its ratios to underlay and vxlan
// from the rounds.
func (r *Results) Summarize() {
	n := r.Settings.Rounds
	ref := func(name string) *ModeResult { return r.Mode(name) }
	for i := range r.Modes {
		m := &r.Modes[i]
		m.Summary = map[string]Stat{}
		m.VsUnderlay, m.VsVXLAN = map[string]Stat{}, map[string]Stat{}
		for _, met := range r.Metrics {
			vals := m.series(met.Key, n)
			if s, ok := Summarize(vals); ok {
				m.Summary[met.Key] = s
			}
			if met.NoRatio {
				continue
			}
			for _, x := range []struct {
				ref *ModeResult
				out map[string]Stat
			}{{ref("underlay"), m.VsUnderlay}, {ref("vxlan"), m.VsVXLAN}} {
				if x.ref == nil {
					continue
				}
				if s, ok := Summarize(RoundRatios(vals, x.ref.series(met.Key, n))); ok {
					x.out[met.Key] = s
				}
			}
		}
	}
	r.Levers = r.leverChains(MTCP1)
	r.LatencyLevers = nil
	for _, key := range LatencyLeverMetrics {
		r.LatencyLevers = append(r.LatencyLevers, r.leverChains(key)...)
	}
	r.OptionalLevers = r.optionalLevers()
}

// WriteJSON writes the results, indented, to path.
func (r *Results) WriteJSON(path string) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

// Errors lists every failure of every round, prefixed by mode and round.
func (r *Results) Errors() []string {
	var out []string
	for _, m := range r.Modes {
		for _, rd := range m.Rounds {
			for _, e := range rd.Errors {
				out = append(out, m.Name+" round "+strconv.Itoa(rd.Round)+": "+e)
			}
		}
	}
	return out
}
