package main

import (
	"flag"
	"slices"
	"strings"
	"testing"
	"time"
)

// flanneldFlagSet is every flag flanneld v0.28.9 takes, as it logged them at
// start (testdata/README.md) and klog adds them, with a value it would
// accept. The test holds weftd to this list: each is implemented (accepted,
// with the meaning checked below) or refused with a message naming the flag
// and saying what to do instead.
var flanneldFlagSet = []struct {
	name, value string
	refused     bool
}{
	{"etcd-endpoints", "http://192.0.2.1:2379", false},
	{"etcd-prefix", "/coreos.com/network", false},
	{"etcd-keyfile", "k.pem", false},
	{"etcd-certfile", "c.pem", false},
	{"etcd-cafile", "ca.pem", false},
	{"etcd-username", "u", false},
	{"etcd-password", "p", false},
	{"version", "true", false},
	{"kube-subnet-mgr", "true", false},
	{"kube-api-url", "https://192.0.2.1:6443", false},
	{"kube-annotation-prefix", "example.com", false},
	{"kubeconfig-file", "/etc/kubeconfig", false},
	{"iface", "ul0", false},
	{"iface-regex", "^ul", false},
	{"iface-can-reach", "192.0.2.2", false},
	{"ip-masq", "true", false},
	{"ip-masq-random-fully-disable", "true", false},
	{"subnet-file", "/run/flannel/subnet.env", false},
	{"public-ip", "192.0.2.1", false},
	{"public-ipv6", "2001:db8::1", true},
	{"subnet-lease-renew-margin", "30", false},
	{"healthz-ip", "127.0.0.1", false},
	{"healthz-port", "8081", false},
	{"iptables-resync", "7", false},
	{"iptables-forward-rules", "false", false},
	{"blackhole-route", "true", true},
	{"net-config-path", "/etc/kube-flannel/net-conf.json", false},
	{"set-node-network-unavailable", "false", false},
	{"v", "2", false},
	{"vmodule", "main=2", true},
	{"log_backtrace_at", "main.go:10", true},
	{"log_dir", "/var/log", true},
	{"log_file", "/var/log/flanneld.log", true},
	{"log_file_max_size", "100", true},
	{"logtostderr", "true", false},
	{"alsologtostderr", "true", false},
	{"stderrthreshold", "2", true},
	{"add_dir_header", "true", true},
	{"skip_headers", "true", true},
	{"skip_log_headers", "true", true},
	{"one_output", "true", true},
	{"legacy_stderr_threshold_behavior", "false", true},
}

// modeArgs is what a flanneld flag needs beside it to be valid.
func modeArgs(name string) []string {
	switch {
	case name == "etcd-keyfile":
		return []string{"--etcd-certfile", "c.pem"}
	case name == "etcd-certfile":
		return []string{"--etcd-keyfile", "k.pem"}
	case strings.HasPrefix(name, "kube") || name == "net-config-path" || name == "set-node-network-unavailable":
		if name == "kube-subnet-mgr" {
			return nil
		}
		return []string{"--kube-subnet-mgr"}
	}
	return nil
}

func TestFlanneldFlags(t *testing.T) {
	// The list here and weftd's own list must agree, so that neither
	// misses a flag.
	var names []string
	for _, f := range flanneldFlagSet {
		names = append(names, f.name)
	}
	for _, f := range flanneldFlags {
		if !slices.Contains(names, f.name) {
			t.Errorf("weftd lists %q as flanneld's, the test does not", f.name)
		}
	}
	for _, f := range flanneldFlagSet {
		i := slices.IndexFunc(flanneldFlags, func(x flanneldFlag) bool { return x.name == f.name })
		if i < 0 {
			t.Errorf("flanneld's --%s: not in weftd's list", f.name)
			continue
		}
		if got := flanneldFlags[i].refused != "" && flanneldFlags[i].accept == nil ||
			flanneldFlags[i].accept != nil && !flanneldFlags[i].accept(f.value); got != f.refused {
			t.Errorf("--%s=%s: refused %v, want %v", f.name, f.value, got, f.refused)
		}
	}
	for _, f := range flanneldFlagSet {
		forms := []string{"--" + f.name + "=" + f.value, "-" + f.name + "=" + f.value, "env " + flanneldEnvPrefix, "env " + envPrefix}
		if f.name == "version" {
			// flanneld and weftd read it from the command line only:
			// both act on it before reading the environment.
			forms = forms[:2]
		}
		for _, form := range forms {
			t.Run(f.name+"/"+form, func(t *testing.T) {
				args := modeArgs(f.name)
				env := map[string]string{}
				switch form {
				case "env " + flanneldEnvPrefix:
					env[envName(flanneldEnvPrefix, f.name)] = f.value
				case "env " + envPrefix:
					env[envName(envPrefix, f.name)] = f.value
				default:
					args = append(args, form)
				}
				_, err := parseFlagsQuiet(args, func(k string) string { return env[k] })
				if !f.refused {
					if err != nil {
						t.Fatalf("%q, env %v: %v; want it accepted", args, env, err)
					}
					return
				}
				if err == nil {
					t.Fatalf("%q, env %v: accepted; want it refused", args, env)
				}
				msg := err.Error()
				if !strings.Contains(msg, "--"+f.name) || !strings.Contains(msg, "weft does not do it") {
					t.Errorf("refusal %q: want it to name --%s and say weft does not do it", msg, f.name)
				}
				t.Logf("refused: %v", err)
			})
		}
	}
}

