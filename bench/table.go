package bench

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// WriteMarkdown renders the results as Markdown: the medians with their
// spread and what each mode is, then each mode's ratio to underlay and to
// vxlan, the lever-by-lever tables, then any failures.
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
	for _, c := range r.Levers {
		c.writeMarkdown(&b)
	}
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

// writeMarkdown renders one lever-by-lever table, its total last.
func (c LeverChain) writeMarkdown(b *strings.Builder) {
	title := "Lever by lever"
	if c.UnderlayGSO == UnderlayGSOOff {
		title += ", underlay UDP segmentation off"
	}
	fmt.Fprintf(b, "\n%s (TCP 1 stream; each row adds its lever to the row above; gain: median of per-round ratios "+
		"to the row above; share: the step's part of the whole gain on a log scale, log gain / log of all gains):\n\n", title)
	header := []string{"mode", "adds", "TCP 1 stream (Gbit/s)", "gain", "share"}
	rows := [][]string{}
	for _, s := range c.Steps {
		rows = append(rows, []string{s.Mode, s.Adds, statCell(map[string]Stat{MTCP1: s.TCP1}, MTCP1, true),
			gainCell(s.Gain), shareCell(s.Share)})
	}
	if c.Total != nil && len(c.Steps) > 2 { // with two, the total is the second row
		one := 1.0
		var share *float64
		if c.Steps[len(c.Steps)-1].Share != nil {
			share = &one
		}
		rows = append(rows, []string{c.Steps[0].Mode + " → " + c.Steps[len(c.Steps)-1].Mode, "all of the above", "",
			gainCell(c.Total), shareCell(share)})
	}
	writeTable(b, header, rows)
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
