package main

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"

	"github.com/weft-dev/weft/engine"
)

// collector reads the engine's counters and weftd's state at scrape time,
// so counting on the forwarding path costs no more than the engine's own
// per-loop adds. Names follow Prometheus conventions: prefix weft_,
// counters end in _total, units in the name, few and bounded labels (no
// per-route or per-peer series: `weft routes` has those).
type collector struct{ host *hostState }

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	descPackets = desc("weft_packets_total", "Packets forwarded, by direction: tx = TUN to peers, rx = peers to TUN.", "direction")
	descBytes   = desc("weft_bytes_total", "Bytes of inner packets forwarded, by direction.", "direction")
	descDrops   = desc("weft_drops_total", "Packets dropped, by reason (every reason, zero or not).", "reason")
	descICMP    = desc("weft_icmp_unreachable_sent_total", "ICMP net unreachable answers written to the TUN.")
	descBatch   = desc("weft_batch_size_packets", "Packets per batch read: from the TUN (tx) or from the socket (rx).", "direction")
	descRoutes  = desc("weft_routes", "Routes in the forwarding table.")
	descPeers   = desc("weft_peers", "Distinct peer hosts the forwarding table routes to.")
	descWorkers = desc("weft_workers", "Forwarding workers, each with a TUN queue and a socket.")
	descOffload = desc("weft_offload_enabled", "Whether a segmentation offload is in use (1) or not (0): tun (virtio-net header), udp_gso (UDP_SEGMENT), udp_gro (UDP_GRO).", "offload")
	descGSOFall = desc("weft_udp_gso_fallbacks_total", "Sends that fell back to one datagram per message after the kernel refused UDP_SEGMENT.")
	descDumps   = desc("weft_dumps_active", "Packet dumps (weft dump) running.")
	descDumpCap = desc("weft_dump_captured_total", "Packets the tap queued for dump readers.")
	descDumpDrp = desc("weft_dump_dropped_total", "Packets a dump matched but dropped because its reader did not keep up; forwarding never waits for a reader.")
	descInfo    = desc("weft_info", "This host's overlay settings, as labels; the value is 1.", "network", "subnet", "public_ip", "tun")
	descExpiry  = desc("weft_lease_expiry_timestamp_seconds", "When this host's subnet lease in etcd runs out unless renewed, Unix time (etcd mode, once known).")
	descEtcdUp  = desc("weft_etcd_connected", "Whether weftd's link to etcd is up (1) or not (0); etcd mode only.")
	descWatch   = desc("weft_etcd_watch_events_total", "Events received on the watch of the subnet leases; etcd mode only.")
	descIgnored = desc("weft_leases_ignored_total", "Subnet leases in etcd left out of the routes because the network config could never have granted them, by reason: outside_network, subnet_len. Each key counts once per revision; etcd mode only.", "reason")
	descTUNDrop = desc("weft_tun_kernel_dropped_total", "Packets the kernel dropped at the TUN device before weftd could read them (its tx_dropped: the device's queue was full), which weft_drops_total cannot see.")

	allDescs = []*prometheus.Desc{
		descPackets, descBytes, descDrops, descICMP, descBatch, descRoutes, descPeers, descWorkers,
		descOffload, descGSOFall, descDumps, descDumpCap, descDumpDrp, descInfo, descExpiry, descEtcdUp, descWatch, descIgnored, descTUNDrop,
	}
)

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	h := c.host
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	s := h.eng.Stats()
	counter(descPackets, s.TxPackets, "tx")
	counter(descPackets, s.RxPackets, "rx")
	counter(descBytes, s.TxBytes, "tx")
	counter(descBytes, s.RxBytes, "rx")
	for _, d := range engine.DropReasons() {
		counter(descDrops, s.Dropped(d), d.String())
	}
	counter(descICMP, s.ICMPSent)
	ch <- batchHistogram(s.TxBatches, "tx")
	ch <- batchHistogram(s.RxBatches, "rx")

	table := h.eng.Routes()
	gauge(descRoutes, float64(table.Len()))
	gauge(descPeers, float64(table.PeerCount()))
	gauge(descWorkers, float64(h.workers))

	o := h.offloads()
	gauge(descOffload, b2f(o.TUN), "tun")
	gauge(descOffload, b2f(o.UDPGSO), "udp_gso")
	gauge(descOffload, b2f(o.UDPGRO), "udp_gro")
	counter(descGSOFall, o.GSOFallbacks)

	ds := h.eng.DumpStats()
	gauge(descDumps, float64(ds.Active))
	counter(descDumpCap, ds.Captured)
	counter(descDumpDrp, ds.Dropped)
	gauge(descInfo, 1, h.network.String(), h.subnet.String(), h.publicIP.String(), h.tun)
	if link, err := netlink.LinkByName(h.tun); err == nil && link.Attrs().Statistics != nil {
		counter(descTUNDrop, link.Attrs().Statistics.TxDropped)
	}

	// What etcd mode knows; in static mode these series do not exist
	// rather than read 0, which would look like an expired lease.
	if ls, ok := h.leaseState(); ok {
		if !ls.Expiry.IsZero() {
			gauge(descExpiry, float64(ls.Expiry.UnixNano())/1e9)
		}
		if ls.Etcd != nil {
			gauge(descEtcdUp, b2f(ls.Etcd.Connected))
			counter(descWatch, ls.Etcd.WatchEvents)
			for reason, n := range ls.Etcd.IgnoredLeases {
				counter(descIgnored, n, reason)
			}
		}
	}
}

// batchHistogram turns the engine's per-bucket counts into Prometheus's
// cumulative buckets.
func batchHistogram(b engine.BatchSizes, direction string) prometheus.Metric {
	bounds := engine.BatchBounds()
	buckets := make(map[float64]uint64, len(bounds))
	var cum uint64
	for i, le := range bounds {
		cum += b.Buckets[i]
		buckets[le] = cum
	}
	return prometheus.MustNewConstHistogram(descBatch, b.Batches(), float64(b.Packets), buckets, direction)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
