package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/weft-dev/weft/control"
)

func init() {
	commands["dump"] = command{summary: "capture packets at the stages of weftd's data path (pcapng or one line each)", run: runDump}
}

// stageFlags collects repeated or comma-separated --stage values.
type stageFlags []string

func (s *stageFlags) String() string { return strings.Join(*s, ",") }
func (s *stageFlags) Set(v string) error {
	for _, name := range strings.Split(v, ",") {
		*s = append(*s, strings.TrimSpace(name))
	}
	return nil
}

// dumpFlags are the options of `weft dump`.
type dumpFlags struct {
	req   control.DumpRequest
	write string // pcapng to this file, "-" for stdout; "" prints lines
}

func parseDumpFlags(args []string, stderr io.Writer) (*dumpFlags, error) {
	fs := flag.NewFlagSet("weft dump", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		f        dumpFlags
		stages   stageFlags
		duration time.Duration
	)
	fs.Var(&stages, "stage", "capture at this `STAGE` (repeatable, or comma-separated): "+strings.Join(control.StageNames, ", ")+" (default: all)")
	fs.IntVar(&f.req.Count, "c", 0, "stop after `COUNT` packets (0: no limit)")
	fs.DurationVar(&duration, "duration", 0, "stop after this `DURATION`, e.g. 10s (0: no limit)")
	fs.StringVar(&f.write, "w", "", "write pcapng to `FILE` (- for stdout) instead of one line per packet")
	fs.IntVar(&f.req.Snaplen, "s", 0, "keep at most `N` bytes of each inner packet (0: all)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: weft dump [OPTIONS] [FILTER]\n\n"+
			"Captures packets where weftd's data path sees them: tun-in (read from the\n"+
			"TUN), wire-out (sent to a peer, with the outer IPv4/UDP headers as on the\n"+
			"wire), wire-in (received from a peer, likewise), tun-out (written to the\n"+
			"TUN) and drop (dropped, with the reason). Each packet's pcapng comment\n"+
			"names its stage, and for drops the reason. A dump never slows forwarding:\n"+
			"what a slow reader cannot take is dropped and counted.\n\n"+
			"FILTER picks packets, as in tcpdump:\n"+
			"  [src|dst] host ADDR, [src|dst] net CIDR, [src|dst] port N,\n"+
			"  proto tcp|udp|icmp|N (or tcp, udp, icmp), not, and, or, ( )\n"+
			"It matches the inner packet, and at the wire stages the outer headers too.\n\n"+
			"Examples:\n"+
			"  weft dump -c 10 icmp and host 100.96.2.2\n"+
			"  weft dump --stage drop\n"+
			"  weft dump -w - port 5201 | tcpdump -r -\n\nOptions:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	// Check everything here, so that a mistake is named before weftd is asked.
	for _, s := range stages {
		if !contains(control.StageNames, s) {
			return nil, fmt.Errorf("--stage %q: want one of %s: %w", s, strings.Join(control.StageNames, ", "), errUsage)
		}
		if !contains(f.req.Stages, s) {
			f.req.Stages = append(f.req.Stages, s)
		}
	}
	if f.req.Count < 0 {
		return nil, fmt.Errorf("-c %d: must not be negative: %w", f.req.Count, errUsage)
	}
	if duration < 0 {
		return nil, fmt.Errorf("--duration %v: must not be negative: %w", duration, errUsage)
	}
	if duration > 0 && duration < time.Millisecond {
		return nil, fmt.Errorf("--duration %v: shorter than a millisecond: %w", duration, errUsage)
	}
	f.req.DurationMS = duration.Milliseconds()
	if f.req.Snaplen < 0 || f.req.Snaplen > 65535 {
		return nil, fmt.Errorf("-s %d: out of range 0-65535: %w", f.req.Snaplen, errUsage)
	}
	f.req.Filter = strings.Join(fs.Args(), " ")
	if _, err := control.ParseFilter(f.req.Filter); err != nil {
		return nil, fmt.Errorf("%w: %w", err, errUsage)
	}
	return &f, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// packetSink is where captured packets go: a pcapng file or lines of text.
type packetSink interface {
	write(p *control.Packet) error
	close() error
}

func runDump(g globals, args []string) error {
	f, err := parseDumpFlags(args, os.Stderr)
	if err != nil {
		if errors.Is(err, errUsage) {
			fmt.Fprintf(os.Stderr, "weft dump: %s\n", strings.TrimSuffix(err.Error(), ": "+errUsage.Error()))
		}
		return err
	}
	var sink packetSink
	switch f.write {
	case "":
		sink = newLineSink(os.Stdout)
	case "-":
		if sink, err = newPcapSink(os.Stdout); err != nil {
			return err
		}
	default:
		out, err := os.Create(f.write)
		if err != nil {
			return err
		}
		defer out.Close()
		if sink, err = newPcapSink(out); err != nil {
			return err
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), statusTimeout)
	stream, err := (&control.Client{Path: g.controlSocket}).Dump(ctx, f.req)
	cancel()
	if err != nil {
		return err
	}
	defer stream.Close()
	fmt.Fprintf(os.Stderr, "weft dump: capturing at %s%s; Ctrl-C to stop\n", strings.Join(stream.Started.Stages, ", "), filterNote(stream.Started.Filter))

	// The first Ctrl-C asks weftd to end the dump, which then sends what it
	// holds and its totals; a second one leaves at once.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		<-sigs
		stream.Stop()
		<-sigs
		stream.Close()
	}()

	for {
		p, end, err := stream.Next()
		if err != nil {
			sink.close()
			return fmt.Errorf("dump cut short: %w", err)
		}
		if end != nil {
			if err := sink.close(); err != nil {
				return err
			}
			lost := ""
			if end.Dropped > 0 {
				lost = fmt.Sprintf("; %d more matched but were lost because the reader fell behind (forwarding never waits for it)", end.Dropped)
			}
			fmt.Fprintf(os.Stderr, "weft dump: %d packets (%s)%s\n", end.Packets, endReason(end), lost)
			if end.Error != "" {
				return fmt.Errorf("weftd ended the dump: %s", end.Error)
			}
			return nil
		}
		if err := sink.write(p); err != nil {
			return err
		}
	}
}

func filterNote(f string) string {
	if f == "" {
		return ""
	}
	return fmt.Sprintf(" (filter %q)", f)
}

func endReason(e *control.DumpEnd) string {
	switch e.Reason {
	case "count":
		return "count reached"
	case "duration":
		return "duration reached"
	case "client":
		return "stopped"
	case "shutdown":
		return "weftd stopped"
	}
	return e.Reason
}