// TestFlanneldFlagMeaning checks that flanneld's flags weftd implements
// mean what they mean to flanneld, defaults included.
func TestFlanneldFlagMeaning(t *testing.T) {
	kube := []string{"--kube-subnet-mgr"}
	cases := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(*config) bool
	}{
		{"healthz off by default, on 0.0.0.0 when given a port", nil, nil, func(c *config) bool { return c.healthzAddr == "" }},
		{"healthz port", []string{"--healthz-port", "8081"}, nil, func(c *config) bool { return c.healthzAddr == "0.0.0.0:8081" }},
		{"healthz ip and port", []string{"-healthz-ip=127.0.0.1", "-healthz-port=8081"}, nil, func(c *config) bool { return c.healthzAddr == "127.0.0.1:8081" }},
		{"forward rules on by default", nil, nil, func(c *config) bool { return c.forwardRules }},
		{"forward rules off", []string{"--iptables-forward-rules=false"}, nil, func(c *config) bool { return !c.forwardRules }},
		{"resync 5 s by default", nil, nil, func(c *config) bool { return c.firewallResync == 5*time.Second }},
		{"resync", []string{"--iptables-resync", "60"}, nil, func(c *config) bool { return c.firewallResync == time.Minute }},
		{"fully random by default", nil, nil, func(c *config) bool { return c.masqFullyRandom }},
		{"fully random off, flanneld's spelling", []string{"--ip-masq-random-fully-disable"}, nil, func(c *config) bool { return !c.masqFullyRandom }},
		{"fully random off, the other spelling", []string{"--ip-masq-fully-random-disable"}, nil, func(c *config) bool { return !c.masqFullyRandom }},
		{"-v 0 is info", []string{"-v=0"}, nil, func(c *config) bool { return c.logLevel == "info" }},
		{"-v 1 is debug", []string{"-v", "1"}, nil, func(c *config) bool { return c.logLevel == "debug" }},
		{"FLANNELD_V", nil, map[string]string{"FLANNELD_V": "3"}, func(c *config) bool { return c.logLevel == "debug" }},
		{"iface repeated, in order", []string{"--iface", "eth1", "-iface", "192.0.2.1"}, nil, func(c *config) bool {
			return slices.Equal(c.ifaces, []string{"eth1", "192.0.2.1"})
		}},
		{"FLANNELD_IFACE list", nil, map[string]string{"FLANNELD_IFACE": "eth1,eth2"}, func(c *config) bool { return slices.Equal(c.ifaces, []string{"eth1", "eth2"}) }},
		{"iface regexes", []string{"--iface-regex", "^ul[0-9]{1,2}$", "--iface-regex", "192\\.0\\.2\\..*"}, nil, func(c *config) bool {
			return len(c.ifaceRegexes) == 2 && c.ifaceRegexes[0].MatchString("ul12") && c.ifaceRegexes[1].MatchString("192.0.2.9")
		}},
		{"FLANNELD_IFACE_REGEX is one regex, commas and all", nil, map[string]string{"FLANNELD_IFACE_REGEX": "^ul[0-9]{1,2}$"}, func(c *config) bool {
			return len(c.ifaceRegexes) == 1 && c.ifaceRegexes[0].MatchString("ul12")
		}},
		{"iface can reach", []string{"--iface-can-reach", "192.0.2.2"}, nil, func(c *config) bool { return c.ifaceCanReach.String() == "192.0.2.2" }},
		{"kube defaults", kube, nil, func(c *config) bool {
			return c.kubeSubnetMgr && c.kubeAnnotationPrefix == "flannel.alpha.coreos.com" && c.netConfPath == "/etc/kube-flannel/net-conf.json" &&
				c.setNodeNetworkUnavailable && c.kubeconfigFile == "" && c.kubeAPIURL == "" && !c.static()
		}},
		{"kube flags", append(kube, "--kubeconfig-file", "/k", "--kube-api-url", "https://192.0.2.1:6443", "--kube-annotation-prefix", "x.example", "--net-config-path", "/n.json", "--set-node-network-unavailable=false"), nil,
			func(c *config) bool {
				return c.kubeconfigFile == "/k" && c.kubeAPIURL == "https://192.0.2.1:6443" && c.kubeAnnotationPrefix == "x.example" && c.netConfPath == "/n.json" && !c.setNodeNetworkUnavailable
			}},
		{"kube from FLANNELD_ variables", nil, map[string]string{"FLANNELD_KUBE_SUBNET_MGR": "true", "FLANNELD_KUBECONFIG_FILE": "/k"}, func(c *config) bool {
			return c.kubeSubnetMgr && c.kubeconfigFile == "/k"
		}},
		{"WEFTD_ wins over FLANNELD_", nil, map[string]string{"FLANNELD_PUBLIC_IP": "192.0.2.1", "WEFTD_PUBLIC_IP": "192.0.2.2"}, func(c *config) bool {
			return c.publicIP.String() == "192.0.2.2"
		}},
		{"the command line wins over both", []string{"--public-ip", "192.0.2.3"}, map[string]string{"FLANNELD_PUBLIC_IP": "192.0.2.1", "WEFTD_PUBLIC_IP": "192.0.2.2"}, func(c *config) bool {
			return c.publicIP.String() == "192.0.2.3"
		}},
		{"FLANNELD_ is for flanneld's flags only", nil, map[string]string{"FLANNELD_WORKERS": "3"}, func(c *config) bool { return c.workers != 3 }},
		{"cleanup", []string{"--cleanup"}, nil, func(c *config) bool { return c.cleanup }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseFlagsQuiet(tc.args, func(k string) string { return tc.env[k] })
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(c) {
				t.Errorf("%q, env %v: config %+v", tc.args, tc.env, c)
			}
		})
	}
}

