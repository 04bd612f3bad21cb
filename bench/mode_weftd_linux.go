package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/weft-dev/weft/netlab"
)

// weftTunMTU is what flannel's udp backend leaves for a pod's packet on a
// 1500-byte underlay: the outer IPv4 and UDP headers (28 bytes) come off.
const weftTunMTU = 1472

// weftdMode runs one weftd per host in static mode (no etcd), with flags
// appended to the flags every weftd gets. Variants (batch sizes, offloads)
// are further calls with other flags; with none, weftd runs with its
// defaults. The mode's About starts with the flags, so that --help, the
// report and results.json all say how each mode ran.
func weftdMode(name, about string, flags ...string) Mode {
	cmdline := "weftd with its defaults (no forwarding flags)"
	if len(flags) > 0 {
		cmdline = "weftd " + strings.Join(flags, " ")
	}
	return Mode{
		Name:      name,
		About:     cmdline + ": " + about,
		Flags:     flags,
		PodMTU:    weftTunMTU,
		Available: func(env *Env) error { return executable(env.Weftd, "--weftd") },
		Setup: func(ctx context.Context, env *Env, dp *Dataplane) error {
			podEndpoints(env.Topo, dp)
			known, err := weftdFlags(ctx, env.Weftd)
			if err != nil {
				return err
			}
			if err := knowsFlags(known, flags); err != nil {
				return fmt.Errorf("%s: %w", env.Weftd, err)
			}
			for _, h := range env.Topo.Hosts {
				args := append([]string{env.Weftd}, weftdArgs(env, h, known)...)
				args = append(args, flags...)
				d, err := startDaemonEnv(ctx, env.Topo, h.NS, env.Dir, name+"-"+h.Name, weftdEnviron(os.Environ()), args...)
				if err != nil {
					return err
				}
				dp.addDaemon(d)
			}
			return nil
		},
	}
}

// knowsFlags checks that every --flag of flags is one weftd's --help lists,
// so that a weftd older than a mode fails with a message that says so.
func knowsFlags(known map[string]bool, flags []string) error {
	for _, f := range flags {
		if !strings.HasPrefix(f, "-") {
			continue // a flag's value
		}
		n, _, _ := strings.Cut(strings.TrimLeft(f, "-"), "=")
		if !known[n] {
			return fmt.Errorf("--help lists no --%s: a weftd older than this mode?", n)
		}
	}
	return nil
}

// weftdEnviron is environ without weftd's WEFTD_* variables: weftd reads
// every flag from one, so a WEFTD_BATCH in the caller's environment would
// otherwise quietly change every weftd mode, weft's "defaults" included.
func weftdEnviron(environ []string) []string {
	out := make([]string, 0, len(environ))
	for _, kv := range environ {
		if !strings.HasPrefix(kv, "WEFTD_") {
			out = append(out, kv)
		}
	}
	return out
}

// weftdArgs is the static-mode command line of DESIGN.md for host h: its own
// subnet and every other host as a peer. The files a weftd makes are kept
// in the run's directory, so that two weftds never share one and nothing
// lands in the machine's /run; a weftd too old to have such a flag makes no
// such file, so the flag is passed only when known lists it.
func weftdArgs(env *Env, h netlab.Host, known map[string]bool) []string {
	t := env.Topo
	args := []string{
		"--network", t.Network.String(),
		"--subnet", h.Subnet.String(),
		"--public-ip", h.UnderlayIP.String(),
		"--tun-name", "flannel0",
		"--metrics-addr", "127.0.0.1:0",
	}
	for _, f := range []struct{ flag, file string }{
		{"control-socket", h.Name + ".sock"},
		{"subnet-file", h.Name + "-subnet.env"},
	} {
		if known[f.flag] {
			args = append(args, "--"+f.flag, filepath.Join(env.Dir, f.file))
		}
	}
	for _, p := range t.Hosts {
		if p.Name != h.Name {
			args = append(args, "--peer", p.Subnet.String()+"="+p.UnderlayIP.String())
		}
	}
	return args
}

// weftdFlags lists the flags weftd's --help names.
func weftdFlags(ctx context.Context, weftd string) (map[string]bool, error) {
	// --help exits 0 or 2 depending on the flag package's mood; the text
	// is what counts.
	out, _ := exec.CommandContext(ctx, weftd, "--help").CombinedOutput()
	known := map[string]bool{}
	for _, m := range helpFlagRE.FindAllSubmatch(out, -1) {
		known[string(m[1])] = true
	}
	if !known["network"] || !known["peer"] {
		return nil, fmt.Errorf("%s --help lists no --network/--peer: not a weftd with static mode?\n%s", weftd, trimOutput(out))
	}
	return known, nil
}

// helpFlagRE matches a flag at the start of a line of Go flag usage.
var helpFlagRE = regexp.MustCompile(`(?m)^\s+--?([a-z][a-z0-9-]*)`)

// executable checks that path names a program the harness can start; flag
// names the option that sets it, for the error message.
func executable(path, flag string) error {
	if path == "" {
		return fmt.Errorf("no binary given (%s PATH)", flag)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%w (set %s PATH)", err, flag)
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file (set %s PATH)", path, flag)
	}
	return nil
}
