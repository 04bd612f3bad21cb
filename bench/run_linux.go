package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/weft-dev/weft/netlab"
)

// Options control a harness run.
type Options struct {
	Modes    []string      // mode names; empty: every mode available
	Rounds   int           // rounds of every mode, interleaved
	Workload time.Duration // length of each bounded workload
	Quick    bool          // recorded in the results only
	Prefix   string        // namespace prefix, unique per run
	Dir      string        // scratch directory (logs, sockets); must exist
	Weftd    string        // weftd binary
	Flanneld string        // flanneld binary, optional
	// UnderlayGSO is UnderlayGSOOn (also when empty), UnderlayGSOOff or
	// UnderlayGSOBoth: see WithUnderlayGSO.
	UnderlayGSO string
	// EtcdCommand starts an embedded etcd for the flannel mode (see Env).
	EtcdCommand []string
	Progress    io.Writer // progress lines; nil: none
}

// readyTimeout bounds the wait for a mode's first successful ping.
const readyTimeout = 20 * time.Second

// teardownTimeout bounds a mode's teardown, which runs even after Ctrl-C.
const teardownTimeout = 30 * time.Second

// Run builds the topology, runs every mode round by round, removes
// everything it made, and returns the summarized results. A mode failing in
// a round is recorded in the results and the run goes on; what stops it is
// Ctrl-C (ctx), a broken topology, or a mode that leaves state behind that
// cannot be scrubbed.
func Run(ctx context.Context, o Options) (*Results, error) {
	if err := netlab.CheckRoot(); err != nil {
		return nil, err
	}
	if o.UnderlayGSO == "" {
		o.UnderlayGSO = UnderlayGSOOn
	}
	if err := CheckUnderlayGSO(o.UnderlayGSO); err != nil {
		return nil, err
	}
	if err := netlab.CheckTools(ToolsFor(o.UnderlayGSO)...); err != nil {
		return nil, err
	}
	if o.Rounds < 1 || o.Workload < time.Second {
		return nil, fmt.Errorf("need at least 1 round and 1s per workload")
	}
	env := &Env{Dir: o.Dir, Weftd: o.Weftd, Flanneld: o.Flanneld, EtcdCommand: o.EtcdCommand}
	modes, skipped, err := LookupModes(o.Modes, env)
	if err != nil {
		return nil, err
	}
	p := progress{w: o.Progress}
	for _, s := range skipped {
		p.printf("skipping mode %s", s)
	}
	if len(modes) == 0 {
		return nil, errors.New("no mode to run")
	}
	modes, err = WithUnderlayGSO(modes, o.UnderlayGSO)
	if err != nil {
		return nil, err
	}
	switch o.UnderlayGSO {
	case UnderlayGSOOff:
		p.printf("underlay UDP segmentation (%s on %s) off for every mode", udpSegFeature, netlab.UnderlayDev)
	case UnderlayGSOBoth:
		var twins []string
		for _, m := range modes {
			if m.UnderlayGSO == UnderlayGSOOff {
				twins = append(twins, strings.TrimSuffix(m.Name, UnderlayGSOOffSuffix))
			}
		}
		if len(twins) == 0 {
			p.printf("underlay-gso both: no mode chosen sends UDP GSO, so every mode runs once, with it on")
		} else {
			p.printf("underlay UDP segmentation on and off for %s (the modes that send UDP GSO); once, on, for the others",
				strings.Join(twins, ", "))
		}
	}

	res := &Results{
		Started:  time.Now(),
		Machine:  describeMachine(ctx, o.Weftd),
		Settings: Settings{Rounds: o.Rounds, WorkloadSeconds: o.Workload.Seconds(), Quick: o.Quick, UnderlayGSO: o.UnderlayGSO},
		Metrics:  Metrics,
	}
	for _, m := range modes {
		res.Settings.Modes = append(res.Settings.Modes, m.Name)
		res.Modes = append(res.Modes, ModeResult{Name: m.Name, About: m.About, Flags: m.Flags,
			UnderlayGSO: m.UnderlayGSO, SendsUDPGSO: m.SendsUDPGSO})
	}

	p.printf("building topology %s-* (2 hosts, 2 pods)", o.Prefix)
	topo, err := netlab.New(ctx, netlab.Config{Prefix: o.Prefix, Hosts: 2})
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := topo.Close(); cerr != nil {
			p.printf("removing namespaces: %v", cerr)
		}
	}()
	env.Topo = topo

	for round := 1; round <= o.Rounds; round++ {
		for i, m := range modes {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			rr, fatal := runMode(ctx, env, m, round, o, p.with(fmt.Sprintf("[%d/%d] %s", round, o.Rounds, m.Name)))
			res.Modes[i].Rounds = append(res.Modes[i].Rounds, rr)
			if fatal != nil {
				return nil, fatal
			}
		}
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	res.Seconds = time.Since(res.Started).Seconds()
	res.Summarize()
	return res, nil
}

