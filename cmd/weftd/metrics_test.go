package main

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weft-dev/weft/engine"
)

// gather returns each family's series count.
func gather(t *testing.T, host *hostState) map[string]int {
	t.Helper()
	reg := prometheus.NewPedanticRegistry() // checks descriptions and consistency too
	reg.MustRegister(collector{host})
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, f := range fams {
		got[f.GetName()] = len(f.GetMetric())
	}
	return got
}

func TestCollector(t *testing.T) {
	host := testHost(t)
	got := gather(t, host)
	for name, series := range map[string]int{
		"weft_packets_total":               2,
		"weft_bytes_total":                 2,
		"weft_drops_total":                 len(engine.DropReasons()),
		"weft_icmp_unreachable_sent_total": 1,
		"weft_batch_size_packets":          2,
		"weft_routes":                      1,
		"weft_peers":                       1,
		"weft_workers":                     1,
		"weft_offload_enabled":             3,
		"weft_udp_gso_fallbacks_total":     1,
		"weft_dumps_active":                1,
		"weft_dump_captured_total":         1,
		"weft_dump_dropped_total":          1,
		"weft_info":                        1,
	} {
		if got[name] != series {
			t.Errorf("%s: %d series, want %d", name, got[name], series)
		}
	}
	// Static mode: no lease, no etcd, and no zeros pretending otherwise.
	for _, name := range []string{"weft_lease_expiry_timestamp_seconds", "weft_etcd_connected", "weft_etcd_watch_events_total", "weft_leases_ignored_total"} {
		if got[name] != 0 {
			t.Errorf("%s exported in static mode", name)
		}
	}
	host.setLease(func() leaseState {
		return leaseState{Expiry: time.Now().Add(time.Hour), Etcd: &etcdState{Connected: true,
			IgnoredLeases: map[string]uint64{"outside_network": 2, "subnet_len": 0}}}
	})
	got = gather(t, host)
	for _, name := range []string{"weft_lease_expiry_timestamp_seconds", "weft_etcd_connected", "weft_etcd_watch_events_total"} {
		if got[name] != 1 {
			t.Errorf("%s: %d series in etcd mode, want 1", name, got[name])
		}
	}
	if n := got["weft_leases_ignored_total"]; n != 2 {
		t.Errorf("weft_leases_ignored_total: %d series in etcd mode, want one per reason (2)", n)
	}
	// An expiry not known yet is not exported as 0 (the epoch).
	host.setLease(func() leaseState { return leaseState{} })
	if got = gather(t, host); got["weft_lease_expiry_timestamp_seconds"] != 0 || got["weft_etcd_connected"] != 0 {
		t.Errorf("unknown lease state exported: %v", got)
	}
}
