package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"runtime"
	"strings"
	"time"

	"github.com/weft-dev/weft/control"
	"github.com/weft-dev/weft/encap"
	"github.com/weft-dev/weft/engine"
	"github.com/weft-dev/weft/lease"
	"github.com/weft-dev/weft/tun"
)

// config is weftd's command line, checked. Flags are named as flanneld's
// where the two overlap, and mean what flanneld's mean (flanneld.go lists
// each of flanneld's flags with what weftd does with it).
type config struct {
	ifaces        []string         // --iface, names or addresses, tried in order
	ifaceRegexes  []*regexp.Regexp // --iface-regex, tried in order after ifaces
	ifaceCanReach netip.Addr       // --iface-can-reach: the interface the route to it leaves by
	publicIP      netip.Addr
	port          int
	tunName       string
	workers       int
	batch         int
	busyPoll      time.Duration
	offload       string
	zeroCopy      zeroCopyFlag
	metricsAddr   string
	healthzAddr   string // --healthz-ip:--healthz-port, "" when the port is 0
	logLevel      string
	logFile       string // "" logs to stderr (the journal)
	keepDevice    bool   // leave the TUN device, its address and route when stopping

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
	// podCIDR, the peers are the other Nodes; no etcd flag applies.
	kubeSubnetMgr             bool
	kubeconfigFile            string // "" in a pod: the service account
	kubeAPIURL                string // "" in a pod, or from the kubeconfig
	kubeAnnotationPrefix      string
	netConfPath               string // flannel's net-conf.json
	setNodeNetworkUnavailable bool   // set the Node's NetworkUnavailable condition to False once up

	// Firewall: what weft puts into the host's nftables.
	ipMasq          bool          // masquerade pod traffic leaving the overlay (package masq)
	masqFullyRandom bool          // masquerade with fully random source ports
	forwardRules    bool          // accept the overlay in iptables' FORWARD chain (package forward)
	firewallResync  time.Duration // how often both are checked and repaired
	cleanup         bool          // remove weft's firewall rules and exit

	version  bool // print the version and exit
	profiles bool // serve /debug/pprof on the metrics address
}

// static reports whether weftd runs without etcd, on given subnets.
func (c *config) static() bool { return c.subnet.IsValid() }

// listFlag collects a repeatable flag's values, in order.
type listFlag []string

func (p *listFlag) String() string     { return strings.Join(*p, ",") }
func (p *listFlag) Set(v string) error { *p = append(*p, v); return nil }

// The environment variables that stand in for flags not on the command
// line: WEFTD_<FLAG> for every flag, FLANNELD_<FLAG> for flanneld's (as
// flanneld reads them), dashes as underscores. The command line wins over
// WEFTD_, WEFTD_ over FLANNELD_, and FLANNELD_ over the default.
const (
	envPrefix         = "WEFTD_"
	flanneldEnvPrefix = "FLANNELD_"
)

