package lease

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Status is what the etcd side knows at a moment, for metrics and `weft
// status`: the lease's expiry (zero if not known yet) and, if Etcd is set,
// the link to etcd.
type Status struct {
	// Mode names where the subnet comes from, for `weft status`: "" is
	// etcd; "kube" is a Kubernetes Node, whose link to the API server Etcd
	// then describes.
	Mode   string
	Expiry time.Time
	Etcd   *EtcdStatus
}

// EtcdStatus is the link to etcd.
type EtcdStatus struct {
	Connected   bool   // etcd answered the last request
	WatchEvents uint64 // watch events received since start
	// IgnoredLeases counts the leases the network config rules out, by
	// IgnoreReason's String; nil when not known.
	IgnoredLeases map[string]uint64
}

var (
	descExpiry  = prometheus.NewDesc("weft_lease_expiry_timestamp_seconds", "When this host's subnet lease in etcd runs out unless renewed, Unix time (etcd mode, once known).", nil, nil)
	descEtcdUp  = prometheus.NewDesc("weft_etcd_connected", "Whether weftd's link to etcd is up (1) or not (0); etcd mode only.", nil, nil)
	descWatch   = prometheus.NewDesc("weft_etcd_watch_events_total", "Events received on the watch of the subnet leases; etcd mode only.", nil, nil)
	descIgnored = prometheus.NewDesc("weft_leases_ignored_total", "Subnet leases in etcd left out of the routes because the network config could never have granted them, by reason: outside_network, subnet_len. Each key counts once per revision; etcd mode only.", []string{"reason"}, nil)
)

// Metrics is a collector of the lease's and etcd's metrics, read from
// status at each scrape. status must be cheap and safe for concurrent use;
// it returns false where there is no lease to speak of (static mode), and
// then the series do not exist rather than read 0, which would look like
// an expired lease. Likewise for a zero Expiry and a nil Etcd.
func Metrics(status func() (Status, bool)) prometheus.Collector { return metrics(status) }

type metrics func() (Status, bool)

func (m metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- descExpiry
	ch <- descEtcdUp
	ch <- descWatch
	ch <- descIgnored
}

func (m metrics) Collect(ch chan<- prometheus.Metric) {
	s, ok := m()
	if !ok {
		return
	}
	if !s.Expiry.IsZero() {
		ch <- prometheus.MustNewConstMetric(descExpiry, prometheus.GaugeValue, float64(s.Expiry.UnixNano())/1e9)
	}
	if s.Etcd != nil {
		up := 0.0
		if s.Etcd.Connected {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descEtcdUp, prometheus.GaugeValue, up)
		ch <- prometheus.MustNewConstMetric(descWatch, prometheus.CounterValue, float64(s.Etcd.WatchEvents))
		for reason, n := range s.Etcd.IgnoredLeases {
			ch <- prometheus.MustNewConstMetric(descIgnored, prometheus.CounterValue, float64(n), reason)
		}
	}
}
