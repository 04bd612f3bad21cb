package engine

import "github.com/prometheus/client_golang/prometheus"

// The engine's metrics are read from its counters at scrape time, so that
// counting on the forwarding path costs no more than the loops' own adds.
// Names follow Prometheus conventions: prefix weft_, counters end in
// _total, units in the name, few and bounded labels (no per-route or
// per-peer series: `weft routes` has those).
var (
	descPackets = prometheus.NewDesc("weft_packets_total", "Packets forwarded, by direction: tx = TUN to peers, rx = peers to TUN.", []string{"direction"}, nil)
	descBytes   = prometheus.NewDesc("weft_bytes_total", "Bytes of inner packets forwarded, by direction.", []string{"direction"}, nil)
	descDrops   = prometheus.NewDesc("weft_drops_total", "Packets dropped, by reason (every reason, zero or not).", []string{"reason"}, nil)
	descICMP    = prometheus.NewDesc("weft_icmp_unreachable_sent_total", "ICMP net unreachable answers written to the TUN.", nil, nil)
	descBatch   = prometheus.NewDesc("weft_batch_size_packets", "Packets per batch read: from the TUN (tx) or from the socket (rx).", []string{"direction"}, nil)
	descRoutes  = prometheus.NewDesc("weft_routes", "Routes in the forwarding table.", nil, nil)
	descPeers   = prometheus.NewDesc("weft_peers", "Distinct peer hosts the forwarding table routes to.", nil, nil)
)

// Metrics is a collector of the engine's forwarding metrics: packets and
// bytes by direction, drops by reason, ICMP answers, batch sizes and the
// route table. The tap's are TapMetrics.
func (e *Engine) Metrics() prometheus.Collector { return metrics{e} }

type metrics struct{ e *Engine }

func (m metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPackets, descBytes, descDrops, descICMP, descBatch, descRoutes, descPeers} {
		ch <- d
	}
}

func (m metrics) Collect(ch chan<- prometheus.Metric) {
	s := m.e.Stats()
	counter(ch, descPackets, s.TxPackets, "tx")
	counter(ch, descPackets, s.RxPackets, "rx")
	counter(ch, descBytes, s.TxBytes, "tx")
	counter(ch, descBytes, s.RxBytes, "rx")
	for _, d := range DropReasons() {
		counter(ch, descDrops, s.Dropped(d), d.String())
	}
	counter(ch, descICMP, s.ICMPSent)
	ch <- batchHistogram(s.TxBatches, "tx")
	ch <- batchHistogram(s.RxBatches, "rx")

	table := m.e.Routes()
	gauge(ch, descRoutes, float64(table.Len()))
	gauge(ch, descPeers, float64(table.PeerCount()))
}

// batchHistogram turns the engine's per-bucket counts into Prometheus's
// cumulative buckets.
func batchHistogram(b BatchSizes, direction string) prometheus.Metric {
	bounds := BatchBounds()
	buckets := make(map[float64]uint64, len(bounds))
	var cum uint64
	for i, le := range bounds {
		cum += b.Buckets[i]
		buckets[le] = cum
	}
	return prometheus.MustNewConstHistogram(descBatch, b.Batches(), float64(b.Packets), buckets, direction)
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v uint64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}
