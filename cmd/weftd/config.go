package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/weft-dev/weft/control"
	"github.com/weft-dev/weft/encap"
	"github.com/weft-dev/weft/engine"
	"github.com/weft-dev/weft/kube"
	"github.com/weft-dev/weft/lease"
)

// config is weftd's command line, checked. Flags are named as flanneld's
// where the two overlap.
type config struct {
	iface       string
	publicIP    netip.Addr
	port        int
	tunName     string
	workers     int
	batch       int
	offload     string
	zeroCopy    zeroCopyFlag
	metricsAddr string
	logLevel    string
	logFile     string // "" logs to stderr (the journal)
	keepDevice  bool   // leave the TUN device, its address and route when stopping

	controlSocket string // where weft status, routes and dump reach this daemon

	// Static mode: the subnets are given, no etcd.
	network netip.Prefix
	subnet  netip.Prefix
	peers   []engine.Route

	// Cluster mode: the subnet is leased in etcd, the peers watched there.
	etcd               lease.Options
	embeddedEtcd       string // data dir of an in-process etcd, or ""
	embeddedEtcdListen string
	subnetFile         string

	// Kubernetes mode (--kube-subnet-mgr): the subnet is the Node's
	// podCIDR, the peers are the other Nodes (package kube).
	kubeSubnetMgr             bool
	kubeconfigFile            string
	kubeAPIURL                string
	kubeAnnotationPrefix      string
	netConfPath               string
	setNodeNetworkUnavailable bool

	version  bool // print the version and exit
	profiles bool // serve /debug/pprof on the metrics address
	ipMasq   bool // masquerade pod traffic leaving the overlay (package masq)
}

// static reports whether weftd runs without etcd, on given subnets.
func (c *config) static() bool { return c.subnet.IsValid() }

// peerFlags collects repeated --peer SUBNET=IP[:PORT] values.
type peerFlags []string

func (p *peerFlags) String() string     { return strings.Join(*p, ",") }
func (p *peerFlags) Set(v string) error { *p = append(*p, v); return nil }

// parseFlags reads args, falling back to WEFTD_<FLAG> environment variables
// (dashes as underscores) for flags not given, and checks the result. Errors
// name the flag and the value.
func parseFlags(args []string, getenv func(string) string) (*config, error) {
	return parseFlagsTo(args, getenv, os.Stderr)
}

