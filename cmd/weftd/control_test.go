package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weft-dev/weft/control"
	"github.com/weft-dev/weft/engine"
)

// testHost is a hostState around an engine with no queues: enough to
// answer every request, no root needed.
func testHost(t *testing.T) *hostState {
	t.Helper()
	eng, err := engine.New(engine.Config{Subnet: netip.MustParsePrefix("100.96.1.0/24"), BatchSize: 8, MaxPacket: 1472})
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := engine.NewTable([]engine.Route{{Subnet: netip.MustParsePrefix("100.96.2.0/24"), Peer: netip.MustParseAddrPort("192.0.2.2:8285")}})
	if err != nil {
		t.Fatal(err)
	}
	eng.SetRoutes(tbl)
	return &hostState{eng: eng, started: time.Now(), network: netip.MustParsePrefix("100.96.0.0/16"),
		subnet: netip.MustParsePrefix("100.96.1.0/24"), publicIP: netip.MustParseAddr("192.0.2.1"),
		tun: "flannel0", mtu: 1472, workers: 2, batch: 8}
}

func testServer(t *testing.T, host *hostState) (*controlServer, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "run", "weftd.sock")
	s, err := startControl(path, host, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.close)
	return s, path
}

func TestControlSocketFile(t *testing.T) {
	s, path := testServer(t, testHost(t))
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want a socket with 0600", fi.Mode())
	}
	if di, err := os.Stat(filepath.Dir(path)); err != nil || di.Mode().Perm() != 0o755 {
		t.Errorf("parent directory: %v, %v; want mode 0755", di.Mode(), err)
	}
	// A second daemon on the same path is refused, the first left alone.
	if _, err := startControl(path, testHost(t), slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil || !strings.Contains(err.Error(), "another weftd") {
		t.Errorf("second server on a live socket: %v", err)
	}
	s.close()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("socket file left after close: %v", err)
	}
}

