package bench

import (
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
)

// seriesBars is one metric's medians across modes, with their spread, at
// x = mode index + shift.
type seriesBars struct {
	shift          float64
	med, low, high []float64 // 0 where the mode has no figure: an empty bar
}

func (s seriesBars) Len() int                    { return len(s.med) }
func (s seriesBars) Value(i int) float64         { return s.med[i] }
func (s seriesBars) XY(i int) (float64, float64) { return float64(i) + s.shift, s.med[i] }
func (s seriesBars) YError(i int) (float64, float64) {
	return s.med[i] - s.low[i], s.high[i] - s.med[i]
}

// spreads is the error bars of the modes that have the figure, so that a
// missing one draws no bar of zero length at zero.
type spreads struct {
	s   seriesBars
	idx []int // indexes into s
}

func (e spreads) Len() int                        { return len(e.idx) }
func (e spreads) XY(i int) (float64, float64)     { return e.s.XY(e.idx[i]) }
func (e spreads) YError(i int) (float64, float64) { return e.s.YError(e.idx[i]) }

// barSeries is one bar of each mode's group: the figure it shows, its legend
// entry and colour.
type barSeries struct {
	key   string
	label string
	color color.Color
}

// The bar colours, the first and second series of a group.
var (
	barBlue   = color.RGBA{R: 0x4c, G: 0x72, B: 0xb0, A: 0xff}
	barOrange = color.RGBA{R: 0xdd, G: 0x84, B: 0x52, A: 0xff}
)

// barChart is what a plot of grouped bars per mode shows.
type barChart struct {
	title  string // followed by the rounds and what the error bars span
	unit   string // the Y axis label
	series []barSeries
}

// PlotThroughput draws TCP throughput per mode (1 and 4 streams) as grouped
// bars whose error bars span min to max over the rounds, and saves it as
// base.svg and base.png in dir. It returns the files written.
func (r *Results) PlotThroughput(dir, base string) ([]string, error) {
	return r.plotBars(dir, base, barChart{
		title: "TCP throughput per mode",
		unit:  "Gbit/s",
		series: []barSeries{
			{MTCP1, "1 stream", barBlue},
			{MTCP4, "4 streams", barOrange},
		},
	})
}

// PlotLatency draws the request/response latency per mode (RR p50 and p99,
// in µs) as PlotThroughput draws throughput, and saves it as base.svg and
// base.png in dir. It returns the files written.
//
// The axis is linear: the modes span about 20 µs (kernel) to under 1 ms
// (flanneld's p99), a range whose smallest bars are still visible, and a bar's
// length is then what the figure is; on a log axis it would depend on where
// the axis starts, and a 7x gap would look like a small step.
func (r *Results) PlotLatency(dir, base string) ([]string, error) {
	return r.plotBars(dir, base, barChart{
		title: "Request/response latency per mode",
		unit:  "µs",
		series: []barSeries{
			{MRRP50, "p50", barBlue},
			{MRRP99, "p99", barOrange},
		},
	})
}

