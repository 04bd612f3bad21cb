package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/weft-dev/weft/bench"
	"github.com/weft-dev/weft/netlab"
)

func init() {
	commands["demo"] = command{
		summary: "run a small weft overlay in network namespaces and show it working",
		run:     runDemo,
	}
}

// demo is one run of `weft demo`: three hosts on one underlay, a pod behind
// each, etcd embedded in the first host's weftd, weftd on every host.
type demo struct {
	out     io.Writer
	weftd   string
	topo    *netlab.Topology
	dir     string
	daemons []*exec.Cmd
	logs    []string
}

func runDemo(_ globals, args []string) error {
	fs := flag.NewFlagSet("weft demo", flag.ContinueOnError)
	hosts := fs.Int("hosts", 3, "hosts in the overlay (2-9)")
	weftd := fs.String("weftd", defaultWeftd(), "`path` of the weftd binary")
	seconds := fs.Int("seconds", 3, "`seconds` of TCP traffic between two pods")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: weft demo [flags]\n\nBuilds hosts with a pod each in network namespaces, runs weftd on every host\nwith etcd embedded in the first, pings every pod from every pod, measures TCP\nbetween two pods, and removes everything it made, also on Ctrl-C or failure.\nNeeds root.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *hosts < 2 || *hosts > 9 {
		return fmt.Errorf("--hosts %d: want 2-9", *hosts)
	}
	if *seconds < 1 || *seconds > 60 {
		return fmt.Errorf("--seconds %d: want 1-60", *seconds)
	}
	if err := netlab.CheckRoot(); err != nil {
		return err
	}
	if err := netlab.CheckTools("ip", "ping", "iperf3"); err != nil {
		return err
	}
	if _, err := os.Stat(*weftd); err != nil {
		return fmt.Errorf("--weftd %s: %w (run 'make build' first)", *weftd, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d := &demo{out: os.Stdout, weftd: *weftd}
	err := d.run(ctx, *hosts, time.Duration(*seconds)*time.Second)
	if cerr := d.cleanup(); cerr != nil {
		err = errors.Join(err, cerr)
	} else {
		fmt.Fprintln(d.out, "\nEverything the demo made is removed.")
	}
	if ctx.Err() != nil && err != nil {
		return fmt.Errorf("interrupted: %w", err)
	}
	return err
}

func (d *demo) run(ctx context.Context, hosts int, traffic time.Duration) error {
	var err error
	if d.dir, err = os.MkdirTemp("", "weft-demo"); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "Building %d hosts with a pod each in network namespaces (underlay 192.0.2.0/24, overlay 100.96.0.0/16)...\n", hosts)
	d.topo, err = netlab.New(ctx, netlab.Config{Prefix: fmt.Sprintf("weftdemo%d", os.Getpid()%100000), Hosts: hosts})
	if err != nil {
		return err
	}
	if err := d.topo.SetPodMTU(1500 - 28); err != nil {
		return err
	}
	etcdURL := "http://" + d.topo.Hosts[0].UnderlayIP.String() + ":2379"
	for i := range d.topo.Hosts {
		if err := d.start(ctx, i, etcdURL, true); err != nil {
			return err
		}
	}
	if err := d.waitMesh(ctx, 30*time.Second); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "\nHosts (etcd embedded in %s's weftd at %s):\n", d.topo.Hosts[0].Name, etcdURL)
	d.printLeases()

	if err := d.pingMatrix(ctx); err != nil {
		return err
	}
	if err := d.transfer(ctx, d.topo.Hosts[0], d.topo.Hosts[len(d.topo.Hosts)-1], traffic); err != nil {
		return err
	}

	// A restart shows flannel's lease semantics: the host takes its subnet
	// back by its public IP, not from the subnet file.
	last := len(d.topo.Hosts) - 1
	h := d.topo.Hosts[last]
	fmt.Fprintf(d.out, "\nKilling %s's weftd (SIGKILL), removing its subnet file, starting it again...\n", h.Name)
	d.daemons[last].Process.Kill()
	d.daemons[last].Wait()
	os.Remove(d.subnetFile(last))
	if err := d.start(ctx, last, etcdURL, false); err != nil {
		return err
	}
	start := time.Now()
	if err := d.waitMesh(ctx, 30*time.Second); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "  %s is back in the mesh after %v: %s\n", h.Name, time.Since(start).Round(10*time.Millisecond), d.lease(last))
	return nil
}

func (d *demo) subnetFile(i int) string {
	return filepath.Join(d.dir, d.topo.Hosts[i].Name+"-subnet.env")
}

// start runs weftd on host i. With seed, the host's subnet file names the
// subnet its pod is addressed from, as a host's previous run would leave it.
func (d *demo) start(ctx context.Context, i int, etcdURL string, seed bool) error {
	h := d.topo.Hosts[i]
	if seed {
		seedFile := fmt.Sprintf("FLANNEL_NETWORK=100.96.0.0/16\nFLANNEL_SUBNET=%s/%d\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=false\n", h.Subnet.Addr().Next(), h.Subnet.Bits())
		if err := os.WriteFile(d.subnetFile(i), []byte(seedFile), 0o644); err != nil {
			return err
		}
	}
	args := []string{d.weftd, "--public-ip", h.UnderlayIP.String(), "--subnet-file", d.subnetFile(i),
		"--etcd-endpoints", etcdURL, "--metrics-addr", "", "--control-socket", filepath.Join(d.dir, h.Name+".sock")}
	if i == 0 {
		args = append(args, "--embedded-etcd", filepath.Join(d.dir, "etcd"), "--embedded-etcd-listen", etcdURL)
	}
	logPath := filepath.Join(d.dir, fmt.Sprintf("%s-%d.log", h.Name, time.Now().UnixNano()))
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	cmd := d.topo.Command(context.WithoutCancel(ctx), h.NS, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start weftd on %s: %w", h.Name, err)
	}
	logf.Close()
	if i < len(d.daemons) {
		d.daemons[i], d.logs[i] = cmd, logPath
	} else {
		d.daemons = append(d.daemons, cmd)
		d.logs = append(d.logs, logPath)
	}
	return nil
}

