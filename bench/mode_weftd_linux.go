package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// weftTunMTU is what flannel's udp backend leaves for a pod's packet on a
// 1500-byte underlay: the outer IPv4 and UDP headers (28 bytes) come off.
const weftTunMTU = 1472

// weftdMode runs one weftd per host in static mode (no etcd), with extra
// appended to the flags every weftd gets. Variants (batch sizes, offloads)
// are further calls with other flags.
func weftdMode(name, about string, extra ...string) Mode {
	return Mode{
		Name:      name,
		About:     about,
		PodMTU:    weftTunMTU,
		Available: func(env *Env) error { return executable(env.Weftd, "--weftd") },
		Setup: func(ctx context.Context, env *Env, dp *Dataplane) error {
			podEndpoints(env.Topo, dp)
			for _, h := range env.Topo.Hosts {
				args := append([]string{env.Weftd}, weftdArgs(env, h)...)
				args = append(args, extra...)
				d, err := startDaemon(ctx, env.Topo, h.NS, env.Dir, name+"-"+h.Name, args...)
				if err != nil {
					return err
				}
				dp.addDaemon(d)
			}
			return nil
		},
	}
}

// weftdArgs is the static-mode command line of DESIGN.md for host h: its own
// subnet, every other host as a peer, and files kept in the run's directory
// so that nothing lands in /run of the machine.
func weftdArgs(env *Env, h Host) []string {
	t := env.Topo
	args := []string{
		"--network", t.Network.String(),
		"--subnet", h.Subnet.String(),
		"--public-ip", h.UnderlayIP.String(),
		"--tun-name", "flannel0",
		"--metrics-addr", "127.0.0.1:0",
		"--control-socket", filepath.Join(env.Dir, h.Name+".sock"),
		"--subnet-file", filepath.Join(env.Dir, h.Name+"-subnet.env"),
	}
	for _, p := range t.Hosts {
		if p.Name != h.Name {
			args = append(args, "--peer", p.Subnet.String()+"="+p.UnderlayIP.String())
		}
	}
	return args
}

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