func parseFlagsTo(args []string, getenv func(string) string, out io.Writer) (*config, error) {
	fs := flag.NewFlagSet("weftd", flag.ContinueOnError)
	fs.SetOutput(out)
	var (
		c                         config
		publicIP, network, subnet string
		peers                     peerFlags
		endpoints                 string
		renewMargin               int
	)
	fs.StringVar(&c.iface, "iface", "", "underlay interface `NAME or IP` (default: the interface holding --public-ip, else that of the default route)")
	fs.StringVar(&publicIP, "public-ip", "", "`IP` peers send to (default: the address of --iface)")
	fs.IntVar(&c.port, "port", encap.DefaultPort, "UDP `port` of the encapsulation (flannel's Backend.Port)")
	fs.StringVar(&c.tunName, "tun-name", "flannel0", "`name` of the TUN device")
	fs.IntVar(&c.workers, "workers", runtime.NumCPU(), "forwarding workers, each with its own TUN queue and socket")
	fs.IntVar(&c.batch, "batch", engine.DefaultBatchSize, "most packets per syscall (1 = one packet per syscall, as flanneld)")
	fs.StringVar(&c.offload, "offload", "auto", "TUN and UDP segmentation offloads: auto, on or off")
	c.zeroCopy = zeroCopyFlag{send: true, receive: true}
	fs.Var(&c.zeroCopy, "zero-copy", "with offloads, move super-packets without copying them: on (true), off (false: wireguard-go's copying offload device), or only one lever, send (cut super-packets read from the TUN in place) or receive (write received segments to the TUN from the socket's buffers)")
	fs.StringVar(&c.metricsAddr, "metrics-addr", "127.0.0.1:9465", "`address` serving /metrics, /healthz and /readyz (empty: none)")
	fs.StringVar(&c.controlSocket, "control-socket", control.DefaultSocket, "`path` of the unix socket weft status, routes and dump talk to (empty: none)")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&c.logFile, "log-file", "", "append logs to `file` instead of stderr; SIGHUP reopens it (after logrotate moved it)")
	fs.BoolVar(&c.keepDevice, "keep-device", false, "on stop, leave the TUN device with its address and route (persistent): while weftd restarts, overlay packets die there instead of following the default route")
	fs.StringVar(&endpoints, "etcd-endpoints", lease.DefaultEndpoint, "comma-separated etcd `URLs`")
	fs.StringVar(&c.etcd.Prefix, "etcd-prefix", lease.DefaultPrefix, "etcd `prefix` of the network config and the subnet leases")
	fs.StringVar(&c.etcd.CAFile, "etcd-cafile", "", "`file` of the CA that signs the etcd servers' certificates")
	fs.StringVar(&c.etcd.CertFile, "etcd-certfile", "", "client certificate `file` for etcd")
	fs.StringVar(&c.etcd.KeyFile, "etcd-keyfile", "", "client key `file` for etcd")
	fs.StringVar(&c.etcd.Username, "etcd-username", "", "etcd `user`")
	fs.StringVar(&c.etcd.Password, "etcd-password", "", "etcd `password`")
	fs.StringVar(&c.embeddedEtcd, "embedded-etcd", "", "run a single-member etcd in weftd with its data in `DIR` (a single host or a lab)")
	fs.StringVar(&c.embeddedEtcdListen, "embedded-etcd-listen", lease.DefaultEndpoint, "`URL` the embedded etcd serves clients on")
	fs.BoolVar(&c.profiles, "debug-pprof", false, "also serve Go profiles (/debug/pprof/) on --metrics-addr")
	fs.BoolVar(&c.ipMasq, "ip-masq", false, "masquerade traffic from the pods to destinations outside the overlay network, as flanneld's --ip-masq (nftables table ip weft, removed on stop)")
	fs.StringVar(&c.subnetFile, "subnet-file", lease.DefaultSubnetFile, "`path` of the subnet.env written for flannel's CNI plugin")
	fs.IntVar(&renewMargin, "subnet-lease-renew-margin", 60, "renew the subnet lease this many `minutes` before it expires")
	fs.StringVar(&network, "network", "", "static mode: the overlay `CIDR`, e.g. 100.96.0.0/16; with --embedded-etcd: the network of the default config (default 100.96.0.0/16)")
	fs.StringVar(&subnet, "subnet", "", "static mode: this host's `CIDR`, e.g. 100.96.1.0/24")
	fs.Var(&peers, "peer", "static mode: a peer as `SUBNET=IP[:PORT]` (repeatable)")
	fs.BoolVar(&c.kubeSubnetMgr, "kube-subnet-mgr", false, "take the subnet and the peers from Kubernetes Nodes, as flanneld's --kube-subnet-mgr (no etcd)")
	fs.StringVar(&c.kubeconfigFile, "kubeconfig-file", "", "kubeconfig `file` for --kube-subnet-mgr (default: the pod's in-cluster config)")
	fs.StringVar(&c.kubeAPIURL, "kube-api-url", "", "Kubernetes API server `URL` for --kube-subnet-mgr (default: the in-cluster config's)")
	fs.StringVar(&c.kubeAnnotationPrefix, "kube-annotation-prefix", kube.DefaultAnnotationPrefix, "`prefix` of the Node annotations in --kube-subnet-mgr mode")
	fs.StringVar(&c.netConfPath, "net-config-path", kube.DefaultNetConfPath, "`path` of the network config (net-conf.json) in --kube-subnet-mgr mode")
	fs.BoolVar(&c.setNodeNetworkUnavailable, "set-node-network-unavailable", true, "in --kube-subnet-mgr mode, set the Node's NetworkUnavailable condition to False once up")
	fs.BoolVar(&c.version, "version", false, "print weft's version, commit and Go version, and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: weftd [flags]\n\nweftd forwards overlay packets between a TUN device and peer hosts over UDP,\ncompatible with flannel's udp backend. Every flag can also be given as an\nenvironment variable WEFTD_<FLAG>, e.g. WEFTD_PUBLIC_IP.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if c.version {
		return &c, nil // nothing else matters: main prints the version
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		key := "WEFTD_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		v := getenv(key)
		if given[f.Name] || v == "" || envErr != nil {
			return
		}
		if f.Name == "peer" {
			// A list in one variable: space or comma separated.
			for _, p := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' }) {
				peers = append(peers, p)
			}
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			envErr = fmt.Errorf("%s=%q: %w", key, v, err)
		}
	})
	if envErr != nil {
		return nil, envErr
	}
	if c.kubeSubnetMgr {
		return &c, c.checkKube(publicIP, subnet, network, peers, given)
	}
	if subnet != "" {
		for _, f := range []string{"etcd-endpoints", "etcd-prefix", "etcd-cafile", "etcd-certfile", "etcd-keyfile", "etcd-username", "etcd-password", "embedded-etcd", "embedded-etcd-listen", "subnet-lease-renew-margin"} {
			if given[f] {
				return nil, fmt.Errorf("--%s: static mode (--subnet) uses no etcd", f)
			}
		}
		if err := c.check(publicIP, network, subnet, peers); err != nil {
			return nil, err
		}
		return &c, nil
	}
	if err := c.checkCluster(publicIP, network, endpoints, renewMargin, peers); err != nil {
		return nil, err
	}
	if c.embeddedEtcd != "" && !given["etcd-endpoints"] {
		c.etcd.Endpoints = nil // the embedded etcd's own address
	}
	return &c, nil
}