func TestFlanneldFlagErrors(t *testing.T) {
	kube := []string{"--kube-subnet-mgr"}
	cases := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
	}{
		{"healthz port out of range", []string{"--healthz-port", "70000"}, nil, "--healthz-port 70000"},
		{"healthz ip", []string{"--healthz-ip", "localhost", "--healthz-port", "8081"}, nil, `--healthz-ip "localhost"`},
		{"resync zero", []string{"--iptables-resync", "0"}, nil, "--iptables-resync 0"},
		{"bad regex", []string{"--iface-regex", "("}, nil, `--iface-regex "("`},
		{"can reach a name", []string{"--iface-can-reach", "gateway"}, nil, `--iface-can-reach "gateway"`},
		{"-v with --log-level", []string{"-v", "2", "--log-level", "warn"}, nil, "give one of them"},
		{"public-ipv6 from FLANNELD_", nil, map[string]string{"FLANNELD_PUBLIC_IPV6": "2001:db8::1"}, "--public-ipv6=2001:db8::1: flanneld's flag; weft does not do it"},
		{"logtostderr=false", []string{"-logtostderr=false"}, nil, "use --log-file"},
		{"alsologtostderr with a log file", []string{"-alsologtostderr", "--log-file", "/tmp/x"}, nil, "--alsologtostderr with --log-file"},
		{"bad FLANNELD_ value", nil, map[string]string{"FLANNELD_IP_MASQ": "maybe"}, `FLANNELD_IP_MASQ="maybe"`},
		{"kube flag without kube", []string{"--kubeconfig-file", "/k"}, nil, "--kubeconfig-file: only with --kube-subnet-mgr"},
		{"kube flag from FLANNELD_ without kube", nil, map[string]string{"FLANNELD_NET_CONFIG_PATH": "/n"}, "--net-config-path: only with --kube-subnet-mgr"},
		{"etcd endpoints in kube mode", append(kube, "--etcd-endpoints", "http://192.0.2.1:2379"), nil, "--etcd-endpoints: --kube-subnet-mgr"},
		{"etcd prefix in kube mode, from FLANNELD_", kube, map[string]string{"FLANNELD_ETCD_PREFIX": "/x"}, "--etcd-prefix: --kube-subnet-mgr"},
		{"renew margin in kube mode", append(kube, "--subnet-lease-renew-margin", "30"), nil, "--subnet-lease-renew-margin: --kube-subnet-mgr"},
		{"static subnet in kube mode", append(kube, "--subnet", "100.96.1.0/24"), nil, "--subnet: --kube-subnet-mgr"},
		{"embedded etcd in kube mode", append(kube, "--embedded-etcd", "d"), nil, "--embedded-etcd: --kube-subnet-mgr"},
		{"bad kube api url", append(kube, "--kube-api-url", "192.0.2.1:6443"), nil, `--kube-api-url "192.0.2.1:6443"`},
		{"etcd flag from the environment in static mode", []string{"--network", "100.96.0.0/16", "--subnet", "100.96.1.0/24"}, map[string]string{"FLANNELD_ETCD_ENDPOINTS": "http://192.0.2.1:2379"}, "--etcd-endpoints: static mode"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseFlagsQuiet(tc.args, func(k string) string { return tc.env[k] })
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestHelpNamesEveryFlanneldFlag: --help shows each of flanneld's flags,
// the refused ones with why.
func TestHelpNamesEveryFlanneldFlag(t *testing.T) {
	var out strings.Builder
	_, err := parseFlagsTo([]string{"--help"}, func(string) string { return "" }, &out)
	if err != flag.ErrHelp {
		t.Fatalf("--help: %v", err)
	}
	for _, f := range flanneldFlagSet {
		if !strings.Contains(out.String(), "-"+f.name+" ") && !strings.Contains(out.String(), "-"+f.name+"\n") {
			t.Errorf("--help does not show -%s", f.name)
		}
	}
}
