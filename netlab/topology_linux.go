// Package netlab builds a small network in network namespaces: hosts on one
// underlay, each with a pod behind it. The benchmark harness, the end-to-end
// tests and `weft demo` run their dataplanes on it. It holds only what every
// user shares (namespaces, veths, the underlay bridge, addresses, commands
// in a namespace, and the check that nothing was left behind); the overlay
// is always the user's to add and remove.
package netlab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Addresses of the topology. Every address lies in the documentation and
// shared-address ranges the project reserves for tests, so nothing leaks onto
// a real network even if a route were wrong.
var (
	underlayNet = netip.MustParsePrefix("192.0.2.0/24")
	overlayNet  = netip.MustParsePrefix("100.96.0.0/16")
)

// Interface names inside the namespaces. They are the same in every host,
// which is possible because each lives in its own namespace.
const (
	UnderlayDev = "ul0"  // the host's underlay interface
	hostPodDev  = "pod0" // the host side of the pod veth
	podDev      = "eth0" // the pod side of the pod veth
	bridgeDev   = "br0"  // the underlay bridge in <prefix>-ul (3 or more hosts)
)

// maxHosts keeps 192.0.2.N and 100.96.N.0/24 valid for every host.
const maxHosts = 253

// Config says what New builds.
type Config struct {
	// Prefix starts every namespace name: <prefix>-h1, <prefix>-p1, <prefix>-ul.
	// It must be unique per run so that parallel runs never collide.
	Prefix string
	// Hosts is the number of hosts, at least 2.
	Hosts int
	// UnderlayMTU is the MTU of the underlay interfaces; 0 means 1500.
	UnderlayMTU int
}

// Host is one host namespace with the pod behind it.
type Host struct {
	Name        string       // "h1"
	NS          string       // netns of the host
	UnderlayIP  netip.Addr   // 192.0.2.N
	UnderlayDev string       // the host's underlay interface inside NS
	Subnet      netip.Prefix // 100.96.N.0/24, the pod subnet this host serves
	PodNS       string       // netns of the pod
	PodIP       netip.Addr   // 100.96.N.2
	PodDev      string       // pod-side interface name inside PodNS
	PodGateway  netip.Addr   // 100.96.N.1, on HostPodDev; the pod's default route
	HostPodDev  string       // host-side interface of the pod veth inside NS
}

// Topology is a set of hosts on one underlay, each with one pod. It holds only
// the underlay, the pod veths and their connected routes: whoever runs an
// overlay on it (a bench mode, a test's daemons) adds its own routes and
// devices and removes them again.
type Topology struct {
	Config   Config
	Hosts    []Host
	Network  netip.Prefix // 100.96.0.0/16, the overlay
	Underlay netip.Prefix // 192.0.2.0/24
	// BridgeNS is the namespace holding the underlay bridge; empty for two
	// hosts, which are joined by a single veth pair.
	BridgeNS string

	mu      sync.Mutex
	created []string // namespaces this topology added, in creation order
}

var prefixRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$`)

// New builds the namespaces, links and addresses cfg asks for. On error it
// removes whatever it had made. It never touches a namespace it did not
// create: a name that already exists is an error.
func New(ctx context.Context, cfg Config) (*Topology, error) {
	t, err := Plan(cfg)
	if err != nil {
		return nil, err
	}
	if err := t.build(ctx); err != nil {
		if cerr := t.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return nil, fmt.Errorf("topology %s: %w", t.Config.Prefix, err)
	}
	return t, nil
}

// Plan checks cfg and returns the topology New would build, with its names
// and addresses, without creating anything: for code that derives routes or
// flags from a topology and tests of it that need no root.
func Plan(cfg Config) (*Topology, error) {
	if cfg.UnderlayMTU == 0 {
		cfg.UnderlayMTU = 1500
	}
	if !prefixRE.MatchString(cfg.Prefix) {
		return nil, fmt.Errorf("topology: prefix %q: want 1-32 of [A-Za-z0-9_.-]", cfg.Prefix)
	}
	if cfg.Hosts < 2 || cfg.Hosts > maxHosts {
		return nil, fmt.Errorf("topology: %d hosts: want 2 to %d", cfg.Hosts, maxHosts)
	}
	if cfg.UnderlayMTU < 576 || cfg.UnderlayMTU > 65535 {
		return nil, fmt.Errorf("topology: underlay MTU %d out of range", cfg.UnderlayMTU)
	}
	t := &Topology{Config: cfg, Network: overlayNet, Underlay: underlayNet}
	for i := 1; i <= cfg.Hosts; i++ {
		t.Hosts = append(t.Hosts, newHost(cfg.Prefix, i))
	}
	return t, nil
}

func newHost(prefix string, n int) Host {
	b := byte(n)
	ul := underlayNet.Addr().As4()
	ul[3] = b
	sub := overlayNet.Addr().As4()
	sub[2] = b
	gw, pod := sub, sub
	gw[3], pod[3] = 1, 2
	name := "h" + strconv.Itoa(n)
	return Host{
		Name:        name,
		NS:          prefix + "-" + name,
		UnderlayIP:  netip.AddrFrom4(ul),
		UnderlayDev: UnderlayDev,
		Subnet:      netip.PrefixFrom(netip.AddrFrom4(sub), 24),
		PodNS:       prefix + "-p" + strconv.Itoa(n),
		PodIP:       netip.AddrFrom4(pod),
		PodDev:      podDev,
		PodGateway:  netip.AddrFrom4(gw),
		HostPodDev:  hostPodDev,
	}
}

func (t *Topology) build(ctx context.Context) error {
	for _, h := range t.Hosts {
		if err := t.addNS(ctx, h.NS, true); err != nil {
			return err
		}
		if err := t.addNS(ctx, h.PodNS, false); err != nil {
			return err
		}
	}
	if err := t.buildUnderlay(ctx); err != nil {
		return err
	}
	for _, h := range t.Hosts {
		if err := t.buildPod(ctx, h); err != nil {
			return err
		}
	}
	return nil
}

// addNS creates a namespace with its loopback up. IPv6 is turned off so that
// router solicitations and MLD reports never show up in a measurement or a
// packet capture; the overlay is IPv4 only.
func (t *Topology) addNS(ctx context.Context, ns string, forward bool) error {
	if _, err := runCmd(ctx, "ip", "netns", "add", ns); err != nil {
		return err
	}
	t.mu.Lock()
	t.created = append(t.created, ns)
	t.mu.Unlock()
	if err := setSysctls(ns, map[string]string{
		"net/ipv6/conf/all/disable_ipv6":     "1",
		"net/ipv6/conf/default/disable_ipv6": "1",
	}); err != nil {
		return err
	}
	if forward {
		if err := setSysctls(ns, map[string]string{"net/ipv4/ip_forward": "1"}); err != nil {
			return err
		}
	}
	_, err := runCmd(ctx, "ip", "-n", ns, "link", "set", "lo", "up")
	return err
}

// buildUnderlay joins the hosts: one veth pair for two hosts (the simplest
// path, nothing between them to measure), a bridge for more.
func (t *Topology) buildUnderlay(ctx context.Context) error {
	mtu := strconv.Itoa(t.Config.UnderlayMTU)
	if len(t.Hosts) == 2 {
		a, b := t.Hosts[0], t.Hosts[1]
		if _, err := runCmd(ctx, "ip", "-n", a.NS, "link", "add", UnderlayDev, "mtu", mtu,
			"type", "veth", "peer", "name", UnderlayDev, "netns", b.NS, "mtu", mtu); err != nil {
			return err
		}
	} else {
		t.BridgeNS = t.Config.Prefix + "-ul"
		if err := t.addNS(ctx, t.BridgeNS, false); err != nil {
			return err
		}
		br := t.BridgeNS
		if _, err := runCmd(ctx, "ip", "-n", br, "link", "add", bridgeDev, "mtu", mtu, "type", "bridge"); err != nil {
			return err
		}
		if _, err := runCmd(ctx, "ip", "-n", br, "link", "set", bridgeDev, "up"); err != nil {
			return err
		}
		for _, h := range t.Hosts {
			if _, err := runCmd(ctx, "ip", "-n", br, "link", "add", h.Name, "mtu", mtu,
				"type", "veth", "peer", "name", UnderlayDev, "netns", h.NS, "mtu", mtu); err != nil {
				return err
			}
			if _, err := runCmd(ctx, "ip", "-n", br, "link", "set", h.Name, "master", bridgeDev, "up"); err != nil {
				return err
			}
		}
	}
	for _, h := range t.Hosts {
		addr := netip.PrefixFrom(h.UnderlayIP, underlayNet.Bits()).String()
		if _, err := runCmd(ctx, "ip", "-n", h.NS, "addr", "add", addr, "dev", UnderlayDev); err != nil {
			return err
		}
		if _, err := runCmd(ctx, "ip", "-n", h.NS, "link", "set", UnderlayDev, "up"); err != nil {
			return err
		}
	}
	return nil
}

func (t *Topology) buildPod(ctx context.Context, h Host) error {
	steps := [][]string{
		{"ip", "-n", h.NS, "link", "add", hostPodDev, "type", "veth", "peer", "name", podDev, "netns", h.PodNS},
		{"ip", "-n", h.NS, "addr", "add", netip.PrefixFrom(h.PodGateway, h.Subnet.Bits()).String(), "dev", hostPodDev},
		{"ip", "-n", h.NS, "link", "set", hostPodDev, "up"},
		{"ip", "-n", h.PodNS, "addr", "add", netip.PrefixFrom(h.PodIP, h.Subnet.Bits()).String(), "dev", podDev},
		{"ip", "-n", h.PodNS, "link", "set", podDev, "up"},
		{"ip", "-n", h.PodNS, "route", "add", "default", "via", h.PodGateway.String()},
	}
	for _, s := range steps {
		if _, err := runCmd(ctx, s[0], s[1:]...); err != nil {
			return err
		}
	}
	return nil
}

// SetPodMTU sets the MTU of both ends of every pod veth. An overlay mode sets
// it to what fits in its tunnel (1472 for flannel udp, 1450 for VXLAN), as a
// CNI plugin would, so that TCP picks segments that need no fragmentation.
func (t *Topology) SetPodMTU(mtu int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m := strconv.Itoa(mtu)
	for _, h := range t.Hosts {
		if _, err := runCmd(ctx, "ip", "-n", h.NS, "link", "set", hostPodDev, "mtu", m); err != nil {
			return err
		}
		if _, err := runCmd(ctx, "ip", "-n", h.PodNS, "link", "set", podDev, "mtu", m); err != nil {
			return err
		}
	}
	return nil
}

// Namespaces lists the namespaces this topology made and has not removed.
func (t *Topology) Namespaces() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.created...)
}

// Close removes every namespace the topology made; the veths and the bridge
// go with them. It is idempotent and safe to call from a signal handler's
// goroutine while the topology is in use. Processes still running inside a
// namespace keep it alive after its name is gone, so callers stop their
// processes first.
func (t *Topology) Close() error {
	t.mu.Lock()
	created := t.created
	t.created = nil
	t.mu.Unlock()
	var errs []error
	// Reverse order: pods before hosts, the bridge last.
	for i := len(created) - 1; i >= 0; i-- {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := runCmd(ctx, "ip", "netns", "del", created[i])
		cancel()
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Run runs args inside namespace ns and returns its combined output. A
// failure's error carries the command and its output.
func (t *Topology) Run(ctx context.Context, ns string, args ...string) ([]byte, error) {
	if len(args) == 0 {
		return nil, errors.New("run: no command")
	}
	return runCmd(ctx, "ip", append([]string{"netns", "exec", ns}, args...)...)
}

// Command returns, not started, a command that runs args inside namespace ns.
// `ip netns exec` execs the program in place, so the process's PID is the
// program's own (its /proc/PID/stat counts its CPU). When ctx ends the
// process gets SIGTERM, so that daemons remove their devices and routes,
// then SIGKILL 5 s later.
func (t *Topology) Command(ctx context.Context, ns string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, args...)...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}
