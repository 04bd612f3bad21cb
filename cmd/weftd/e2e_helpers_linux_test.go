package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/weft-dev/weft/internal/roottest"
	"github.com/weft-dev/weft/netlab"
)

// needRoot is roottest.NeedRoot with the tools every end-to-end test here
// runs.
func needRoot(t *testing.T) {
	t.Helper()
	roottest.NeedRoot(t, "ip", "ping", "ethtool")
}

var (
	buildOnce sync.Once
	weftdPath string
	buildErr  error
)

// buildWeftd builds this package's binary once per test run.
func buildWeftd(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "weftd-e2e-bin")
		if err != nil {
			buildErr = err
			return
		}
		weftdPath = filepath.Join(dir, "weftd")
		out, err := exec.Command("go", "build", "-o", weftdPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return weftdPath
}

// newTopology builds hosts with pods in namespaces named after this test
// process, removed when the test ends, pass or fail.
func newTopology(t *testing.T, tag string, hosts int) *netlab.Topology {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topo, err := netlab.New(ctx, netlab.Config{
		Prefix: fmt.Sprintf("w%s%d", tag, os.Getpid()%100000),
		Hosts:  hosts,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := topo.Close(); err != nil {
			t.Errorf("remove namespaces: %v", err)
		}
	})
	if err := topo.SetPodMTU(1500 - 28); err != nil {
		t.Fatal(err)
	}
	return topo
}

// daemon is a weftd started by a test in a host namespace.
type daemon struct {
	t       *testing.T
	cmd     *exec.Cmd
	log     string
	metrics string // host:port inside the namespace
	ns      string
	done    chan struct{}
	err     error
}

// startWeftd runs weftd in ns with args plus a metrics address; it is
// stopped (SIGTERM, then SIGKILL) when the test ends.
func startWeftd(t *testing.T, topo *netlab.Topology, ns string, metricsPort int, args ...string) *daemon {
	t.Helper()
	return startWeftdEnv(t, topo, ns, metricsPort, nil, args...)
}

// startWeftdEnv is startWeftd with the environment environ (nil: the
// test's own).
func startWeftdEnv(t *testing.T, topo *netlab.Topology, ns string, metricsPort int, environ []string, args ...string) *daemon {
	t.Helper()
	bin := buildWeftd(t)
	d := &daemon{t: t, ns: ns, metrics: "127.0.0.1:" + strconv.Itoa(metricsPort), done: make(chan struct{})}
	d.log = filepath.Join(t.TempDir(), ns+".log")
	logf, err := os.Create(d.log)
	if err != nil {
		t.Fatal(err)
	}
	args = append(args, "--metrics-addr", d.metrics)
	if !slices.Contains(args, "--control-socket") {
		// The default, /run/weft/weftd.sock, is one per machine, and the
		// hosts of a test share the machine's file system.
		args = append(args, "--control-socket", filepath.Join(t.TempDir(), "weftd.sock"))
	}
	d.cmd = topo.Command(context.Background(), ns, append([]string{bin}, args...)...)
	d.cmd.Stdout, d.cmd.Stderr, d.cmd.Env = logf, logf, environ
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.err = d.cmd.Wait(); logf.Close(); close(d.done) }()
	t.Cleanup(func() {
		d.stop(10 * time.Second)
		if t.Failed() {
			b, _ := os.ReadFile(d.log)
			t.Logf("weftd in %s logged:\n%s", ns, b)
		}
	})
	return d
}

// stop sends SIGTERM and waits; past the timeout it kills. It returns the exit error.
func (d *daemon) stop(timeout time.Duration) error {
	select {
	case <-d.done:
		return d.err
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(timeout):
		d.t.Errorf("weftd in %s did not stop within %v of SIGTERM; killing it", d.ns, timeout)
		d.cmd.Process.Kill()
		<-d.done
	}
	return d.err
}

// inNS runs fn on a thread switched into the named namespace. Sockets fn
// opens stay in that namespace after it returns.
func inNS(ns string, fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	h, err := netns.GetFromName(ns)
	if err != nil {
		return fmt.Errorf("netns %s: %w", ns, err)
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		return fmt.Errorf("enter netns %s: %w", ns, err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		// The thread is left in the wrong namespace: keep it locked so
		// that it dies with this goroutine instead of being reused.
		runtime.LockOSThread()
		return fmt.Errorf("leave netns %s: %w", ns, err)
	}
	return ferr
}

// get fetches path from the daemon's metrics address and fails unless the
// answer is 200 OK.
func (d *daemon) get(path string) error {
	resp, err := d.client().Get("http://" + d.metrics + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return nil
}

// client is an HTTP client that dials inside the daemon's namespace.
func (d *daemon) client() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			err = inNS(d.ns, func() error {
				var derr error
				c, derr = (&net.Dialer{}).DialContext(ctx, network, addr)
				return derr
			})
			return c, err
		},
	}}
}

// metricsOf scrapes the daemon's /metrics and returns each sample's value by
// its full name with labels, e.g. `weft_drops_total{reason="unknown-peer"}`.
func (d *daemon) metricsOf() (map[string]float64, error) {
	resp, err := d.client().Get("http://" + d.metrics + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return parseMetrics(resp.Body)
}

func parseMetrics(r io.Reader) (map[string]float64, error) {
	m := map[string]float64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("metric line %q: %w", line, err)
		}
		m[line[:i]] = v
	}
	return m, sc.Err()
}

// eventually polls cond every 100 ms until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, within, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ping pings dst from ns and returns ping's output.
func ping(topo *netlab.Topology, ns, dst string, count int) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(count+5)*time.Second)
	defer cancel()
	out, err := topo.Run(ctx, ns, "ping", "-c", strconv.Itoa(count), "-i", "0.2", "-W", "2", dst)
	return string(out), err
}

// startLogged starts cmd, a helper process of a test (an etcd member, an
// iperf3 server), with its output in a log file, and stops it by its PID
// when the test ends: SIGTERM, then SIGKILL after 10 s. A failed test shows
// the end of the log, headed by what. done closes when the process ends.
func startLogged(t *testing.T, cmd *exec.Cmd, what string) (done <-chan struct{}) {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "process.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ended := make(chan struct{})
	go func() { cmd.Wait(); close(ended) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-ended:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-ended
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("%s logged:\n%s", what, tail(string(b), 40))
		}
	})
	return ended
}
