package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/weft-dev/weft/bench"
	"github.com/weft-dev/weft/netlab"
)

func init() {
	commands["bench"] = command{summary: "compare encapsulation modes in network namespaces", run: runBench}
}

// Run lengths. A mode takes its four workloads plus 2-3 s (setup, iperf3
// connections, teardown) per round on 2 cores. Quick is a first look: 2
// rounds of 2 s, about 3 minutes for the 8 modes. The full run's longer
// workloads steady TCP past slow start and keep it within 15 minutes: 8 modes
// x 3 rounds x (4 x 8 s + 3 s) is 14 minutes; --underlay-gso both adds a row
// for each of the 3 modes that send UDP GSO, so its workloads are 6 s
// (11 x 3 x 27 s, 15 minutes, 16 with flannel).
const (
	fullRounds       = 3
	fullWorkload     = 8 * time.Second
	fullWorkloadBoth = 6 * time.Second
	quickRounds      = 2
	quickWorkload    = 2 * time.Second
)

// benchFlags are the options of `weft bench`.
type benchFlags struct {
	modes    string
	rounds   int
	workload time.Duration
	quick    bool
	out      string
	prefix   string
	weftd    string
	flanneld string
	// underlayGSO is bench.UnderlayGSOOn, Off or Both.
	underlayGSO string
}

func parseBenchFlags(args []string) (*benchFlags, error) {
	fs := flag.NewFlagSet("weft bench", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	f := &benchFlags{}
	fs.StringVar(&f.modes, "modes", "", "comma-separated `LIST` of modes (default: every mode that can run here): "+strings.Join(bench.ModeNames(), ", "))
	fs.IntVar(&f.rounds, "rounds", 0, "`N` rounds, modes interleaved within each (default 3, --quick 2)")
	fs.DurationVar(&f.workload, "workload", 0, "length of each workload (default 8s; 6s with --underlay-gso both; --quick 2s)")
	fs.BoolVar(&f.quick, "quick", false, "short run (about 3 minutes) for a first look; numbers are rougher")
	fs.StringVar(&f.out, "out", "bench-out", "`DIR` for results.json and the throughput and latency plots (svg, png)")
	fs.StringVar(&f.prefix, "prefix", fmt.Sprintf("wb%d", os.Getpid()), "network namespace name `PREFIX`, unique per run")
	fs.StringVar(&f.weftd, "weftd", defaultWeftd(), "`PATH` of the weftd binary")
	fs.StringVar(&f.flanneld, "flanneld", "", "`PATH` of a flanneld binary; adds the flannel mode")
	fs.StringVar(&f.underlayGSO, "underlay-gso", bench.UnderlayGSOOn, "`SETTING` of the underlay veths' UDP segmentation offload: on; off, as on a NIC that\n"+
		"cannot segment UDP (needs ethtool); both: every mode that sends UDP GSO runs both ways, as\n"+
		"two rows")
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: weft bench [OPTIONS]\n\n"+
			"Builds two hosts and two pods in network namespaces, measures TCP throughput,\n"+
			"64-byte UDP packet rate, request/response latency and CPU per GB for each mode,\n"+
			"round by round, and removes everything it made. Needs root and iperf3.\n\nModes:\n")
		for _, m := range bench.Modes {
			fmt.Fprintf(os.Stderr, "  %-14s %s\n", m.Name, m.About)
		}
		fmt.Fprintf(os.Stderr, "\nOptions:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return nil, fmt.Errorf("unexpected argument %q: %w", fs.Arg(0), errUsage)
	}
	if err := bench.CheckUnderlayGSO(f.underlayGSO); err != nil {
		fmt.Fprintf(os.Stderr, "weft bench: --underlay-gso: %v\n", err)
		return nil, fmt.Errorf("--underlay-gso: %w: %w", err, errUsage)
	}
	if f.rounds == 0 {
		f.rounds = fullRounds
		if f.quick {
			f.rounds = quickRounds
		}
	}
	if f.workload == 0 {
		switch {
		case f.quick:
			f.workload = quickWorkload
		case f.underlayGSO == bench.UnderlayGSOBoth:
			f.workload = fullWorkloadBoth
		default:
			f.workload = fullWorkload
		}
	}
	return f, nil
}

