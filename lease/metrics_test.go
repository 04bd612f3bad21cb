package lease

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestMetrics: a series exists only where there is something to say, so
// that static mode and an unknown expiry never read as an expired lease.
func TestMetrics(t *testing.T) {
	expiry := time.Unix(1700000000, 500000000)
	for _, tc := range []struct {
		name   string
		status Status
		ok     bool
		want   map[string]float64
	}{
		{"static mode", Status{Expiry: expiry, Etcd: &EtcdStatus{Connected: true}}, false, map[string]float64{}},
		{"nothing known yet", Status{}, true, map[string]float64{}},
		{"lease, no etcd state", Status{Expiry: expiry}, true, map[string]float64{
			"weft_lease_expiry_timestamp_seconds": 1700000000.5,
		}},
		{"etcd down", Status{Etcd: &EtcdStatus{WatchEvents: 3}}, true, map[string]float64{
			"weft_etcd_connected": 0, "weft_etcd_watch_events_total": 3,
		}},
		{"all known", Status{Expiry: expiry, Etcd: &EtcdStatus{Connected: true, WatchEvents: 7}}, true, map[string]float64{
			"weft_lease_expiry_timestamp_seconds": 1700000000.5, "weft_etcd_connected": 1, "weft_etcd_watch_events_total": 7,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewPedanticRegistry()
			reg.MustRegister(Metrics(func() (Status, bool) { return tc.status, tc.ok }))
			fams, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]float64{}
			for _, f := range fams {
				for _, m := range f.GetMetric() {
					got[f.GetName()] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
				}
			}
			if len(got) != len(tc.want) {
				t.Fatalf("series %v, want %v", got, tc.want)
			}
			for name, v := range tc.want {
				if g, ok := got[name]; !ok || g != v {
					t.Errorf("%s = %v (present %v), want %v", name, g, ok, v)
				}
			}
		})
	}
}
