package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/weft-dev/weft/engine"
)

// monitor serves /metrics, /healthz and /readyz.
type monitor struct {
	srv   *http.Server
	ready atomic.Bool
}

func startMonitor(addr string, eng *engine.Engine, log *slog.Logger) (*monitor, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		engineCollector{eng},
	)
	m := &monitor{}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	// Profiles of a live daemon: where forwarding time goes. The metrics
	// address is loopback by default.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !m.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr %q: %w", addr, err)
	}
	m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	log.Info("serving metrics", "addr", ln.Addr().String())
	go func() {
		if err := m.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "err", err)
		}
	}()
	return m, nil
}

func (m *monitor) setReady(v bool) { m.ready.Store(v) }

func (m *monitor) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	m.srv.Shutdown(ctx)
}

// engineCollector reads the engine's counters at scrape time, so counting on
// the forwarding path costs no more than the engine's own per-loop adds.
type engineCollector struct{ eng *engine.Engine }

var (
	descPackets = prometheus.NewDesc("weft_packets_total", "Packets forwarded, by direction: tx = TUN to peers, rx = peers to TUN.", []string{"direction"}, nil)
	descBytes   = prometheus.NewDesc("weft_bytes_total", "Bytes of inner packets forwarded, by direction.", []string{"direction"}, nil)
	descDrops   = prometheus.NewDesc("weft_drops_total", "Packets dropped, by reason.", []string{"reason"}, nil)
	descICMP    = prometheus.NewDesc("weft_icmp_unreachable_sent_total", "ICMP net unreachable answers written to the TUN.", nil, nil)
	descRoutes  = prometheus.NewDesc("weft_routes", "Routes in the forwarding table.", nil, nil)
)

func (c engineCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPackets, descBytes, descDrops, descICMP, descRoutes} {
		ch <- d
	}
}

func (c engineCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.eng.Stats()
	ch <- prometheus.MustNewConstMetric(descPackets, prometheus.CounterValue, float64(s.TxPackets), "tx")
	ch <- prometheus.MustNewConstMetric(descPackets, prometheus.CounterValue, float64(s.RxPackets), "rx")
	ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, float64(s.TxBytes), "tx")
	ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, float64(s.RxBytes), "rx")
	for _, d := range engine.DropReasons() {
		ch <- prometheus.MustNewConstMetric(descDrops, prometheus.CounterValue, float64(s.Dropped(d)), d.String())
	}
	ch <- prometheus.MustNewConstMetric(descICMP, prometheus.CounterValue, float64(s.ICMPSent))
	ch <- prometheus.MustNewConstMetric(descRoutes, prometheus.GaugeValue, float64(c.eng.Routes().Len()))
}
