package main

import (
	"flag"
	"fmt"
	"strconv"
)

// flanneldFlag is one of flanneld's flags (v0.28, klog's logging flags
// included) and what weftd does with it: implements it with flanneld's
// meaning and default (refused == ""), or refuses it at start, saying why
// and what to use instead. None is ignored.
type flanneldFlag struct {
	name    string
	boolean bool   // a refused flag that takes no value (-flag, -flag=false)
	refused string // why weft does not do it, and what to use instead
	// accept, if set, lets a refused flag through with these values: the
	// ones that ask for what weftd does anyway.
	accept func(value string) bool
}

// flanneldFlags lists every flag flanneld takes. The implemented ones are
// registered in parseFlagsTo with the rest of weftd's; the refused ones by
// registerRefused. The README's flag table says the same.
var flanneldFlags = []flanneldFlag{
	{name: "etcd-endpoints"},
	{name: "etcd-prefix"},
	{name: "etcd-keyfile"},
	{name: "etcd-certfile"},
	{name: "etcd-cafile"},
	{name: "etcd-username"},
	{name: "etcd-password"},
	{name: "version"},
	{name: "kube-subnet-mgr"},
	{name: "kube-api-url"},
	{name: "kube-annotation-prefix"},
	{name: "kubeconfig-file"},
	{name: "iface"},
	{name: "iface-regex"},
	{name: "iface-can-reach"},
	{name: "ip-masq"},
	{name: "ip-masq-random-fully-disable"},
	{name: "subnet-file"},
	{name: "public-ip"},
	{name: "subnet-lease-renew-margin"},
	{name: "healthz-ip"},
	{name: "healthz-port"},
	{name: "iptables-resync"},
	{name: "iptables-forward-rules"},
	{name: "net-config-path"},
	{name: "set-node-network-unavailable"},
	{name: "v"},
	{name: "public-ipv6", refused: "weft carries IPv4 only, as flannel's udp backend; leave it out (IPv6 pod traffic needs another flannel backend)"},
	{name: "blackhole-route", boolean: true, accept: isFalse,
		refused: "weft adds no blackhole route: packets for this host's subnet that no local route (the pods' bridge) takes enter the TUN device, and weftd drops them, counted as weft_drops_total{reason=\"no-route\"} and answered with ICMP net unreachable; with --keep-device they die in the device while weftd restarts. Leave it out"},
	{name: "logtostderr", boolean: true, accept: isTrue,
		refused: "weft logs to stderr unless --log-file FILE is given: use --log-file instead of logtostderr=false"},
	{name: "alsologtostderr", boolean: true, accept: func(string) bool { return true }},
	{name: "log_dir", refused: "weft writes one log file, not klog's per-run files in a directory: use --log-file FILE"},
	{name: "log_file", refused: "use --log-file FILE (SIGHUP reopens it, for logrotate)"},
	{name: "log_file_max_size", refused: "weft does not rotate its log itself: rotate --log-file with logrotate, which sends SIGHUP"},
	{name: "stderrthreshold", refused: "weft logs every record at or above --log-level to one place: use --log-level"},
	{name: "vmodule", refused: "weft has one log level for the whole daemon: use -v or --log-level"},
	{name: "log_backtrace_at", refused: "weft logs no stack traces at chosen lines: use --log-level debug"},
	{name: "add_dir_header", boolean: true, refused: "weft logs in log/slog's text format, with no klog headers: leave it out"},
	{name: "skip_headers", boolean: true, refused: "weft logs in log/slog's text format, with no klog headers: leave it out"},
	{name: "skip_log_headers", boolean: true, refused: "weft logs in log/slog's text format, with no klog headers: leave it out"},
	{name: "one_output", boolean: true, refused: "weft logs to one place only (stderr or --log-file): leave it out"},
	{name: "legacy_stderr_threshold_behavior", boolean: true, refused: "weft has no stderr threshold: use --log-level"},
}

func isTrue(v string) bool  { b, err := strconv.ParseBool(v); return err == nil && b }
func isFalse(v string) bool { b, err := strconv.ParseBool(v); return err == nil && !b }

// refusedValue holds what a refused flag was given, so that the refusal can
// wait until the environment is read too.
type refusedValue struct {
	value   string
	boolean bool
}

func (r *refusedValue) String() string {
	if r == nil {
		return ""
	}
	return r.value
}
func (r *refusedValue) Set(v string) error { r.value = v; return nil }
func (r *refusedValue) IsBoolFlag() bool   { return r.boolean }

// registerRefused adds the flanneld flags weftd does not implement, and
// those it accepts only some values of, to fs, and returns their values
// by name.
func registerRefused(fs *flag.FlagSet) map[string]*refusedValue {
	m := map[string]*refusedValue{}
	for _, f := range flanneldFlags {
		if f.refused == "" && f.accept == nil {
			continue
		}
		v := &refusedValue{boolean: f.boolean}
		m[f.name] = v
		var usage string
		switch {
		case f.refused == "":
			usage = "flanneld's; accepted: weft logs to stderr unless --log-file is given"
		case f.accept != nil:
			usage = "flanneld's; accepted with the value that asks for what weft does anyway, else refused: " + f.refused
		default:
			usage = "flanneld's; refused: " + f.refused
		}
		fs.Var(v, f.name, usage)
	}
	return m
}

// refuse returns the error for a refused flag given v, nil if v is one of
// the values the flag is accepted with.
func (f flanneldFlag) refuse(v *refusedValue) error {
	if f.accept != nil && f.accept(v.value) {
		return nil
	}
	if f.refused == "" {
		return nil
	}
	return fmt.Errorf("--%s=%s: flanneld's flag; weft does not do it: %s", f.name, v.value, f.refused)
}
