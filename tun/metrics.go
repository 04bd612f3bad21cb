package tun

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"
)

var descKernelDropped = prometheus.NewDesc("weft_tun_kernel_dropped_total",
	"Packets the kernel dropped at the TUN device before weftd could read them (its tx_dropped: the device's queue was full), which weft_drops_total cannot see.", nil, nil)

// Metrics is a collector of what the kernel counts for the TUN device
// named name: the packets it dropped because no queue reader kept up. The
// series is absent while the device or its statistics cannot be read.
func Metrics(name string) prometheus.Collector { return metrics(name) }

type metrics string

func (m metrics) Describe(ch chan<- *prometheus.Desc) { ch <- descKernelDropped }

func (m metrics) Collect(ch chan<- prometheus.Metric) {
	link, err := netlink.LinkByName(string(m))
	if err != nil || link.Attrs().Statistics == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(descKernelDropped, prometheus.CounterValue, float64(link.Attrs().Statistics.TxDropped))
}