// defaultWeftd is weftd beside the weft binary (both land in bin/).
func defaultWeftd() string {
	exe, err := os.Executable()
	if err != nil {
		return "weftd"
	}
	return filepath.Join(filepath.Dir(exe), "weftd")
}

// etcdCommand runs this binary's hidden etcd subcommand.
func etcdCommand() []string {
	exe, err := os.Executable()
	if err != nil {
		return nil
	}
	return []string{exe, "bench", bench.EtcdSubcommand}
}

func (f *benchFlags) modeList() []string {
	if f.modes == "" {
		return nil
	}
	var out []string
	for _, m := range strings.Split(f.modes, ",") {
		if m = strings.TrimSpace(m); m != "" {
			out = append(out, m)
		}
	}
	return out
}

func runBench(_ globals, args []string) error {
	// The flannel mode runs its etcd as this hidden subcommand, inside a
	// host namespace.
	if len(args) > 0 && args[0] == bench.EtcdSubcommand {
		return bench.ServeEtcdMain(args[1:])
	}
	f, err := parseBenchFlags(args)
	if err != nil {
		return err
	}
	if err := netlab.CheckRoot(); err != nil {
		return err
	}
	if err := netlab.CheckTools(bench.ToolsFor(f.underlayGSO)...); err != nil {
		return err
	}
	// Modes that cannot run here (no --flanneld, no weftd) are named now,
	// before a scratch directory exists to point at.
	if _, _, err := bench.LookupModes(f.modeList(), &bench.Env{Weftd: f.weftd, Flanneld: f.flanneld, EtcdCommand: etcdCommand()}); err != nil {
		return err
	}
	if err := os.MkdirAll(f.out, 0o755); err != nil {
		return err
	}
	scratch, err := os.MkdirTemp("", "weft-bench-")
	if err != nil {
		return err
	}
	// Ctrl-C cancels the run; Run then stops its daemons and removes its
	// namespaces before returning.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	res, err := bench.Run(ctx, bench.Options{
		Modes:       f.modeList(),
		Rounds:      f.rounds,
		Workload:    f.workload,
		Quick:       f.quick,
		Prefix:      f.prefix,
		Dir:         scratch,
		Weftd:       f.weftd,
		Flanneld:    f.flanneld,
		UnderlayGSO: f.underlayGSO,
		Progress:    os.Stderr,
		EtcdCommand: etcdCommand(),
	})
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("interrupted; its namespaces and processes are removed (logs kept in %s)", scratch)
	}
	if err != nil {
		return fmt.Errorf("%w (daemon logs kept in %s)", err, scratch)
	}
	if err := res.WriteMarkdown(os.Stdout); err != nil {
		return err
	}
	files := []string{filepath.Join(f.out, "results.json")}
	if err := res.WriteJSON(files[0]); err != nil {
		return err
	}
	for _, plot := range []struct {
		base string
		draw func(dir, base string) ([]string, error)
	}{{"throughput", res.PlotThroughput}, {"latency", res.PlotLatency}} {
		written, err := plot.draw(f.out, plot.base)
		if err != nil {
			return err
		}
		files = append(files, written...)
	}
	fmt.Fprintf(os.Stderr, "bench: wrote %s in %.0fs\n", strings.Join(files, ", "), res.Seconds)
	if errs := res.Errors(); len(errs) > 0 {
		return fmt.Errorf("%d failure(s), see the table's end (daemon logs kept in %s)", len(errs), scratch)
	}
	return errors.Join(os.RemoveAll(scratch))
}
