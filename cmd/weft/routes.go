package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/weft-dev/weft/control"
)

func init() {
	commands["routes"] = command{summary: "show a running weftd's forwarding table with each route's traffic", run: runRoutes}
}

func runRoutes(g globals, args []string) error {
	fs := flag.NewFlagSet("weft routes", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	asJSON := fs.Bool("json", false, "print the routes as JSON")
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: weft routes [--json]\n\n"+
			"Shows weftd's forwarding table: each subnet, the peer host that carries it,\n"+
			"since when, and the inner packets and bytes sent to (tx) and received from\n"+
			"(rx) it since then.\n\nOptions:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("unexpected argument %q: %w", fs.Arg(0), errUsage)
	}
	ctx, cancel := context.WithTimeout(context.Background(), statusTimeout)
	defer cancel()
	routes, err := (&control.Client{Path: g.controlSocket}).Routes(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		if routes == nil {
			routes = []control.Route{}
		}
		return writeJSON(os.Stdout, routes)
	}
	printRoutes(os.Stdout, routes, time.Now())
	return nil
}

func printRoutes(w io.Writer, routes []control.Route, now time.Time) {
	if len(routes) == 0 {
		fmt.Fprintln(w, "no routes")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "SUBNET\tPEER\tSINCE\tTX PACKETS\tTX BYTES\tRX PACKETS\tRX BYTES\n")
	for _, r := range routes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%s\n", r.Subnet, r.Peer, age(r.Since, now),
			r.TxPackets, bytesIEC(r.TxBytes), r.RxPackets, bytesIEC(r.RxBytes))
	}
	tw.Flush()
}

// age says how long ago t was, to the second ("-" if unknown).
func age(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return max(now.Sub(t), 0).Round(time.Second).String() + " ago"
}