// waitMesh waits until every pod answers a ping from every other pod.
func (d *demo) waitMesh(ctx context.Context, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		err := d.mesh(ctx)
		if err == nil || ctx.Err() != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the overlay did not come up within %v: %w\n%s", within, err, d.logTails())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (d *demo) mesh(ctx context.Context) error {
	for _, a := range d.topo.Hosts {
		for _, b := range d.topo.Hosts {
			if a.Name != b.Name {
				if _, err := d.topo.Run(ctx, a.PodNS, "ping", "-c", "1", "-W", "1", b.PodIP.String()); err != nil {
					return fmt.Errorf("%s cannot reach %s", a.PodIP, b.PodIP)
				}
			}
		}
	}
	return nil
}

var leaseLine = regexp.MustCompile(`msg="subnet lease held" subnet=(\S+) how="?([^"]+?)"? public_ip`)

// lease says which subnet host i's weftd holds and how it got it, from its log.
func (d *demo) lease(i int) string {
	b, _ := os.ReadFile(d.logs[i])
	m := leaseLine.FindSubmatch(b)
	if m == nil {
		return "lease not in the log"
	}
	return fmt.Sprintf("subnet %s (%s)", m[1], m[2])
}

func (d *demo) printLeases() {
	for i, h := range d.topo.Hosts {
		fmt.Fprintf(d.out, "  %-3s %-11s %-40s pod %s\n", h.Name, h.UnderlayIP, d.lease(i), h.PodIP)
	}
	fmt.Fprintf(d.out, "  (each subnet file was seeded with its host's subnet, as a host's earlier run leaves it)\n")
}

var pingRTT = regexp.MustCompile(`rtt min/avg/max/mdev = [\d.]+/([\d.]+)/`)

// pingMatrix pings every pod from every pod and prints the mean round trips.
func (d *demo) pingMatrix(ctx context.Context) error {
	const count = 5
	fmt.Fprintf(d.out, "\nPing, pod to pod (%d each, mean round trip):\n  %-12s", count, "from \\ to")
	for _, b := range d.topo.Hosts {
		fmt.Fprintf(d.out, " %-12s", b.PodIP)
	}
	fmt.Fprintln(d.out)
	lost := 0
	for _, a := range d.topo.Hosts {
		fmt.Fprintf(d.out, "  %-12s", a.PodIP)
		for _, b := range d.topo.Hosts {
			cell := "-"
			if a.Name != b.Name {
				out, err := d.topo.Run(ctx, a.PodNS, "ping", "-c", fmt.Sprint(count), "-i", "0.2", "-W", "2", b.PodIP.String())
				if m := pingRTT.FindSubmatch(out); m != nil && err == nil {
					cell = string(m[1]) + " ms"
				} else {
					cell = "LOST"
					lost++
				}
			}
			fmt.Fprintf(d.out, " %-12s", cell)
		}
		fmt.Fprintln(d.out)
	}
	if lost > 0 {
		return fmt.Errorf("%d pod pairs lost pings", lost)
	}
	return nil
}

// transfer measures TCP from a's pod to b's pod with iperf3.
func (d *demo) transfer(ctx context.Context, a, b netlab.Host, traffic time.Duration) error {
	srv := d.topo.Command(context.WithoutCancel(ctx), b.PodNS, "iperf3", "-s", "-1", "-B", b.PodIP.String(), "-p", "5201")
	if err := srv.Start(); err != nil {
		return err
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	var out []byte
	var err error
	for try := 0; try < 20; try++ { // until the server listens
		out, err = d.topo.Run(ctx, a.PodNS, "iperf3", "-c", b.PodIP.String(), "-p", "5201", "-t", fmt.Sprint(int(traffic.Seconds())), "-J")
		if err == nil || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("iperf3 %s -> %s: %w", a.PodIP, b.PodIP, err)
	}
	r, err := bench.ParseIperfTCP(out)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "\nTCP %s -> %s through weft (iperf3, %v): %.2f Gbit/s, %d MiB moved, %d retransmits\n",
		a.PodIP, b.PodIP, traffic, r.BitsPerSec/1e9, r.Bytes>>20, r.Retransmits)
	return nil
}

// logTails is the end of each weftd log, for an error.
func (d *demo) logTails() string {
	var b strings.Builder
	for i, p := range d.logs {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		var lines []string
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		f.Close()
		fmt.Fprintf(&b, "--- weftd on %s:\n%s\n", d.topo.Hosts[i].Name, strings.Join(lines[max(0, len(lines)-5):], "\n"))
	}
	return b.String()
}

// cleanup stops every weftd (SIGTERM, so each removes its device and
// routes), removes the namespaces and the temporary directory.
func (d *demo) cleanup() error {
	var errs []error
	for _, cmd := range d.daemons {
		if cmd.ProcessState != nil {
			continue
		}
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	if d.topo != nil {
		if err := d.topo.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if d.dir != "" {
		os.RemoveAll(d.dir)
	}
	return errors.Join(errs...)
}