func TestControlStaleSocket(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "weftd.sock")
	// A socket file whose daemon is gone: nothing answers on it.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	s, err := startControl(path, testHost(t), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	s.close()

	// Anything else at the path is left alone.
	if err := os.WriteFile(path, []byte("not a socket"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := startControl(path, testHost(t), slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("regular file at the socket path: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "not a socket" {
		t.Errorf("the file was touched")
	}
}

func TestControlStatusAndRoutes(t *testing.T) {
	host := testHost(t)
	_, path := testServer(t, host)
	c := &control.Client{Path: path}
	ctx := context.Background()
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Subnet != "100.96.1.0/24" || st.PublicIP != "192.0.2.1" || st.Mode != "static" || st.Routes != 1 || st.Peers != 1 || st.Workers != 2 {
		t.Errorf("status %+v", st)
	}
	if st.Lease != nil || st.Etcd != nil {
		t.Errorf("static mode reports a lease %v or etcd %v", st.Lease, st.Etcd)
	}
	for _, d := range engine.DropReasons() {
		if _, ok := st.Counters.Drops[d.String()]; !ok {
			t.Errorf("drop reason %s missing from the status", d)
		}
	}
	routes, err := c.Routes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(routes) != 1 || routes[0].Subnet != "100.96.2.0/24" || routes[0].Peer != "192.0.2.2:8285" || routes[0].Since.IsZero() {
		t.Errorf("routes %+v", routes)
	}

	// With the etcd side plugged in, status says what it knows.
	expiry := time.Now().Add(24 * time.Hour).Round(time.Second)
	host.setLease(func() leaseState {
		return leaseState{Expiry: expiry, Etcd: &etcdState{Connected: true, WatchEvents: 7}}
	})
	st, err = c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode != "etcd" || st.Lease == nil || !st.Lease.Expiry.Equal(expiry) || st.Etcd == nil || !st.Etcd.Connected || st.Etcd.WatchEvents != 7 {
		t.Errorf("etcd mode status: mode %s, lease %+v, etcd %+v", st.Mode, st.Lease, st.Etcd)
	}
}

// TestControlBadRequests: every malformed request gets an error answer,
// and the server goes on serving.
func TestControlBadRequests(t *testing.T) {
	_, path := testServer(t, testHost(t))
	for _, tc := range []struct{ send, want string }{
		{"hello\n", "request: invalid character"},
		{`{"op":"reboot"}` + "\n", `unknown op "reboot"`},
		{`{"op":"dump","dump":{"filter":"port 99999"}}` + "\n", "port wants a number"},
		{strings.Repeat("x", control.MaxRequest+10), "longer than"},
		{"", "request: empty"}, // the client closes without a word
	} {
		conn, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		conn.Write([]byte(tc.send))
		conn.(*net.UnixConn).CloseWrite()
		var resp control.Response
		err = json.NewDecoder(conn).Decode(&resp)
		conn.Close()
		if err != nil || !strings.Contains(resp.Error, tc.want) {
			t.Errorf("sent %.30q: answer %+v, %v; want an error with %q", tc.send, resp, err, tc.want)
		}
	}
	if _, err := (&control.Client{Path: path}).Status(context.Background()); err != nil {
		t.Errorf("status after bad requests: %v", err)
	}
}

func TestControlDumpEnds(t *testing.T) {
	host := testHost(t)
	_, path := testServer(t, host)
	c := &control.Client{Path: path}
	// By duration, with nothing captured.
	s, err := c.Dump(context.Background(), control.DumpRequest{Stages: []string{"drop", "tun-in"}, DurationMS: 50})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(s.Started.Stages, ",") != "tun-in,drop" {
		t.Errorf("started stages %v", s.Started.Stages)
	}
	_, end, err := s.Next()
	if err != nil || end == nil || end.Reason != "duration" || end.Packets != 0 {
		t.Errorf("end %+v, %v; want the duration's end", end, err)
	}
	s.Close()
	// By the client closing its side.
	s, err = c.Dump(context.Background(), control.DumpRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if host.eng.DumpStats().Active != 1 {
		t.Errorf("%d dumps active, want 1", host.eng.DumpStats().Active)
	}
	s.Stop()
	_, end, err = s.Next()
	if err != nil || end == nil || end.Reason != "client" {
		t.Errorf("end %+v, %v; want the client's end", end, err)
	}
	s.Close()
	// Once the handler has returned, the tap is idle again: poll, the
	// handler's return is not synchronised with the end frame.
	deadline := time.Now().Add(10 * time.Second)
	for host.eng.DumpStats().Active != 0 {
		if time.Now().After(deadline) {
			t.Fatal("dump still active after its end")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestControlBusy: connections past the limit are told so, not queued.
func TestControlBusy(t *testing.T) {
	_, path := testServer(t, testHost(t))
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for range maxControlConns {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c) // says nothing: holds a slot until its request times out
	}
	// The server takes the held connections in order; the next one is refused.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if strings.Contains(line, "busy") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("never refused as busy; last answer %q", line)
		}
	}
}

// TestServeControlDefaultShared: a second weftd on the default path goes on
// without a control socket; on a path given explicitly it fails.
func TestServeControlDefaultShared(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if s, err := serveControl("", testHost(t), log); s != nil || err != nil {
		t.Errorf("empty path: %v, %v; want no server, no error", s, err)
	}
	_, path := testServer(t, testHost(t))
	if _, err := serveControl(path, testHost(t), log); !errors.Is(err, errSocketInUse) {
		t.Errorf("explicit path in use: %v, want errSocketInUse", err)
	}
}

// TestControlShutdownEndsDumps: stopping the server ends a running dump
// with its totals, and does not wait for the client.
func TestControlShutdownEndsDumps(t *testing.T) {
	s, path := testServer(t, testHost(t))
	stream, err := (&control.Client{Path: path}).Dump(context.Background(), control.DumpRequest{})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	s.close()
	_, end, err := stream.Next()
	if err != nil || end == nil || end.Reason != "shutdown" {
		t.Errorf("end %+v, %v; want the shutdown's end", end, err)
	}
}

// TestControlSocketCreatedPrivate: the socket file is created with mode 0600,
// whatever the process's umask, not made private after it exists: between the
// two, any local user could connect.
func TestControlSocketCreatedPrivate(t *testing.T) {
	old := syscall.Umask(0) // the widest a umask allows: 0777 for a socket
	t.Cleanup(func() { syscall.Umask(old) })
	path := filepath.Join(t.TempDir(), "weftd.sock")
	ln, err := listenPrivate(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket created with mode %v, want a socket with 0600", fi.Mode())
	}
	if now := syscall.Umask(0); now != 0 {
		t.Errorf("umask %#o after listenPrivate, want the process's own (0) back", now)
	}
}
