package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/weft-dev/weft/lease"
	"github.com/weft-dev/weft/tun"
)

// collector gathers weftd's metrics: each component's, declared beside it
// (engine.Metrics, engine.TapMetrics, tun.Metrics, lease.Metrics), and
// weftd's own, which describe the choices it made: workers, offloads and
// the host's settings. All are read at scrape time. Names follow
// Prometheus conventions: prefix weft_, counters end in _total, units in
// the name, few and bounded labels.
type collector struct{ host *hostState }

var (
	descWorkers = prometheus.NewDesc("weft_workers", "Forwarding workers, each with a TUN queue and a socket.", nil, nil)
	descOffload = prometheus.NewDesc("weft_offload_enabled", "Whether a segmentation offload is in use (1) or not (0): tun (virtio-net header), udp_gso (UDP_SEGMENT), udp_gro (UDP_GRO).", []string{"offload"}, nil)
	descGSOFall = prometheus.NewDesc("weft_udp_gso_fallbacks_total", "Sends that fell back to one datagram per message after the kernel refused UDP_SEGMENT.", nil, nil)
	descInfo    = prometheus.NewDesc("weft_info", "This host's overlay settings, as labels; the value is 1.", []string{"network", "subnet", "public_ip", "tun"}, nil)
)

// components are the collectors of the parts weftd wires together.
func (c collector) components() []prometheus.Collector {
	h := c.host
	return []prometheus.Collector{
		h.eng.Metrics(),
		h.eng.TapMetrics(),
		tun.Metrics(h.tun),
		lease.Metrics(h.leaseState),
	}
}

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, p := range c.components() {
		p.Describe(ch)
	}
	for _, d := range []*prometheus.Desc{descWorkers, descOffload, descGSOFall, descInfo} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range c.components() {
		p.Collect(ch)
	}
	h := c.host
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(descWorkers, float64(h.workers))
	o := h.offloads()
	gauge(descOffload, b2f(o.TUN), "tun")
	gauge(descOffload, b2f(o.UDPGSO), "udp_gso")
	gauge(descOffload, b2f(o.UDPGRO), "udp_gro")
	ch <- prometheus.MustNewConstMetric(descGSOFall, prometheus.CounterValue, float64(o.GSOFallbacks))
	gauge(descInfo, 1, h.network.String(), h.subnet.String(), h.publicIP.String(), h.tun)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