// checkKube checks the flags of Kubernetes mode.
func (c *config) checkKube(publicIP, subnet, network string, peers []string, given map[string]bool) error {
	if subnet != "" || network != "" || len(peers) > 0 {
		return errors.New("--kube-subnet-mgr: the subnet and the peers come from the Nodes; --subnet, --network and --peer do not apply")
	}
	for _, f := range []string{"etcd-endpoints", "etcd-prefix", "embedded-etcd", "embedded-etcd-listen"} {
		if given[f] {
			return fmt.Errorf("--%s: --kube-subnet-mgr uses no etcd", f)
		}
	}
	if c.subnetFile == "" {
		return errors.New("--subnet-file: empty")
	}
	if c.netConfPath == "" {
		return errors.New("--net-config-path: empty")
	}
	return c.checkCommon(publicIP)
}

// checkCluster checks the flags of cluster mode (subnet leased in etcd).
func (c *config) checkCluster(publicIP, network, endpoints string, renewMargin int, peers []string) error {
	if len(peers) > 0 {
		return errors.New("--peer: only in static mode, with --subnet")
	}
	if err := c.checkCommon(publicIP); err != nil {
		return err
	}
	for _, ep := range strings.Split(endpoints, ",") {
		u, err := url.Parse(strings.TrimSpace(ep))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("--etcd-endpoints %q: %q is not an http:// or https:// URL", endpoints, ep)
		}
		c.etcd.Endpoints = append(c.etcd.Endpoints, strings.TrimSpace(ep))
	}
	if (c.etcd.CertFile == "") != (c.etcd.KeyFile == "") {
		return errors.New("--etcd-certfile and --etcd-keyfile go together")
	}
	if renewMargin < 1 || renewMargin >= 24*60 {
		return fmt.Errorf("--subnet-lease-renew-margin %d: out of range 1-1439 minutes (the lease lasts 24 h)", renewMargin)
	}
	c.etcd.RenewMargin = time.Duration(renewMargin) * time.Minute
	if c.subnetFile == "" {
		return errors.New("--subnet-file: empty")
	}
	if c.embeddedEtcd == "" {
		if network != "" {
			return errors.New("--network: only with --subnet (static mode) or --embedded-etcd (the network of the default config it writes)")
		}
		return nil
	}
	u, err := url.Parse(c.embeddedEtcdListen)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("--embedded-etcd-listen %q: not an http:// URL", c.embeddedEtcdListen)
	}
	if network == "" {
		network = "100.96.0.0/16"
	}
	c.network, err = parsePrefix4("--network", network)
	return err
}

func (c *config) check(publicIP, network, subnet string, peers []string) error {
	if err := c.checkCommon(publicIP); err != nil {
		return err
	}
	var err error
	if network == "" {
		return errors.New("--network: required with --subnet (static mode)")
	}
	if c.network, err = parsePrefix4("--network", network); err != nil {
		return err
	}
	if c.subnet, err = parsePrefix4("--subnet", subnet); err != nil {
		return err
	}
	if !within(c.subnet, c.network) {
		return fmt.Errorf("--subnet %v: not inside --network %v", c.subnet, c.network)
	}
	seen := map[netip.Prefix]bool{}
	for _, p := range peers {
		r, err := c.parsePeer(p)
		if err != nil {
			return err
		}
		if seen[r.Subnet] {
			return fmt.Errorf("--peer %q: subnet %v given twice", p, r.Subnet)
		}
		seen[r.Subnet] = true
		c.peers = append(c.peers, r)
	}
	return nil
}

