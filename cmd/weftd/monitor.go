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
)

// monitor serves /metrics, /healthz and /readyz on --metrics-addr, and
// /healthz and /readyz alone on flanneld's --healthz-ip:--healthz-port, for
// probes that know flanneld's port. /healthz answers 200 while weftd runs;
// /readyz answers 503 until the routes are in, then 200.
type monitor struct {
	srvs  []*http.Server
	ready atomic.Bool
}

// startMonitor starts the servers whose addresses are not empty.
func startMonitor(addr string, profiles bool, healthzAddr string, host *hostState, log *slog.Logger) (*monitor, error) {
	m := &monitor{}
	if addr != "" {
		reg := prometheus.NewRegistry()
		reg.MustRegister(
			collectors.NewGoCollector(),
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
			collector{host}, // metrics.go
		)
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		if profiles {
			// Profiles of a live daemon: where forwarding time goes. Off by
			// default: operators often open the metrics address to their
			// Prometheus, and profiles and heap dumps are not for everyone.
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		}
		m.handleHealth(mux)
		if err := m.serve("--metrics-addr", addr, mux, "serving metrics", log); err != nil {
			return nil, err
		}
	}
	if healthzAddr != "" {
		mux := http.NewServeMux()
		m.handleHealth(mux)
		if err := m.serve("--healthz-ip/--healthz-port", healthzAddr, mux, "serving healthz", log); err != nil {
			m.close()
			return nil, err
		}
	}
	return m, nil
}

func (m *monitor) handleHealth(mux *http.ServeMux) {
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !m.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
}

func (m *monitor) serve(flagName, addr string, h http.Handler, what string, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s %q: %w", flagName, addr, err)
	}
	// IdleTimeout: a scraper that keeps its connection open but goes away
	// must not leave a connection and its goroutine behind for ever.
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 90 * time.Second}
	m.srvs = append(m.srvs, srv)
	log.Info(what, "addr", ln.Addr().String())
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error(what, "err", err)
		}
	}()
	return nil
}

func (m *monitor) setReady(v bool) { m.ready.Store(v) }

func (m *monitor) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for _, s := range m.srvs {
		s.Shutdown(ctx)
	}
}
