package lease

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestStartEtcd runs the embedded etcd as weftd does (no test speed-ups),
// writes the default config, and restarts it on the same data directory.
func TestStartEtcd(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etcd")
	logs := &logBuffer{out: newTestOutput(t)}
	log := slog.New(slog.NewTextHandler(logs, nil))
	start := func() *Etcd {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		e, err := StartEtcd(ctx, EtcdOptions{Dir: dir, ClientURL: "http://127.0.0.1:0", Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(e.Close)
		if !strings.HasPrefix(e.ClientURL(), "http://127.0.0.1:") || strings.HasSuffix(e.ClientURL(), ":0") {
			t.Errorf("ClientURL %q, want the port chosen", e.ClientURL())
		}
		return e
	}

	e := start()
	r, err := Open(testOptions(t, e.ClientURL()))
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := r.WriteDefaultConfig(t.Context(), pfx("100.96.0.0/16")); !ok || err != nil {
		t.Fatalf("WriteDefaultConfig: %v, %v", ok, err)
	}
	r.Close()
	e.Close()
	e.Close() // a second Close does nothing

	e = start()
	r = openRegistry(t, testOptions(t, e.ClientURL()))
	c, err := r.Config(t.Context())
	if err != nil || c.Network != pfx("100.96.0.0/16") {
		t.Fatalf("config after a restart: %+v, %v", c, err)
	}
	if n := logs.count("level=ERROR"); n != 0 {
		t.Errorf("etcd logged %d errors on a clean start, stop and restart", n)
	}

	if _, err := StartEtcd(t.Context(), EtcdOptions{}); err == nil {
		t.Error("StartEtcd without a data directory succeeded")
	}
	if _, err := StartEtcd(t.Context(), EtcdOptions{Dir: t.TempDir(), LogLevel: "loud"}); err == nil {
		t.Error("StartEtcd with a bad log level succeeded")
	}
}
