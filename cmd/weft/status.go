package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/weft-dev/weft/control"
)

func init() {
	commands["status"] = command{summary: "show a running weftd's subnet, lease, offloads and counters with rates", run: runStatus}
}

// statusTimeout bounds each question to the daemon.
const statusTimeout = 5 * time.Second

func runStatus(g globals, args []string) error {
	fs := flag.NewFlagSet("weft status", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	asJSON := fs.Bool("json", false, "print JSON: the status, and the rates if measured")
	interval := fs.Duration("interval", time.Second, "measure rates over this `DURATION` (0: counters only)")
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: weft status [--json] [--interval DURATION]\n\n"+
			"Asks weftd (on --control-socket) for its state and counters, twice, --interval\n"+
			"apart, and shows the counters with their rates.\n\nOptions:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("unexpected argument %q: %w", fs.Arg(0), errUsage)
	}
	if *interval < 0 {
		return fmt.Errorf("--interval %v: must not be negative: %w", *interval, errUsage)
	}
	c := &control.Client{Path: g.controlSocket}
	first, err := askStatus(c)
	if err != nil {
		return err
	}
	var r *rates
	last := first
	if *interval > 0 {
		time.Sleep(*interval)
		if last, err = askStatus(c); err != nil {
			return err
		}
		r = ratesBetween(first, last)
	}
	if *asJSON {
		return writeJSON(os.Stdout, statusJSON{Status: last, Rates: r})
	}
	printStatus(os.Stdout, last, r, time.Now())
	return nil
}

func askStatus(c *control.Client) (*control.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), statusTimeout)
	defer cancel()
	return c.Status(ctx)
}

// statusJSON is what `weft status --json` prints.
type statusJSON struct {
	Status *control.Status `json:"status"`
	Rates  *rates          `json:"rates,omitempty"`
}

// rates are per second, over the interval between two statuses.
type rates struct {
	IntervalSeconds float64 `json:"interval_seconds"`
	TxPackets       float64 `json:"tx_packets"`
	TxBits          float64 `json:"tx_bits"`
	RxPackets       float64 `json:"rx_packets"`
	RxBits          float64 `json:"rx_bits"`
	ICMPSent        float64 `json:"icmp_sent"`
	Drops           float64 `json:"drops"`
}

func ratesBetween(a, b *control.Status) *rates {
	secs := b.Time.Sub(a.Time).Seconds()
	if secs <= 0 {
		return nil
	}
	per := func(x, y uint64) float64 {
		if y < x { // the daemon restarted in between
			return 0
		}
		return float64(y-x) / secs
	}
	ca, cb := a.Counters, b.Counters
	return &rates{
		IntervalSeconds: secs,
		TxPackets:       per(ca.TxPackets, cb.TxPackets),
		TxBits:          8 * per(ca.TxBytes, cb.TxBytes),
		RxPackets:       per(ca.RxPackets, cb.RxPackets),
		RxBits:          8 * per(ca.RxBytes, cb.RxBytes),
		ICMPSent:        per(ca.ICMPSent, cb.ICMPSent),
		Drops:           per(totalDrops(ca), totalDrops(cb)),
	}
}

func totalDrops(c control.Counters) uint64 {
	var n uint64
	for _, v := range c.Drops {
		n += v
	}
	return n
}