// runMode sets up one mode, runs every workload, and tears it down. Errors
// of the mode go into the round's result; the returned error is fatal to the
// whole run.
func runMode(ctx context.Context, env *Env, m Mode, round int, o Options, p progress) (rr RoundResult, fatal error) {
	rr = RoundResult{Round: round, Values: map[string]float64{}}
	fail := func(err error) {
		p.printf("error: %v", err)
		rr.Errors = append(rr.Errors, err.Error())
	}
	if m.PodMTU > 0 {
		if err := env.Topo.SetPodMTU(m.PodMTU); err != nil {
			return rr, err
		}
	}
	// Set for every row of a run that changes it, not undone after the
	// row: each row says what it needs, so no row depends on the teardown
	// of the one before.
	if m.UnderlayGSO != "" {
		if err := setUnderlayGSO(ctx, env.Topo, m.UnderlayGSO == UnderlayGSOOn); err != nil {
			return rr, fmt.Errorf("underlay GSO: %w", err)
		}
	}
	p.printf("setting up")
	dp := &Dataplane{}
	defer func() {
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), teardownTimeout)
		defer cancel()
		if err := dp.Close(tctx); err != nil {
			fail(fmt.Errorf("teardown: %w", err))
		}
		left, err := env.Topo.Residue(tctx)
		if err != nil {
			fatal = err
			return
		}
		if len(left) > 0 {
			fail(fmt.Errorf("teardown left %v", left))
			if err := env.Topo.Scrub(tctx, left); err != nil {
				fatal = fmt.Errorf("mode %s: %w", m.Name, err)
			}
		}
	}()
	if err := m.Setup(ctx, env, dp); err != nil {
		fail(fmt.Errorf("setup: %w", err))
		return rr, nil
	}
	if err := waitReady(ctx, env.Topo, dp); err != nil {
		fail(err)
		return rr, nil
	}
	srv, err := startIperfServer(ctx, env.Topo, dp.ServerNS, env.Dir, dp.ServerIP)
	if err != nil {
		fail(err)
		return rr, nil
	}
	dp.onClose(func(context.Context) error { return srv.stop() })

	w := &workRun{env: env, dp: dp, d: o.Workload, values: rr.Values}
	for _, wl := range workloads {
		if ctx.Err() != nil {
			return rr, nil
		}
		p.printf("%s ...", wl.name)
		summary, err := wl.run(ctx, w)
		if err == nil {
			err = dp.checkDaemons()
		}
		if err != nil {
			fail(fmt.Errorf("%s: %w", wl.name, err))
			if dp.checkDaemons() != nil {
				break // nothing more to measure through a dead daemon
			}
			continue
		}
		p.printf("%s: %s", wl.name, summary)
	}
	w.finishCPU()
	return rr, nil
}

// waitReady pings the server side from the client side until a reply comes,
// a daemon dies, or readyTimeout passes.
func waitReady(ctx context.Context, t *netlab.Topology, dp *Dataplane) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	var last error
	for {
		if err := dp.checkDaemons(); err != nil {
			return err
		}
		_, err := t.Run(ctx, dp.ClientNS, "ping", "-c1", "-W1", dp.ServerIP.String())
		if err == nil {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready after %v: %w", readyTimeout, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// describeMachine names the kernel, CPUs and tool versions for the report.
func describeMachine(ctx context.Context, weftd string) Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = trimOutput(b)
	}
	m.CPUModel = cpuModel()
	if out, err := runCmd(ctx, "iperf3", "--version"); err == nil {
		m.Iperf3 = firstLine(out)
	}
	// Ask only a weftd that says it has --version: a binary that ignored
	// the flag might start forwarding in the machine's own namespace.
	if known, err := weftdFlags(ctx, weftd); err == nil && known["version"] {
		if out, err := runCmd(ctx, weftd, "--version"); err == nil {
			m.Weftd = firstLine(out)
		}
	}
	return m
}

// progress writes lines like "bench: [1/3] weft: tcp-1: 9.41 Gbit/s" to
// stderr, so that stdout keeps only the table.
type progress struct {
	w      io.Writer
	prefix string
}

func (p progress) printf(format string, args ...any) {
	if p.w == nil {
		return
	}
	msg := fmt.Sprintf(format, args...)
	if p.prefix != "" {
		msg = p.prefix + ": " + msg
	}
	fmt.Fprintf(p.w, "bench: %s\n", msg)
}

func (p progress) with(prefix string) progress { return progress{p.w, prefix} }
