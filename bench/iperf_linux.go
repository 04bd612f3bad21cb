package bench

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/weft-dev/weft/netlab"
)

const iperfPort = 5201

// iperfSlack is how long past its -t an iperf3 client may take (connect,
// result exchange) before the harness gives up on it.
const iperfSlack = 20 * time.Second

// startIperfServer starts `iperf3 -s` bound to addr in ns and waits until it
// listens.
func startIperfServer(ctx context.Context, t *netlab.Topology, ns, dir string, addr netip.Addr) (*daemon, error) {
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
		if netlab.Listening(d.pid(), iperfPort) {
			return d, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			_ = d.stop()
			return nil, fmt.Errorf("iperf3 -s not listening after 10s%s", d.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runIperf runs an iperf3 client in ns against server and returns its JSON.
// A run the server refuses as busy (the previous test still closing) is
// retried once.
func runIperf(ctx context.Context, t *netlab.Topology, ns string, server netip.Addr, d time.Duration, extra ...string) ([]byte, error) {
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
