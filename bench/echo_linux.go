package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/weft-dev/weft/netlab"
)

// Request/response latency is measured with a UDP echo pair that runs inside
// the harness: the server's socket is opened in the server's namespace, the
// client's in the client's (see netlab.ListenUDP). One request is in flight at a
// time, like netperf's UDP_RR, so each round trip is the dataplane's latency
// both ways plus a socket wake-up at each end. Compared with parsing ping, it
// times with nanosecond resolution, is not rate limited to ICMP's minimum
// interval, and crosses the same UDP socket path real applications do.

const (
	echoPort    = 7007
	echoPayload = 64
	// echoTimeout counts a request as lost; well above any round trip on
	// one machine, well below the run so a loss costs little time.
	echoTimeout = 200 * time.Millisecond
	// echoMaxRequests bounds the loop even if the clock misbehaves.
	echoMaxRequests = 2_000_000
)

// Latency is the result of one echo run.
type Latency struct {
	Requests int
	Lost     int
	P50      time.Duration
	P99      time.Duration
	Seconds  float64
}

// echoServer answers every datagram with itself until the socket closes.
func echoServer(conn *net.UDPConn) {
	buf := make([]byte, 2048)
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		_, _ = conn.WriteToUDPAddrPort(buf[:n], from)
	}
}

// runEcho times round trips from clientNS to server:echoPort for d.
func runEcho(ctx context.Context, clientNS, serverNS string, server netip.Addr, d time.Duration) (Latency, error) {
	srv, err := netlab.ListenUDP(serverNS, &net.UDPAddr{IP: server.AsSlice(), Port: echoPort})
	if err != nil {
		return Latency{}, fmt.Errorf("echo server: %w", err)
	}
	defer srv.Close()
	go echoServer(srv)

	cli, err := netlab.DialUDP(clientNS, &net.UDPAddr{IP: server.AsSlice(), Port: echoPort})
	if err != nil {
		return Latency{}, fmt.Errorf("echo client: %w", err)
	}
	defer cli.Close()
	// Closing the socket is what interrupts a blocked read on Ctrl-C.
	stop := context.AfterFunc(ctx, func() { cli.Close() })
	defer stop()

	var (
		req  = make([]byte, echoPayload)
		resp = make([]byte, 2048)
		rtts = make([]float64, 0, 1<<16)
		lat  Latency
	)
	start := time.Now()
	deadline := start.Add(d)
	for seq := uint64(1); seq <= echoMaxRequests && time.Now().Before(deadline); seq++ {
		binary.BigEndian.PutUint64(req, seq)
		t0 := time.Now()
		if _, err := cli.Write(req); err != nil {
			if ctx.Err() != nil {
				return lat, ctx.Err()
			}
			// ICMP errors (no route yet, port unreachable) surface here.
			lat.Lost++
			time.Sleep(time.Millisecond)
			continue
		}
		lat.Requests++
		if err := readEcho(cli, resp, seq, t0.Add(echoTimeout)); err != nil {
			if ctx.Err() != nil {
				return lat, ctx.Err()
			}
			lat.Lost++
			continue
		}
		rtts = append(rtts, float64(time.Since(t0)))
	}
	lat.Seconds = time.Since(start).Seconds()
	if len(rtts) == 0 {
		return lat, fmt.Errorf("echo: no reply to %d requests", lat.Requests)
	}
	slices.Sort(rtts)
	lat.P50 = time.Duration(Percentile(rtts, 50))
	lat.P99 = time.Duration(Percentile(rtts, 99))
	return lat, nil
}

// readEcho reads until the reply to seq arrives or the deadline passes; late
// replies to earlier requests are skipped.
func readEcho(c *net.UDPConn, buf []byte, seq uint64, deadline time.Time) error {
	if err := c.SetReadDeadline(deadline); err != nil {
		return err
	}
	for {
		n, err := c.Read(buf)
		if err != nil {
			return err
		}
		if n >= 8 && binary.BigEndian.Uint64(buf) == seq {
			return nil
		}
		if n < 8 {
			return errors.New("echo: short reply")
		}
	}
}
