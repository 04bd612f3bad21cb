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
	"gonum.org/v1/plot/vg"
)

// seriesBars is one metric's medians across modes, with their spread, at
// x = mode index + shift.
type seriesBars struct {
	shift          float64
	med, low, high []float64
}

func (s seriesBars) Len() int                    { return len(s.med) }
func (s seriesBars) Value(i int) float64         { return s.med[i] }
func (s seriesBars) XY(i int) (float64, float64) { return float64(i) + s.shift, s.med[i] }
func (s seriesBars) YError(i int) (float64, float64) {
	return s.med[i] - s.low[i], s.high[i] - s.med[i]
}

// PlotThroughput draws TCP throughput per mode (1 and 4 streams) as grouped
// bars whose error bars span min to max over the rounds, and saves it as
// base.svg and base.png in dir. It returns the files written.
func (r *Results) PlotThroughput(dir, base string) ([]string, error) {
	if len(r.Modes) == 0 {
		return nil, fmt.Errorf("plot: no modes")
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("TCP throughput per mode (median of %d, bars min–max)", r.Settings.Rounds)
	p.Y.Label.Text = "Gbit/s"
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

	series := []struct {
		key   string
		label string
		shift float64
		color color.Color
	}{
		{MTCP1, "1 stream", -0.2, color.RGBA{R: 0x4c, G: 0x72, B: 0xb0, A: 0xff}},
		{MTCP4, "4 streams", 0.2, color.RGBA{R: 0xdd, G: 0x84, B: 0x52, A: 0xff}},
	}
	top := 1.0
	for _, s := range series {
		sb := seriesBars{shift: s.shift}
		for _, m := range r.Modes {
			st := m.Summary[s.key] // zero when missing: an empty bar
			sb.med = append(sb.med, st.Median)
			sb.low = append(sb.low, st.Min)
			sb.high = append(sb.high, st.Max)
			top = max(top, st.Max)
		}
		bars, err := plotter.NewBarChart(sb, slot*0.34)
		if err != nil {
			return nil, fmt.Errorf("plot: %w", err)
		}
		bars.XMin = s.shift
		bars.Color = s.color
		bars.LineStyle.Width = 0
		errs, err := plotter.NewYErrorBars(sb)
		if err != nil {
			return nil, fmt.Errorf("plot: %w", err)
		}
		errs.LineStyle.Width = vg.Points(1)
		p.Add(bars, errs)
		p.Legend.Add(s.label, bars)
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
