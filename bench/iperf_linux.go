package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

const iperfPort = 5201

// iperfSlack is how long past its -t an iperf3 client may take (connect,
// result exchange) before the harness gives up on it.
const iperfSlack = 20 * time.Second

// startIperfServer starts `iperf3 -s` bound to addr in ns and waits until it
// listens.
func startIperfServer(ctx context.Context, t *Topology, ns, dir string, addr netip.Addr) (*daemon, error) {
	d, err := startDaemon(ctx, t, ns, dir, "iperf3-server-"+ns, "iperf3", "-s", "-B", addr.String(), "-p", strconv.Itoa(iperfPort))
	if err != nil {
		return nil, err
	}
	d.anyExit = true
	deadline := time.Now().Add(10 * time.Second)
	for {
		if ok, _ := d.exited(); ok {
			return nil, fmt.Errorf("iperf3 -s exited at start%s", d.logTail())
		}
		if Listening(d.pid(), iperfPort) {
			return d, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			_ = d.stop()
			return nil, fmt.Errorf("iperf3 -s not listening after 10s%s", d.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Listening reports whether the network namespace of process pid has a TCP
// socket listening on port. Looking in /proc/PID/net/tcp, rather than
// connecting, leaves no stray connection for iperf3 to complain about.
func Listening(pid, port int) bool {
	f, err := os.Open(fmt.Sprintf("/proc/%d/net/tcp", pid))
	if err != nil {
		return false
	}
	defer f.Close()
	want := fmt.Sprintf(":%04X", port)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// "sl local_address rem_address st ...": st 0A is LISTEN.
		fs := strings.Fields(sc.Text())
		if len(fs) > 3 && strings.HasSuffix(fs[1], want) && fs[3] == "0A" {
			return true
		}
	}
	return false
}

// runIperf runs an iperf3 client in ns against server and returns its JSON.
// A run the server refuses as busy (the previous test still closing) is
// retried once.
func runIperf(ctx context.Context, t *Topology, ns string, server netip.Addr, d time.Duration, extra ...string) ([]byte, error) {
	secs := max(int(d.Round(time.Second)/time.Second), 1)
	args := append([]string{"iperf3", "-c", server.String(), "-p", strconv.Itoa(iperfPort),
		"-t", strconv.Itoa(secs), "--json"}, extra...)
	var out []byte
	var err error
	for try := 0; try < 2; try++ {
		cctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+iperfSlack)
		out, err = t.Run(cctx, ns, args...)
		cancel()
		if err == nil || !bytes.Contains(out, []byte("busy")) || ctx.Err() != nil {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil {
		// iperf3 --json reports its failure inside the JSON; prefer that.
		if _, perr := parseIperf(out, ""); perr != nil && strings.HasPrefix(perr.Error(), "iperf3: ") {
			return nil, perr
		}
		return nil, err
	}
	return out, nil
}
