package engine

import "github.com/prometheus/client_golang/prometheus"

var (
	descDumps   = prometheus.NewDesc("weft_dumps_active", "Packet dumps (weft dump) running.", nil, nil)
	descDumpCap = prometheus.NewDesc("weft_dump_captured_total", "Packets the tap queued for dump readers.", nil, nil)
	descDumpDrp = prometheus.NewDesc("weft_dump_dropped_total", "Packets a dump matched but dropped because its reader did not keep up; forwarding never waits for a reader.", nil, nil)
)

// TapMetrics is a collector of the packet tap's metrics (see DumpStats):
// the dumps running, and the packets they were given and lost.
func (e *Engine) TapMetrics() prometheus.Collector { return tapMetrics{e} }

type tapMetrics struct{ e *Engine }

func (m tapMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- descDumps
	ch <- descDumpCap
	ch <- descDumpDrp
}

func (m tapMetrics) Collect(ch chan<- prometheus.Metric) {
	ds := m.e.DumpStats()
	gauge(ch, descDumps, float64(ds.Active))
	counter(ch, descDumpCap, ds.Captured)
	counter(ch, descDumpDrp, ds.Dropped)
}