func envName(prefix, flagName string) string {
	return prefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseFlags reads args, falling back to the environment (see envPrefix)
// for flags not given, and checks the result. Errors name the flag and the
// value.
func parseFlags(args []string, getenv func(string) string) (*config, error) {
	return parseFlagsTo(args, getenv, os.Stderr)
}

func parseFlagsTo(args []string, getenv func(string) string, out io.Writer) (*config, error) {
	fs := flag.NewFlagSet("weftd", flag.ContinueOnError)
	fs.SetOutput(out)
	var (
		c                                      config
		publicIP, network, subnet, canReach    string
		peers, ifaces, ifaceRegexes            listFlag
		endpoints, healthzIP                   string
		renewMargin, healthzPort, resync, verb int
		fullyRandomOff, fullyRandomOffAlias    bool
	)
	fs.Var(&ifaces, "iface", "underlay interface `NAME or IP`; repeatable, tried in order, the first that exists wins (default: the interface holding --public-ip, else that of the default route)")
	fs.Var(&ifaceRegexes, "iface-regex", "`regex` matched against the interfaces' IPv4 addresses, then their names; repeatable, tried in order after every --iface")
	fs.StringVar(&canReach, "iface-can-reach", "", "use the interface the route to `IP` leaves by (ip route get IP), when no --iface or --iface-regex is given")
	fs.StringVar(&publicIP, "public-ip", "", "`IP` peers send to (default: the address of --iface)")
	fs.IntVar(&c.port, "port", encap.DefaultPort, "UDP `port` of the encapsulation (flannel's Backend.Port)")
	fs.StringVar(&c.tunName, "tun-name", "flannel0", "`name` of the TUN device")
	fs.IntVar(&c.workers, "workers", runtime.NumCPU(), "forwarding workers, each with its own TUN queue and socket")
	fs.IntVar(&c.batch, "batch", engine.DefaultBatchSize, "most packets per syscall (1 = one packet per syscall, as flanneld)")
	fs.DurationVar(&c.busyPoll, "busy-poll", 0, "keep the forwarding loops polling for `duration` after traffic instead of sleeping at once, so that a reply finds them awake (0: never poll; at most 10ms)")
	fs.StringVar(&c.offload, "offload", "auto", "TUN and UDP segmentation offloads: auto, on or off")
	// Send only: zero-copy receive measured no gain end to end (bench/RESULTS.md).
	c.zeroCopy = zeroCopyFlag{send: true}
	fs.Var(&c.zeroCopy, "zero-copy", "with offloads, move super-packets without copying them: send (the default: cut super-packets read from the TUN in place), receive (write received segments to the TUN from the socket's buffers), on (true: both), or off (false: wireguard-go's copying offload device, the bench's baseline)")
	fs.StringVar(&c.metricsAddr, "metrics-addr", "127.0.0.1:9465", "`address` serving /metrics, /healthz and /readyz (empty: none)")
	fs.StringVar(&healthzIP, "healthz-ip", "0.0.0.0", "`IP` the healthz server listens on, as flanneld's (see --healthz-port)")
	fs.IntVar(&healthzPort, "healthz-port", 0, "`port` of a server answering /healthz and /readyz only, as flanneld's (0: none)")
	fs.StringVar(&c.controlSocket, "control-socket", control.DefaultSocket, "`path` of the unix socket weft status, routes and dump talk to (empty: none)")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.IntVar(&verb, "v", 0, "flanneld's log verbosity: 0 is --log-level info, 1 and above debug")
	fs.StringVar(&c.logFile, "log-file", "", "append logs to `file` instead of stderr; SIGHUP reopens it (after logrotate moved it)")
	fs.BoolVar(&c.keepDevice, "keep-device", false, "on stop, leave the TUN device with its address and route (persistent): while weftd restarts, overlay packets die there instead of following the default route")
	fs.StringVar(&endpoints, "etcd-endpoints", lease.DefaultEndpoint, "comma-separated etcd endpoints, `URLs` or HOST:PORT as etcd's client takes them")
	fs.StringVar(&c.etcd.Prefix, "etcd-prefix", lease.DefaultPrefix, "etcd `prefix` of the network config and the subnet leases")
	fs.StringVar(&c.etcd.CAFile, "etcd-cafile", "", "`file` of the CA that signs the etcd servers' certificates")
	fs.StringVar(&c.etcd.CertFile, "etcd-certfile", "", "client certificate `file` for etcd")
	fs.StringVar(&c.etcd.KeyFile, "etcd-keyfile", "", "client key `file` for etcd")
	fs.StringVar(&c.etcd.Username, "etcd-username", "", "etcd `user`")
	fs.StringVar(&c.etcd.Password, "etcd-password", "", "etcd `password`")
	fs.StringVar(&c.embeddedEtcd, "embedded-etcd", "", "run a single-member etcd in weftd with its data in `DIR` (a single host or a lab)")
	fs.StringVar(&c.embeddedEtcdListen, "embedded-etcd-listen", lease.DefaultEndpoint, "`URL` the embedded etcd serves clients on")
	fs.BoolVar(&c.kubeSubnetMgr, "kube-subnet-mgr", false, "take this host's subnet from its Kubernetes Node (spec.podCIDR) and the peers from the other Nodes, instead of etcd")
	fs.StringVar(&c.kubeconfigFile, "kubeconfig-file", "", "kubeconfig `file` for the Kubernetes API (default: the pod's service account)")
	fs.StringVar(&c.kubeAPIURL, "kube-api-url", "", "Kubernetes API server `URL` (default: the pod's, or the kubeconfig's)")
	fs.StringVar(&c.kubeAnnotationPrefix, "kube-annotation-prefix", "flannel.alpha.coreos.com", "`prefix` of the Node annotations weftd writes and reads, as flanneld's")
	fs.StringVar(&c.netConfPath, "net-config-path", "/etc/kube-flannel/net-conf.json", "`path` of the network config (flannel's net-conf.json) with --kube-subnet-mgr")
	fs.BoolVar(&c.setNodeNetworkUnavailable, "set-node-network-unavailable", true, "with --kube-subnet-mgr, set the Node's NetworkUnavailable condition to False once the overlay is up")
	fs.BoolVar(&c.profiles, "debug-pprof", false, "also serve Go profiles (/debug/pprof/) on --metrics-addr")
	fs.BoolVar(&c.ipMasq, "ip-masq", false, "masquerade traffic from the pods to destinations outside the overlay network, as flanneld's --ip-masq (nftables table ip weft; kept across restarts, removed when weftd starts without --ip-masq or by weftd --cleanup)")
	fs.BoolVar(&fullyRandomOff, "ip-masq-random-fully-disable", false, "masquerade without fully random source ports, as flanneld's")
	fs.BoolVar(&fullyRandomOffAlias, "ip-masq-fully-random-disable", false, "the same as --ip-masq-random-fully-disable")
	fs.BoolVar(&c.forwardRules, "iptables-forward-rules", true, "accept traffic from and to the overlay network in iptables' FORWARD chain (nftables table ip filter), as flanneld does, so that a FORWARD policy of DROP does not cut the pods off")
	fs.IntVar(&resync, "iptables-resync", 5, "check weft's masquerade and FORWARD rules every this many `seconds`, and repair them")
	fs.BoolVar(&c.cleanup, "cleanup", false, "remove weft's masquerade and FORWARD rules from this host's nftables, and exit")
	fs.StringVar(&c.subnetFile, "subnet-file", lease.DefaultSubnetFile, "`path` of the subnet.env written for flannel's CNI plugin")
	fs.IntVar(&renewMargin, "subnet-lease-renew-margin", 60, "renew the subnet lease this many `minutes` before it expires")
	fs.StringVar(&network, "network", "", "static mode: the overlay `CIDR`, e.g. 100.96.0.0/16; with --embedded-etcd: the network of the default config (default 100.96.0.0/16)")
	fs.StringVar(&subnet, "subnet", "", "static mode: this host's `CIDR`, e.g. 100.96.1.0/24")
	fs.Var(&peers, "peer", "static mode: a peer as `SUBNET=IP[:PORT]` (repeatable)")
	fs.BoolVar(&c.version, "version", false, "print weft's version, commit and Go version, and exit")
	refused := registerRefused(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: weftd [flags]\n\nweftd forwards overlay packets between a TUN device and peer hosts over UDP,\ncompatible with flannel's udp backend. A flag not on the command line can be\ngiven as an environment variable WEFTD_<FLAG> (e.g. WEFTD_PUBLIC_IP), and\nflanneld's flags also as FLANNELD_<FLAG>; WEFTD_ wins over FLANNELD_.\n\nFlags:\n")
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
	if err := setFromEnv(fs, getenv); err != nil {
		return nil, err
	}
	given := map[string]bool{} // on the command line or in the environment
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for _, r := range flanneldFlags {
		if refused[r.name] != nil && given[r.name] {
			if err := r.refuse(refused[r.name]); err != nil {
				return nil, err
			}
		}
	}
	if c.cleanup {
		return &c, nil // main removes the rules and exits
	}
	if given["alsologtostderr"] && isTrue(refused["alsologtostderr"].value) && c.logFile != "" {
		return nil, errors.New("--alsologtostderr with --log-file: weft logs to one place; drop one of them")
	}
	if given["v"] {
		if given["log-level"] {
			return nil, fmt.Errorf("-v %d and --log-level %s: give one of them", verb, c.logLevel)
		}
		c.logLevel = "info"
		if verb >= 1 {
			c.logLevel = "debug"
		}
	}
	c.masqFullyRandom = !fullyRandomOff && !fullyRandomOffAlias
	if resync < 1 || resync > 3600 {
		return nil, fmt.Errorf("--iptables-resync %d: out of range 1-3600 seconds", resync)
	}
	c.firewallResync = time.Duration(resync) * time.Second
	if err := c.checkUnderlay(ifaces, ifaceRegexes, canReach); err != nil {
		return nil, err
	}
	if err := c.checkHealthz(healthzIP, healthzPort); err != nil {
		return nil, err
	}
	if !c.kubeSubnetMgr {
		for _, f := range []string{"kubeconfig-file", "kube-api-url", "kube-annotation-prefix", "net-config-path", "set-node-network-unavailable"} {
			if given[f] {
				return nil, fmt.Errorf("--%s: only with --kube-subnet-mgr", f)
			}
		}
	}
	notWith := func(mode string, flags ...string) error {
		for _, f := range flags {
			if given[f] {
				return fmt.Errorf("--%s: %s", f, mode)
			}
		}
		return nil
	}
	etcdOnly := []string{"etcd-endpoints", "etcd-prefix", "etcd-cafile", "etcd-certfile", "etcd-keyfile", "etcd-username", "etcd-password", "embedded-etcd", "embedded-etcd-listen", "subnet-lease-renew-margin"}
	switch {
	case c.kubeSubnetMgr:
		if err := notWith("--kube-subnet-mgr takes the subnet from the Kubernetes Node and uses no etcd", append(etcdOnly, "subnet", "network", "peer")...); err != nil {
			return nil, err
		}
		if err := c.checkKube(publicIP); err != nil {
			return nil, err
		}
		return &c, nil
	case subnet != "":
		if err := notWith("static mode (--subnet) uses no etcd", etcdOnly...); err != nil {
			return nil, err
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

// setFromEnv sets each flag not on the command line from WEFTD_<FLAG>, else,
// for flanneld's flags, from FLANNELD_<FLAG>. A repeatable flag (--iface,
// --peer) takes a comma- or space-separated list from one variable;
// --iface-regex takes one regex (a regex may hold a comma).
func setFromEnv(fs *flag.FlagSet, getenv func(string) string) error {
	onCommandLine := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { onCommandLine[f.Name] = true })
	isFlanneld := map[string]bool{}
	for _, f := range flanneldFlags {
		isFlanneld[f.name] = true
	}
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if onCommandLine[f.Name] || err != nil {
			return
		}
		key := envName(envPrefix, f.Name)
		v := getenv(key)
		if v == "" && isFlanneld[f.Name] {
			key = envName(flanneldEnvPrefix, f.Name)
			v = getenv(key)
		}
		if v == "" {
			return
		}
		values := []string{v}
		if f.Name == "peer" || f.Name == "iface" {
			values = strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' })
		}
		for _, x := range values {
			if serr := fs.Set(f.Name, x); serr != nil {
				err = fmt.Errorf("%s=%q: %w", key, v, serr)
				return
			}
		}
	})
	return err
}

// checkUnderlay checks the flags that choose the underlay interface.
func (c *config) checkUnderlay(ifaces, regexes []string, canReach string) error {
	for _, i := range ifaces {
		if i == "" {
			return errors.New("--iface: empty")
		}
	}
	c.ifaces = ifaces
	for _, r := range regexes {
		re, err := regexp.Compile(r)
		if err != nil {
			return fmt.Errorf("--iface-regex %q: %w", r, err)
		}
		c.ifaceRegexes = append(c.ifaceRegexes, re)
	}
	if canReach != "" {
		a, err := netip.ParseAddr(canReach)
		if err != nil || !a.Is4() {
			return fmt.Errorf("--iface-can-reach %q: not an IPv4 address", canReach)
		}
		c.ifaceCanReach = a
	}
	return nil
}

// checkHealthz checks --healthz-ip and --healthz-port, flanneld's healthz
// server: none when the port is 0, its default.
func (c *config) checkHealthz(ip string, port int) error {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return fmt.Errorf("--healthz-ip %q: not an IP address", ip)
	}
	if port < 0 || port > 65535 {
		return fmt.Errorf("--healthz-port %d: out of range 0-65535 (0: no healthz server)", port)
	}
	if port != 0 {
		c.healthzAddr = netip.AddrPortFrom(a, uint16(port)).String()
	}
	return nil
}

// checkKube checks the flags of Kubernetes mode. The kubeconfig and the
// net-conf.json are read when weftd starts, not here.
func (c *config) checkKube(publicIP string) error {
	if err := c.checkCommon(publicIP); err != nil {
		return err
	}
	if c.kubeAPIURL != "" {
		u, err := url.Parse(c.kubeAPIURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("--kube-api-url %q: not an http:// or https:// URL", c.kubeAPIURL)
		}
	}
	if c.kubeAnnotationPrefix == "" {
		return errors.New("--kube-annotation-prefix: empty")
	}
	if c.netConfPath == "" {
		return errors.New("--net-config-path: empty")
	}
	if c.subnetFile == "" {
		return errors.New("--subnet-file: empty")
	}
	return nil
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
		ep = strings.TrimSpace(ep)
		if err := checkEndpoint(ep); err != nil {
			return fmt.Errorf("--etcd-endpoints %q: %q %w", endpoints, ep, err)
		}
		c.etcd.Endpoints = append(c.etcd.Endpoints, ep)
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

// checkEndpoint accepts an etcd endpoint as etcd's client does: an http://
// or https:// URL, or HOST:PORT without a scheme, which the client reaches
// with TLS when it has TLS settings (--etcd-cafile, --etcd-certfile) and
// without otherwise. It is kept as given, for the client to decide.
func checkEndpoint(ep string) error {
	if !strings.Contains(ep, "://") {
		host, port, err := net.SplitHostPort(ep)
		if err != nil || host == "" || port == "" {
			return errors.New("is neither an http:// or https:// URL nor HOST:PORT")
		}
		return nil
	}
	u, err := url.Parse(ep)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("is not an http:// or https:// URL (or HOST:PORT)")
	}
	return nil
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
	if c.busyPoll < 0 || c.busyPoll > maxBusyPoll {
		return fmt.Errorf("--busy-poll %v: out of range 0-%v", c.busyPoll, maxBusyPoll)
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

// maxBusyPoll bounds --busy-poll: past a few milliseconds polling costs a
// core per loop under any steady trickle and wins nothing more.
const maxBusyPoll = 10 * time.Millisecond

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

// tunKind is the kind of TUN queues the flags ask for, and whether tun
// may fall back to plain ones: --offload picks offloads or none (auto: if
// the kernel has them), --zero-copy off picks wireguard-go's copying device
// over weft's own.
func (c *config) tunKind() (kind tun.Kind, fallBack bool) {
	switch {
	case c.offload == "off":
		return tun.Plain, false
	case c.zeroCopy.any():
		return tun.Offload, c.offload == "auto"
	}
	return tun.CopyingOffload, c.offload == "auto"
}
