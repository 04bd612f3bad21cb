package bench

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// WriteMarkdown renders the results as Markdown: the medians with their
// spread and what each mode is, then each mode's ratio to underlay and to
// vxlan, the lever-by-lever tables (TCP 1 stream, then latency), the
// optional levers, then any failures.
func (r *Results) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Median of %d round(s) (min–max), %gs per workload; modes interleaved round by round.",
		r.Settings.Rounds, r.Settings.WorkloadSeconds)
	switch r.Settings.UnderlayGSO {
	case UnderlayGSOOn:
		b.WriteString(" Underlay UDP segmentation on (the veth default).")
	case UnderlayGSOOff:
		b.WriteString(" Underlay UDP segmentation off for every mode (--underlay-gso off), as on a NIC that cannot segment UDP.")
	case UnderlayGSOBoth:
		b.WriteString(" Rows marked \"(underlay-gso off)\" ran with the underlay's UDP segmentation off, as on a NIC that cannot segment UDP; all others with it on.")
	}
	b.WriteString("\n\n")
	header := []string{"mode"}
	for _, m := range r.Metrics {
		header = append(header, fmt.Sprintf("%s (%s)", m.Title, m.Unit))
	}
	rows := [][]string{}
	for _, mr := range r.Modes {
		row := []string{mr.Name}
		for _, m := range r.Metrics {
			row = append(row, statCell(mr.Summary, m.Key, true))
		}
		rows = append(rows, row)
	}
	writeTable(&b, header, rows)
	r.writeModeList(&b)

	for _, ref := range []struct{ name, title string }{{"underlay", "underlay"}, {"vxlan", "vxlan"}} {
		if r.Mode(ref.name) == nil {
			continue
		}
		fmt.Fprintf(&b, "\nRatio to %s (median of per-round ratios; for µs and s/GB lower is better):\n\n", ref.title)
		header := []string{"mode"}
		var ms []Metric
		for _, m := range r.Metrics {
			if !m.NoRatio {
				ms = append(ms, m)
				header = append(header, m.Title)
			}
		}
		rows := [][]string{}
		for _, mr := range r.Modes {
			vs := mr.VsUnderlay
			if ref.name == "vxlan" {
				vs = mr.VsVXLAN
			}
			row := []string{mr.Name}
			for _, m := range ms {
				c := statCell(vs, m.Key, false)
				if c != "–" {
					c += "×"
				}
				row = append(row, c)
			}
			rows = append(rows, row)
		}
		writeTable(&b, header, rows)
	}
	r.writeLeverTables(&b)
	r.writeOptionalLevers(&b)
	if errs := r.Errors(); len(errs) > 0 {
		b.WriteString("\nFailures:\n\n")
		for _, e := range errs {
			fmt.Fprintf(&b, "- %s\n", strings.ReplaceAll(e, "\n", " "))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// statCell formats a median, with its spread when asked; "–" when missing.
func statCell(m map[string]Stat, key string, spread bool) string {
	s, ok := m[key]
	if !ok {
		return "–"
	}
	if !spread || s.N < 2 {
		return FormatNumber(s.Median)
	}
	return fmt.Sprintf("%s (%s–%s)", FormatNumber(s.Median), FormatNumber(s.Min), FormatNumber(s.Max))
}

// FormatNumber prints v with three significant digits, without exponent
// for the magnitudes a benchmark table holds.
func FormatNumber(v float64) string {
	a := math.Abs(v)
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "–"
	case a == 0:
		return "0"
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		// Three significant digits, trailing zeros kept: 0.300, 0.0123.
		return strconv.FormatFloat(v, 'f', 2-int(math.Floor(math.Log10(a))), 64)
	}
}

// writeTable writes a Markdown table with columns padded for reading as
// plain text too.
func writeTable(b *strings.Builder, header []string, rows [][]string) {
	width := make([]int, len(header))
	for i, h := range header {
		width[i] = len([]rune(h))
	}
	for _, r := range rows {
		for i, c := range r {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	line := func(cells []string) {
		b.WriteString("|")
		for i, c := range cells {
			fmt.Fprintf(b, " %s%s |", c, strings.Repeat(" ", width[i]-len([]rune(c))))
		}
		b.WriteString("\n")
	}
	line(header)
	sep := make([]string, len(header))
	for i := range sep {
		sep[i] = strings.Repeat("-", width[i])
	}
	line(sep)
	for _, r := range rows {
		line(r)
	}
}

// writeModeList says what each mode is, with the weftd flags it ran with.
func (r *Results) writeModeList(b *strings.Builder) {
	first := true
	for _, mr := range r.Modes {
		if mr.About == "" {
			continue
		}
		if first {
			b.WriteString("\nModes:\n\n")
			first = false
		}
		fmt.Fprintf(b, "- `%s`: %s\n", mr.Name, mr.About)
	}
}

// writeLeverTables writes the lever-by-lever tables: TCP 1 stream's, then
// latency's, with the chains of RR p50 and p99 through the same rows in one
// table.
func (r *Results) writeLeverTables(b *strings.Builder) {
	for _, c := range r.Levers {
		r.writeLeverTable(b, []LeverChain{c})
	}
	for _, gso := range []string{"", UnderlayGSOOff} {
		var cs []LeverChain
		for _, c := range r.LatencyLevers {
			if c.UnderlayGSO == gso {
				cs = append(cs, c)
			}
		}
		if len(cs) == 0 {
			continue
		}
		if sameSteps(cs) {
			r.writeLeverTable(b, cs)
			continue
		}
		for _, c := range cs {
			r.writeLeverTable(b, []LeverChain{c})
		}
	}
}

// sameSteps tells whether the chains go through the same rows, adding the
// same levers.
func sameSteps(cs []LeverChain) bool {
	for _, c := range cs[1:] {
		if len(c.Steps) != len(cs[0].Steps) {
			return false
		}
		for i, s := range c.Steps {
			if s.Mode != cs[0].Steps[i].Mode || s.Adds != cs[0].Steps[i].Adds {
				return false
			}
		}
	}
	return true
}

// writeLeverTable renders lever-by-lever chains through the same rows (and
// the same underlay setting) as one table: for each chain its figure and
// gain, and its share when it has shares; the totals last.
func (r *Results) writeLeverTable(b *strings.Builder, cs []LeverChain) {
	title := "Lever by lever"
	if cs[0].UnderlayGSO == UnderlayGSOOff {
		title += ", underlay UDP segmentation off"
	}
	var figures []string
	header := []string{"mode", "adds"}
	lower, shares := false, make([]bool, len(cs))
	for i, c := range cs {
		m := r.metric(c.key())
		figures = append(figures, m.Title)
		col := m.Title
		if m.Unit != "" {
			col += " (" + m.Unit + ")"
		}
		header = append(header, col, "gain")
		lower = lower || c.LowerIsBetter
		for _, s := range c.Steps {
			shares[i] = shares[i] || s.Share != nil
		}
		if shares[i] {
			header = append(header, "share")
		}
	}
	gain := "median of per-round ratios to the row above"
	if lower {
		gain = "median of per-round ratios of the row above's figure to the row's, as lower is better, so that above 1 is better"
	}
	share := ""
	if slices.Contains(shares, true) {
		share = "; share: the step's part of the whole gain on a log scale, log gain / log of all gains"
	}
	fmt.Fprintf(b, "\n%s (%s; each row adds its lever to the row above; gain: %s%s):\n\n",
		title, strings.Join(figures, ", "), gain, share)

	steps := cs[0].Steps
	rows := [][]string{}
	for i, s := range steps {
		row := []string{s.Mode, s.Adds}
		for k, c := range cs {
			st := c.Steps[i]
			row = append(row, statCell(map[string]Stat{"": st.value()}, "", true), gainCell(st.Gain))
			if shares[k] {
				row = append(row, shareCell(st.Share))
			}
		}
		rows = append(rows, row)
	}
	totals := false
	for _, c := range cs {
		totals = totals || c.Total != nil
	}
	if totals && len(steps) > 2 { // with two, the total is the second row
		row := []string{steps[0].Mode + " → " + steps[len(steps)-1].Mode, "all of the above"}
		for k, c := range cs {
			row = append(row, "", gainCell(c.Total))
			if shares[k] {
				one := 1.0
				var share *float64
				if c.Total != nil && c.Steps[len(c.Steps)-1].Share != nil {
					share = &one
				}
				row = append(row, shareCell(share))
			}
		}
		rows = append(rows, row)
	}
	writeTable(b, header, rows)
}

// writeOptionalLevers writes the gains of the optional levers over their
// base modes, one row per lever and underlay setting.
func (r *Results) writeOptionalLevers(b *strings.Builder) {
	if len(r.OptionalLevers) == 0 {
		return
	}
	b.WriteString("\nOptional levers (each row's mode adds its lever to its base mode, outside the chain above; " +
		"gain: median (min–max) of per-round ratios of the mode's figure to its base's, of the base's to the mode's where lower is better, so that above 1 is better):\n\n")
	header := []string{"mode", "base", "adds"}
	for _, key := range OptionalLeverMetrics {
		header = append(header, r.metric(key).Title+" gain")
	}
	rows := [][]string{}
	for _, ol := range r.OptionalLevers {
		row := []string{ol.Mode, ol.Base, ol.Adds}
		for _, key := range OptionalLeverMetrics {
			var g *Stat
			if s, ok := ol.Gains[key]; ok {
				g = &s
			}
			row = append(row, gainCell(g))
		}
		rows = append(rows, row)
	}
	writeTable(b, header, rows)
}

// metric returns the figure of key, as the results name it; one named by
// its key when they do not.
func (r *Results) metric(key string) Metric {
	for _, ms := range [][]Metric{r.Metrics, Metrics} {
		for _, m := range ms {
			if m.Key == key {
				return m
			}
		}
	}
	return Metric{Key: key, Title: key}
}

// gainCell formats a ratio with its spread: "8.10× (7.90–8.30)".
func gainCell(g *Stat) string {
	if g == nil {
		return "–"
	}
	if g.N < 2 {
		return FormatNumber(g.Median) + "×"
	}
	return fmt.Sprintf("%s× (%s–%s)", FormatNumber(g.Median), FormatNumber(g.Min), FormatNumber(g.Max))
}

// shareCell formats a share as a whole percentage.
func shareCell(s *float64) string {
	if s == nil {
		return "–"
	}
	return strconv.FormatFloat(100**s, 'f', 0, 64) + "%"
}
