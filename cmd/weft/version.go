package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/weft-dev/weft/version"
)

func init() {
	commands["version"] = command{summary: "print weft's version, commit and Go version", run: runVersion}
}

func runVersion(_ globals, args []string) error {
	fs := flag.NewFlagSet("weft version", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprintln(fs.Output(), "Usage: weft version") }
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	fmt.Fprintln(os.Stdout, version.Line("weft"))
	return nil
}
