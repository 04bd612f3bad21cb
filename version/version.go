// Package version says which weft this is: the release, the commit it was
// built from, and the Go that built it.
package version

import (
	"fmt"
	"runtime/debug"
)

// Version is set at link time by make build, from git describe:
//
//	go build -ldflags "-X github.com/weft-dev/weft/version.Version=v0.3.0-12-gabc1234"
//
// Left empty (go build, go install), the module version of the build info is
// used, "(devel)" for a build inside the checkout.
var Version string

// Info is what a binary knows of its own build.
type Info struct {
	Version  string // release or git describe; "(devel)" when unknown
	Commit   string // VCS revision, "" when the build recorded none
	Modified bool   // the work tree had uncommitted changes
	Go       string // the Go release that built the binary
}

// Read returns this binary's Info, from the link-time Version and the build
// information the Go toolchain embeds.
func Read() Info {
	info := Info{Version: Version}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		if info.Version == "" {
			info.Version = "(devel)"
		}
		return info
	}
	info.Go = bi.GoVersion
	if info.Version == "" {
		info.Version = bi.Main.Version
	}
	if info.Version == "" {
		info.Version = "(devel)"
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Commit = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		}
	}
	return info
}

// String is the one line `weftd --version` and `weft version` print:
// "weftd v0.3.0 commit 1a2b3c4d5e6f (modified) go1.26.8".
func (i Info) String() string {
	s := i.Version
	if i.Commit != "" {
		s += " commit " + i.Commit
		if i.Modified {
			s += " (modified)"
		}
	}
	if i.Go != "" {
		s += " " + i.Go
	}
	return s
}

// Line prefixes String with the program's name.
func Line(program string) string { return fmt.Sprintf("%s %s", program, Read()) }