// checkCommon checks the flags of both modes.
func (c *config) checkCommon(publicIP string) error {
	var err error
	if publicIP != "" {
		if c.publicIP, err = netip.ParseAddr(publicIP); err != nil || !c.publicIP.Is4() {
			return fmt.Errorf("--public-ip %q: not an IPv4 address", publicIP)
		}
	}
	if c.port < 1 || c.port > 65535 {
		return fmt.Errorf("--port %d: out of range 1-65535", c.port)
	}
	if c.tunName == "" || len(c.tunName) > 15 || strings.ContainsAny(c.tunName, "/ \t\n") {
		return fmt.Errorf("--tun-name %q: not a valid interface name (1-15 characters, no '/' or spaces)", c.tunName)
	}
	if c.workers < 1 || c.workers > 256 {
		return fmt.Errorf("--workers %d: out of range 1-256", c.workers)
	}
	if c.batch < 1 || c.batch > 1024 {
		return fmt.Errorf("--batch %d: out of range 1-1024", c.batch)
	}
	switch c.offload {
	case "auto", "on", "off":
	default:
		return fmt.Errorf("--offload %q: must be auto, on or off", c.offload)
	}
	if _, err := parseLogLevel(c.logLevel); err != nil {
		return err
	}
	return nil
}

func (c *config) parsePeer(v string) (engine.Route, error) {
	sub, addr, ok := strings.Cut(v, "=")
	if !ok {
		return engine.Route{}, fmt.Errorf("--peer %q: want SUBNET=IP[:PORT], e.g. 100.96.2.0/24=192.0.2.2", v)
	}
	p, err := parsePrefix4("--peer", sub)
	if err != nil {
		return engine.Route{}, err
	}
	if !within(p, c.network) {
		return engine.Route{}, fmt.Errorf("--peer %q: subnet %v not inside --network %v", v, p, c.network)
	}
	if p.Overlaps(c.subnet) {
		return engine.Route{}, fmt.Errorf("--peer %q: subnet %v overlaps this host's --subnet %v", v, p, c.subnet)
	}
	var ap netip.AddrPort
	if a, err := netip.ParseAddr(addr); err == nil {
		ap = netip.AddrPortFrom(a, uint16(c.port))
	} else if ap, err = netip.ParseAddrPort(addr); err != nil {
		return engine.Route{}, fmt.Errorf("--peer %q: %q is not an IP or IP:PORT", v, addr)
	}
	if !ap.Addr().Is4() || ap.Port() == 0 {
		return engine.Route{}, fmt.Errorf("--peer %q: %q is not an IPv4 address with a non-zero port", v, addr)
	}
	return engine.Route{Subnet: p, Peer: ap}, nil
}

func parsePrefix4(flagName, v string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(v)
	if err != nil || !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("%s %q: not an IPv4 CIDR", flagName, v)
	}
	if p != p.Masked() {
		return netip.Prefix{}, fmt.Errorf("%s %q: host bits set (did you mean %v?)", flagName, v, p.Masked())
	}
	return p, nil
}

// within reports whether inner lies entirely inside outer.
func within(inner, outer netip.Prefix) bool {
	return inner.Bits() >= outer.Bits() && outer.Contains(inner.Addr())
}

// zeroCopyFlag is --zero-copy: which of the two zero-copy levers are on.
// It reads as a boolean flag too (--zero-copy, --zero-copy=false), as it
// was one.
type zeroCopyFlag struct{ send, receive bool }

func (z *zeroCopyFlag) IsBoolFlag() bool { return true }

func (z *zeroCopyFlag) String() string {
	if z == nil {
		return ""
	}
	switch {
	case z.send && z.receive:
		return "on"
	case z.send:
		return "send"
	case z.receive:
		return "receive"
	}
	return "off"
}

func (z *zeroCopyFlag) Set(v string) error {
	switch v {
	case "on", "true", "1":
		*z = zeroCopyFlag{true, true}
	case "off", "false", "0":
		*z = zeroCopyFlag{}
	case "send":
		*z = zeroCopyFlag{send: true}
	case "receive":
		*z = zeroCopyFlag{receive: true}
	default:
		return fmt.Errorf("want on, off, send or receive")
	}
	return nil
}

// any reports whether either lever is on: both need weft's own device.
func (z zeroCopyFlag) any() bool { return z.send || z.receive }