func printStatus(w io.Writer, s *control.Status, r *rates, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	line := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprintf(format, args...)) }
	line("weftd", "%s mode, forwarding for %s", s.Mode, s.Time.Sub(s.Started).Round(time.Second))
	line("subnet", "%s of %s", s.Subnet, s.Network)
	line("public ip", "%s, UDP port %d", s.PublicIP, s.Port)
	line("tun", "%s, MTU %d", s.TUN, s.MTU)
	line("workers", "%d, up to %d packets per syscall", s.Workers, s.Batch)
	line("offloads", "tun %s, udp gso %s, udp gro %s; %d gso fallbacks", onOff(s.Offloads.TUN), onOff(s.Offloads.UDPGSO), onOff(s.Offloads.UDPGRO), s.Offloads.GSOFallbacks)
	switch {
	case s.Lease != nil:
		line("lease", "expires %s (in %s)", s.Lease.Expiry.Local().Format(time.DateTime), s.Lease.Expiry.Sub(now).Round(time.Second))
	case s.Mode == "static":
		line("lease", "none: static mode")
	default:
		line("lease", "expiry not known yet")
	}
	switch {
	case s.Etcd != nil && s.Etcd.Connected:
		line("etcd", "connected, %d watch events", s.Etcd.WatchEvents)
	case s.Etcd != nil:
		line("etcd", "NOT CONNECTED (forwarding on the last table), %d watch events", s.Etcd.WatchEvents)
	case s.Mode == "static":
		line("etcd", "not used: static mode")
	default:
		line("etcd", "state not known")
	}
	line("routes", "%s to %s", plural(s.Routes, "route"), plural(s.Peers, "peer host"))
	line("dumps", "%d running; %d packets captured, %d dropped for slow readers", s.Dumps.Active, s.Dumps.Captured, s.Dumps.Dropped)
	tw.Flush()

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	c := s.Counters
	if r != nil {
		fmt.Fprintf(tw, "\tpackets\tbytes\tpackets/s\tbit/s\t\n")
		fmt.Fprintf(tw, "tx\t%d\t%s\t%.0f\t%s\t\n", c.TxPackets, bytesIEC(c.TxBytes), r.TxPackets, bitsSI(r.TxBits))
		fmt.Fprintf(tw, "rx\t%d\t%s\t%.0f\t%s\t\n", c.RxPackets, bytesIEC(c.RxBytes), r.RxPackets, bitsSI(r.RxBits))
		fmt.Fprintf(tw, "icmp sent\t%d\t\t%.0f\t\t\n", c.ICMPSent, r.ICMPSent)
		fmt.Fprintf(tw, "dropped\t%d\t\t%.0f\t\t\n", totalDrops(c), r.Drops)
	} else {
		fmt.Fprintf(tw, "\tpackets\tbytes\t\n")
		fmt.Fprintf(tw, "tx\t%d\t%s\t\n", c.TxPackets, bytesIEC(c.TxBytes))
		fmt.Fprintf(tw, "rx\t%d\t%s\t\n", c.RxPackets, bytesIEC(c.RxBytes))
		fmt.Fprintf(tw, "icmp sent\t%d\t\t\n", c.ICMPSent)
		fmt.Fprintf(tw, "dropped\t%d\t\t\n", totalDrops(c))
	}
	tw.Flush()
	if r != nil {
		fmt.Fprintf(w, "(rates over %.1fs)\n", r.IntervalSeconds)
	}
	var reasons []string
	for reason, n := range c.Drops {
		if n > 0 {
			reasons = append(reasons, reason)
		}
	}
	if len(reasons) > 0 {
		sort.Strings(reasons)
		fmt.Fprintln(w, "\ndrops by reason:")
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, reason := range reasons {
			fmt.Fprintf(tw, "  %s\t%d\n", reason, c.Drops[reason])
		}
		tw.Flush()
	}
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// bytesIEC renders a byte count for people: 1.5 MiB.
func bytesIEC(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// bitsSI renders a bit rate as network people read it: 1.2 Gbit/s.
func bitsSI(b float64) string {
	for _, u := range []struct {
		div  float64
		name string
	}{{1e12, "Tbit/s"}, {1e9, "Gbit/s"}, {1e6, "Mbit/s"}, {1e3, "kbit/s"}} {
		if b >= u.div {
			return fmt.Sprintf("%.1f %s", b/u.div, u.name)
		}
	}
	return fmt.Sprintf("%.0f bit/s", b)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
