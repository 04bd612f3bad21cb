package bench

import (
	"context"
	"fmt"
	"time"
)

// A workload is one bounded measurement on a running mode. Each adds its
// figures to the round's values and returns a one-line summary for the
// progress output.
type workload struct {
	name string
	run  func(ctx context.Context, w *workRun) (string, error)
}

// workloads run in this order for every mode and round.
var workloads = []workload{
	{"tcp-1", tcpWorkload(1, MTCP1)},
	{"tcp-4", tcpWorkload(4, MTCP4)},
	{"udp-64", udpWorkload},
	{"rr", rrWorkload},
}

// udpPayload is the UDP payload of the packet-rate workload: small packets
// make the per-packet cost, not the per-byte cost, the limit.
const udpPayload = 64

// workRun is the state of one mode's workloads in one round.
type workRun struct {
	env    *Env
	dp     *Dataplane
	d      time.Duration
	values map[string]float64

	// CPU used while the TCP workloads ran, and the bytes they moved: CPU
	// per GB is measured on bulk transfer, where it is a cost per byte.
	cpuTicks, softirqTicks uint64
	cpuBytes               int64
	cpuErr                 error
}

// tcpWorkload runs iperf3 TCP with the given number of streams.
func tcpWorkload(streams int, key string) func(context.Context, *workRun) (string, error) {
	return func(ctx context.Context, w *workRun) (string, error) {
		before, cerr := readCPU(w.dp.PIDs())
		out, err := runIperf(ctx, w.env.Topo, w.dp.ClientNS, w.dp.ServerIP, w.d, "-P", fmt.Sprint(streams))
		after, cerr2 := readCPU(w.dp.PIDs())
		if err != nil {
			return "", err
		}
		r, err := ParseIperfTCP(out)
		if err != nil {
			return "", err
		}
		w.values[key] = r.BitsPerSec / 1e9
		if cerr == nil {
			cerr = cerr2
		}
		if cerr != nil {
			w.cpuErr = cerr
		} else {
			w.cpuTicks += after.daemons - before.daemons
			w.softirqTicks += after.softirq - before.softirq
			w.cpuBytes += r.Bytes
		}
		return fmt.Sprintf("%s Gbit/s, %d retransmits", FormatNumber(r.BitsPerSec/1e9), r.Retransmits), nil
	}
}

// udpWorkload floods 64-byte UDP datagrams (iperf3 -b 0: as fast as the
// sender can) and records what arrives.
func udpWorkload(ctx context.Context, w *workRun) (string, error) {
	out, err := runIperf(ctx, w.env.Topo, w.dp.ClientNS, w.dp.ServerIP, w.d,
		"-u", "-b", "0", "-l", fmt.Sprint(udpPayload))
	if err != nil {
		return "", err
	}
	r, err := ParseIperfUDP(out)
	if err != nil {
		return "", err
	}
	if r.Received == 0 {
		return "", fmt.Errorf("no datagram arrived (%d sent)", r.Sent)
	}
	w.values[MUDPPPS] = r.PacketsPerSec() / 1e3
	w.values[MUDPLoss] = r.LostPercent
	return fmt.Sprintf("%s kpps received, %s%% lost", FormatNumber(r.PacketsPerSec()/1e3), FormatNumber(r.LostPercent)), nil
}

// rrWorkload times request/response round trips (see runEcho).
func rrWorkload(ctx context.Context, w *workRun) (string, error) {
	l, err := runEcho(ctx, w.dp.ClientNS, w.dp.ServerNS, w.dp.ServerIP, w.d)
	if err != nil {
		return "", err
	}
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	w.values[MRRP50] = us(l.P50)
	w.values[MRRP99] = us(l.P99)
	return fmt.Sprintf("p50 %s µs, p99 %s µs, %d requests, %d lost",
		FormatNumber(us(l.P50)), FormatNumber(us(l.P99)), l.Requests, l.Lost), nil
}

// finishCPU turns the CPU counted during the TCP workloads into seconds per
// GB. The daemon figure exists only for modes with daemons.
func (w *workRun) finishCPU() {
	if w.cpuErr != nil || w.cpuBytes == 0 {
		return
	}
	if len(w.dp.daemons) > 0 {
		w.values[MDaemonCPU] = cpuCost(w.cpuTicks, w.cpuBytes)
	}
	w.values[MSoftirq] = cpuCost(w.softirqTicks, w.cpuBytes)
	w.values[MCPU] = cpuCost(w.cpuTicks+w.softirqTicks, w.cpuBytes)
}
