package lease

import (
	"log/slog"
	"net/netip"
	"runtime"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// BenchmarkRoutesFromPuts turns 10,000 lease put events (one watch response,
// as after a mass restart) into route events: key and value parsing, table
// update, route slice. It reports the cost per route.
func BenchmarkRoutesFromPuts(b *testing.B) {
	const n = 10000
	r := newRegistry(nil, Options{Prefix: DefaultPrefix, Logger: slog.New(slog.DiscardHandler)})
	cfg := parsedConfig(b, `{"Network":"10.0.0.0/8","SubnetLen":24}`)
	events := make([]*clientv3.Event, n)
	for i := range n {
		subnet := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24)
		host := netip.AddrFrom4([4]byte{192, 0, byte(2 + i/250), byte(1 + i%250)})
		events[i] = &clientv3.Event{Type: mvccpb.PUT, Kv: &mvccpb.KeyValue{
			Key:         []byte(r.subnetKey(subnet)),
			Value:       []byte(leaseValue(host)),
			ModRevision: int64(i + 2),
			Lease:       0x1234,
		}}
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ReportAllocs()
	for b.Loop() {
		w := newRouteWatch(r, cfg)
		if got := len(w.apply(events)); got != n {
			b.Fatalf("%d routes from %d puts", got, n)
		}
	}
	runtime.ReadMemStats(&after)
	per := float64(b.N) * n
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/per, "ns/route")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/per, "B/route")
}
