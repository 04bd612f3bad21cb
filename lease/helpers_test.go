package lease

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
)

// fastEtcd makes a test etcd quick to elect and cheap on a shared machine.
// With 50ms ticks etcd's shortest lease TTL is about 1s.
func fastEtcd(c *embed.Config) {
	c.TickMs, c.ElectionMs = 50, 500
	c.UnsafeNoFsync = true
}

// startEtcd runs a single-member etcd for one test on a free loopback port,
// with its data in t.TempDir(); it is stopped when the test ends.
func startEtcd(t *testing.T) *Etcd {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	e, err := StartEtcd(ctx, EtcdOptions{
		Dir:       filepath.Join(t.TempDir(), "etcd"), // etcd wants to create it 0700
		ClientURL: "http://127.0.0.1:0",
		Logger:    testLogger(t),
		tweak:     fastEtcd,
	})
	if err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	t.Cleanup(e.Close)
	return e
}

// testOutput forwards to the test's output until the test is over, and drops
// what goroutines still log after that (t.Output would panic).
type testOutput struct {
	mu   sync.Mutex
	w    io.Writer
	done bool
}

func newTestOutput(t *testing.T) *testOutput {
	o := &testOutput{w: t.Output()}
	t.Cleanup(func() { // registered first, so it runs last
		o.mu.Lock()
		o.done = true
		o.mu.Unlock()
	})
	return o
}

func (o *testOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.done {
		return len(p), nil
	}
	return o.w.Write(p)
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(newTestOutput(t), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// testOptions are quick to retry and log into the test's output.
func testOptions(t *testing.T, endpoints ...string) Options {
	return Options{
		Endpoints:      endpoints,
		RequestTimeout: 2 * time.Second,
		Logger:         testLogger(t),
		retryMin:       20 * time.Millisecond,
		retryMax:       200 * time.Millisecond,
	}
}

func openRegistry(t *testing.T, opts Options) *Registry {
	t.Helper()
	r, err := Open(opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// logBuffer collects log lines for tests that count them, and echoes them to
// the test's output.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	out io.Writer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	return l.out.Write(p)
}

func (l *logBuffer) count(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.buf.String(), substr)
}

func capture(t *testing.T, opts *Options) *logBuffer {
	lb := &logBuffer{out: newTestOutput(t)}
	opts.Logger = slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return lb
}

const testConfig = `{"Network":"100.96.0.0/16","SubnetLen":24,"Backend":{"Type":"udp","Port":8285}}`

// parsedConfig parses a network config for a test, such as testConfig.
func parsedConfig(t testing.TB, raw string) Config {
	t.Helper()
	c, err := ParseConfig([]byte(raw))
	if err != nil {
		t.Fatalf("config %s: %v", raw, err)
	}
	return c
}

func mustPut(t *testing.T, cli *clientv3.Client, key, val string, opts ...clientv3.OpOption) {
	t.Helper()
	if _, err := cli.Put(t.Context(), key, val, opts...); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

func mustGrant(t *testing.T, cli *clientv3.Client, ttl int64) clientv3.LeaseID {
	t.Helper()
	resp, err := cli.Grant(t.Context(), ttl)
	if err != nil {
		t.Fatalf("grant: %v", err)
	}
	return resp.ID
}

// table is a consumer's route table, built by applying batches in order.
type table map[netip.Prefix]netip.Addr

func (tb table) apply(b Batch) {
	for _, r := range b.Routes {
		switch r.Op {
		case Add:
			tb[r.Subnet] = r.PublicIP
		case Remove:
			delete(tb, r.Subnet)
		}
	}
}

func (tb table) String() string {
	var s []string
	for p, a := range tb {
		s = append(s, p.String()+"="+a.String())
	}
	slices.Sort(s)
	return strings.Join(s, " ")
}

// next waits for the next batch, failing the test after a generous deadline.
func next(t *testing.T, ch <-chan Batch) Batch {
	t.Helper()
	select {
	case b, ok := <-ch:
		if !ok {
			t.Fatal("route channel closed")
		}
		return b
	case <-time.After(20 * time.Second):
		t.Fatal("no route batch within 20s")
	}
	return Batch{}
}

// eventually polls cond until it holds or a generous deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func ip(s string) netip.Addr    { return netip.MustParseAddr(s) }