// plotBars draws c's series per mode as grouped bars whose error bars span
// min to max over the rounds, and saves the plot as base.svg and base.png in
// dir; a mode without a series' figure gets "n/a" where its bar would be. It
// returns the files written.
func (r *Results) plotBars(dir, base string, c barChart) ([]string, error) {
	if len(r.Modes) == 0 {
		return nil, fmt.Errorf("plot: no modes")
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s (median of %d, bars min–max)", c.title, r.Settings.Rounds)
	p.Y.Label.Text = c.unit
	p.Y.Min = 0
	// The grid goes under the bars, so it is added first.
	p.Add(plotter.NewGrid())

	names := make([]string, len(r.Modes))
	for i, m := range r.Modes {
		// "weft (underlay-gso off)" on two lines, to fit under its bars.
		names[i] = strings.Replace(m.Name, UnderlayGSOOffSuffix, "\n"+strings.TrimSpace(UnderlayGSOOffSuffix), 1)
	}
	width := vg.Inch * vg.Length(max(6, 1.2*float64(len(names))))
	slot := (width - vg.Inch) / vg.Length(len(names))

	// The groups' bars side by side, 0.4 of a mode's slot apart.
	const step = 0.4
	// The axis reaches a little past twice the tallest median, not the
	// tallest spread: one round's outlier (a p99 of milliseconds) would
	// flatten every bar. A spread cut at the top is labelled with its max.
	maxMedian := 0.0
	for _, s := range c.series {
		for _, m := range r.Modes {
			maxMedian = max(maxMedian, m.Summary[s.key].Median)
		}
	}
	limit := max(1, 2*maxMedian)
	top := 1.0
	missing, cut := plotter.XYLabels{}, plotter.XYLabels{}
	for k, s := range c.series {
		sb := seriesBars{shift: (float64(k) - float64(len(c.series)-1)/2) * step}
		errs := spreads{}
		for i, m := range r.Modes {
			st, ok := m.Summary[s.key]
			sb.med = append(sb.med, st.Median)
			sb.low = append(sb.low, st.Min)
			sb.high = append(sb.high, st.Max)
			if !ok {
				x, _ := sb.XY(i)
				missing.XYs = append(missing.XYs, plotter.XY{X: x})
				missing.Labels = append(missing.Labels, "n/a")
				continue
			}
			errs.idx = append(errs.idx, i)
			if st.Max > limit {
				x, _ := sb.XY(i)
				cut.XYs = append(cut.XYs, plotter.XY{X: x, Y: limit})
				cut.Labels = append(cut.Labels, "max "+FormatNumber(st.Max))
				sb.high[i] = limit
			}
			top = max(top, sb.high[i])
		}
		errs.s = sb
		bars, err := plotter.NewBarChart(sb, slot*0.34)
		if err != nil {
			return nil, fmt.Errorf("plot: %w", err)
		}
		bars.XMin = sb.shift
		bars.Color = s.color
		bars.LineStyle.Width = 0
		p.Add(bars)
		if errs.Len() > 0 {
			eb, err := plotter.NewYErrorBars(errs)
			if err != nil {
				return nil, fmt.Errorf("plot: %w", err)
			}
			eb.LineStyle.Width = vg.Points(1)
			p.Add(eb)
		}
		p.Legend.Add(s.label, bars)
	}
	for _, l := range []plotter.XYLabels{missing, cut} {
		if len(l.Labels) == 0 {
			continue
		}
		labels, err := plotter.NewLabels(l)
		if err != nil {
			return nil, fmt.Errorf("plot: %w", err)
		}
		for i := range labels.TextStyle {
			labels.TextStyle[i].XAlign = text.XCenter
			labels.TextStyle[i].Font.Size = vg.Points(8)
		}
		labels.Offset.Y = vg.Points(2)
		p.Add(labels)
	}
	p.Legend.Top = true
	p.NominalX(names...)
	// Room at the sides for the outer bars, and above for the legend.
	p.X.Min, p.X.Max = -0.6, float64(len(names))-0.4
	p.Y.Max = top * 1.25
	p.Y.Tick.Marker = plot.TickerFunc(linearTicks)

	var files []string
	for _, ext := range []string{".svg", ".png"} {
		f := filepath.Join(dir, base+ext)
		if err := p.Save(width, 4*vg.Inch, f); err != nil {
			return files, fmt.Errorf("plot: %w", err)
		}
		files = append(files, f)
	}
	return files, nil
}

// linearTicks labels five to ten round values (1, 2 or 5 times a power of
// ten apart); gonum's default labels only two or three on a short axis.
func linearTicks(lo, hi float64) []plot.Tick {
	if hi <= lo {
		return nil
	}
	raw := (hi - lo) / 6
	step := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*step >= raw {
			step *= m
			break
		}
	}
	// As many decimals as the step has, so 0.1+0.2 prints as 0.3.
	decimals := max(0, -int(math.Floor(math.Log10(step))))
	var ticks []plot.Tick
	for i := math.Ceil(lo / step); i*step <= hi+step*1e-9; i++ {
		v := i * step
		ticks = append(ticks, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'f', decimals, 64)})
	}
	return ticks
}
