// Command weft is the operator's tool for a weft overlay: it benchmarks
// encapsulation modes, runs a demo overlay, and talks to a running weftd.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/weft-dev/weft/control"
)

// command is one subcommand. run gets the arguments after its name and the
// global options; it returns errUsage (or a wrapped flag error) for bad usage.
type command struct {
	summary string
	run     func(g globals, args []string) error
}

// globals are the options given before the subcommand.
type globals struct {
	controlSocket string
}

var errUsage = errors.New("usage")

// commands is filled by the files that implement each subcommand.
var commands = map[string]command{}

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("weft", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var g globals
	fs.StringVar(&g.controlSocket, "control-socket", control.DefaultSocket, "`PATH` of the weftd control socket to talk to")
	fs.Usage = func() { usage(fs, stderr) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() == 0 {
		usage(fs, stderr)
		return 2
	}
	name := fs.Arg(0)
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "weft: unknown command %q\n", name)
		usage(fs, stderr)
		return 2
	}
	err := cmd.run(g, fs.Args()[1:])
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	default:
		fmt.Fprintf(stderr, "weft %s: %v\n", name, err)
		return 1
	}
}

func usage(fs *flag.FlagSet, w io.Writer) {
	fmt.Fprintf(w, "Usage: weft [--control-socket PATH] COMMAND [ARGS]\n\nCommands:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-8s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(w, "\nGlobal options:\n")
	fs.PrintDefaults()
	fmt.Fprintf(w, "\nRun 'weft COMMAND --help' for a command's options.\n")
}
