package main

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/weft-dev/weft/tun"
)

// parseFlagsQuiet is parseFlags that prints no usage on error.
func parseFlagsQuiet(args []string, getenv func(string) string) (*config, error) {
	return parseFlagsTo(args, getenv, io.Discard)
}

func TestParseFlags(t *testing.T) {
	base := []string{"--network", "100.96.0.0/16", "--subnet", "100.96.1.0/24"}
	cases := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string // substring; empty means success
		check   func(*testing.T, *config)
	}{
		{name: "static mode", args: append(base, "--peer", "100.96.2.0/24=192.0.2.2", "--peer", "100.96.3.0/24=192.0.2.3:9000"),
			check: func(t *testing.T, c *config) {
				if len(c.peers) != 2 || c.peers[0].Peer.String() != "192.0.2.2:8285" || c.peers[1].Peer.String() != "192.0.2.3:9000" {
					t.Errorf("peers %v", c.peers)
				}
			}},
		{name: "port sets the peers' default", args: append(base, "--port", "9999", "--peer", "100.96.2.0/24=192.0.2.2"),
			check: func(t *testing.T, c *config) {
				if c.peers[0].Peer.Port() != 9999 {
					t.Errorf("peer port %d", c.peers[0].Peer.Port())
				}
			}},
		{name: "environment", args: nil,
			env: map[string]string{"WEFTD_NETWORK": "100.96.0.0/16", "WEFTD_SUBNET": "100.96.1.0/24", "WEFTD_PEER": "100.96.2.0/24=192.0.2.2,100.96.3.0/24=192.0.2.3", "WEFTD_PUBLIC_IP": "192.0.2.1", "WEFTD_TUN_NAME": "weft0"},
			check: func(t *testing.T, c *config) {
				if len(c.peers) != 2 || c.publicIP.String() != "192.0.2.1" || c.tunName != "weft0" {
					t.Errorf("config %+v", c)
				}
			}},
		{name: "command line beats environment", args: append(base, "--workers", "3"), env: map[string]string{"WEFTD_WORKERS": "7"},
			check: func(t *testing.T, c *config) {
				if c.workers != 3 {
					t.Errorf("workers %d", c.workers)
				}
			}},
		{name: "zero copy on send by default", args: base, check: func(t *testing.T, c *config) {
			if c.zeroCopy != (zeroCopyFlag{send: true}) {
				t.Errorf("zero copy %+v", c.zeroCopy)
			}
			if k, fb := c.tunKind(); k != tun.Offload || !fb {
				t.Errorf("TUN %v, fall back %v; want weft's offload device, falling back", k, fb)
			}
		}},
		{name: "zero copy on both levers", args: append(base, "--zero-copy=on"), check: func(t *testing.T, c *config) {
			if c.zeroCopy != (zeroCopyFlag{send: true, receive: true}) {
				t.Errorf("zero copy %+v", c.zeroCopy)
			}
		}},
		{name: "copying device, offloads required", args: append(base, "--zero-copy=off", "--offload=on"), check: func(t *testing.T, c *config) {
			if k, fb := c.tunKind(); k != tun.CopyingOffload || fb {
				t.Errorf("TUN %v, fall back %v; want wireguard-go's device, no fall back", k, fb)
			}
		}},
		{name: "no offloads", args: append(base, "--offload=off"), check: func(t *testing.T, c *config) {
			if k, _ := c.tunKind(); k != tun.Plain {
				t.Errorf("TUN %v, want plain", k)
			}
		}},
		{name: "zero copy as a boolean", args: append(base, "--zero-copy=false"), check: func(t *testing.T, c *config) {
			if c.zeroCopy.any() {
				t.Errorf("zero copy %+v", c.zeroCopy)
			}
		}},
		{name: "zero copy on send only", args: append(base, "--zero-copy=send"), check: func(t *testing.T, c *config) {
			if c.zeroCopy != (zeroCopyFlag{send: true}) {
				t.Errorf("zero copy %+v", c.zeroCopy)
			}
		}},
		{name: "zero copy on receive only, from the environment", args: base, env: map[string]string{"WEFTD_ZERO_COPY": "receive"},
			check: func(t *testing.T, c *config) {
				if c.zeroCopy != (zeroCopyFlag{receive: true}) {
					t.Errorf("zero copy %+v", c.zeroCopy)
				}
			}},
		{name: "bad zero copy", args: append(base, "--zero-copy=sometimes"), wantErr: "want on, off, send or receive"},
		{name: "bad environment value", args: base, env: map[string]string{"WEFTD_WORKERS": "many"}, wantErr: `WEFTD_WORKERS="many"`},
		{name: "missing network", args: []string{"--subnet", "100.96.1.0/24"}, wantErr: "--network: required"},
		{name: "network without subnet or embedded etcd", args: []string{"--network", "100.96.0.0/16"}, wantErr: "--network: only with --subnet"},
		{name: "cluster mode defaults", args: nil, check: func(t *testing.T, c *config) {
			if c.static() || len(c.etcd.Endpoints) != 1 || c.etcd.Endpoints[0] != "http://127.0.0.1:2379" ||
				c.etcd.Prefix != "/coreos.com/network" || c.subnetFile != "/run/flannel/subnet.env" || c.etcd.RenewMargin.Minutes() != 60 {
				t.Errorf("config %+v", c)
			}
		}},
		{name: "cluster mode endpoints", args: []string{"--etcd-endpoints", "http://192.0.2.1:2379, https://192.0.2.2:2379"}, check: func(t *testing.T, c *config) {
			if len(c.etcd.Endpoints) != 2 || c.etcd.Endpoints[1] != "https://192.0.2.2:2379" {
				t.Errorf("endpoints %q", c.etcd.Endpoints)
			}
		}},
		{name: "embedded etcd", args: []string{"--embedded-etcd", "/var/lib/weft/etcd"}, check: func(t *testing.T, c *config) {
			if c.network.String() != "100.96.0.0/16" || c.etcd.Endpoints != nil || c.embeddedEtcdListen != "http://127.0.0.1:2379" {
				t.Errorf("config %+v", c)
			}
		}},
		{name: "embedded etcd network", args: []string{"--embedded-etcd", "d", "--network", "100.64.0.0/12"}, check: func(t *testing.T, c *config) {
			if c.network.String() != "100.64.0.0/12" {
				t.Errorf("network %v", c.network)
			}
		}},
		{name: "bad endpoint", args: []string{"--etcd-endpoints", "192.0.2.1"}, wantErr: `--etcd-endpoints "192.0.2.1"`},
		{name: "bad endpoint scheme", args: []string{"--etcd-endpoints", "unix:///run/etcd.sock"}, wantErr: `not an http:// or https:// URL`},
		{name: "endpoints without a scheme, as etcd's client takes them", args: []string{"--etcd-endpoints", "192.0.2.1:2379,etcd.example:2379"},
			check: func(t *testing.T, c *config) {
				if len(c.etcd.Endpoints) != 2 || c.etcd.Endpoints[0] != "192.0.2.1:2379" || c.etcd.Endpoints[1] != "etcd.example:2379" {
					t.Errorf("endpoints %q", c.etcd.Endpoints)
				}
			}},
		{name: "cert without key", args: []string{"--etcd-certfile", "c.pem"}, wantErr: "--etcd-certfile and --etcd-keyfile go together"},
		{name: "renew margin", args: []string{"--subnet-lease-renew-margin", "0"}, wantErr: "--subnet-lease-renew-margin 0"},
		{name: "renew margin past the TTL", args: []string{"--subnet-lease-renew-margin", "1440"}, wantErr: "out of range 1-1439"},
		{name: "bad embedded listen", args: []string{"--embedded-etcd", "d", "--embedded-etcd-listen", "127.0.0.1:2379"}, wantErr: "--embedded-etcd-listen"},
		{name: "peer in cluster mode", args: []string{"--peer", "100.96.2.0/24=192.0.2.2"}, wantErr: "--peer: only in static mode"},
		{name: "etcd flag in static mode", args: append(base, "--etcd-endpoints", "http://192.0.2.1:2379"), wantErr: "--etcd-endpoints: static mode (--subnet) uses no etcd"},
		{name: "bad network", args: []string{"--network", "100.96.0.0/33", "--subnet", "100.96.1.0/24"}, wantErr: `--network "100.96.0.0/33"`},
		{name: "ipv6 network", args: []string{"--network", "fd00::/64", "--subnet", "100.96.1.0/24"}, wantErr: `--network "fd00::/64": not an IPv4 CIDR`},
		{name: "host bits", args: []string{"--network", "100.96.0.0/16", "--subnet", "100.96.1.1/24"}, wantErr: "did you mean 100.96.1.0/24"},
		{name: "subnet outside network", args: []string{"--network", "100.96.0.0/16", "--subnet", "100.97.1.0/24"}, wantErr: "not inside --network"},
		{name: "peer without =", args: append(base, "--peer", "100.96.2.0/24"), wantErr: `--peer "100.96.2.0/24": want SUBNET=IP`},
		{name: "peer bad address", args: append(base, "--peer", "100.96.2.0/24=host2"), wantErr: `"host2" is not an IP`},
		{name: "peer ipv6", args: append(base, "--peer", "100.96.2.0/24=2001:db8::1"), wantErr: "not an IPv4 address"},
		{name: "peer overlaps own subnet", args: append(base, "--peer", "100.96.1.0/25=192.0.2.2"), wantErr: "overlaps this host's --subnet"},
		{name: "peer outside network", args: append(base, "--peer", "10.0.0.0/24=192.0.2.2"), wantErr: "not inside --network"},
		{name: "peer twice", args: append(base, "--peer", "100.96.2.0/24=192.0.2.2", "--peer", "100.96.2.0/24=192.0.2.3"), wantErr: "given twice"},
		{name: "public ip", args: append(base, "--public-ip", "192.0.2"), wantErr: `--public-ip "192.0.2"`},
		{name: "port zero", args: append(base, "--port", "0"), wantErr: "--port 0"},
		{name: "port high", args: append(base, "--port", "65536"), wantErr: "--port 65536"},
		{name: "workers zero", args: append(base, "--workers", "0"), wantErr: "--workers 0"},
		{name: "batch zero", args: append(base, "--batch", "0"), wantErr: "--batch 0"},
		{name: "batch one", args: append(base, "--batch", "1"), check: func(t *testing.T, c *config) {
			if c.batch != 1 {
				t.Errorf("batch %d", c.batch)
			}
		}},
		{name: "busy poll", args: append(base, "--busy-poll", "50us"), check: func(t *testing.T, c *config) {
			if c.busyPoll != 50*time.Microsecond {
				t.Errorf("busy poll %v", c.busyPoll)
			}
		}},
		{name: "busy poll negative", args: append(base, "--busy-poll", "-1us"), wantErr: "--busy-poll -1µs"},
		{name: "busy poll too long", args: append(base, "--busy-poll", "1s"), wantErr: "--busy-poll 1s: out of range 0-10ms"},
		{name: "busy poll not a duration", args: append(base, "--busy-poll", "50"), wantErr: "busy-poll"},
		{name: "offload bad", args: append(base, "--offload", "maybe"), wantErr: `--offload "maybe"`},
		{name: "tun name too long", args: append(base, "--tun-name", "abcdefghijklmnop"), wantErr: "--tun-name"},
		{name: "log level", args: append(base, "--log-level", "loud"), wantErr: `--log-level "loud"`},
		{name: "ip-masq", args: append(base, "--ip-masq"), check: func(t *testing.T, c *config) {
			if !c.ipMasq {
				t.Error("ipMasq false")
			}
		}},
		{name: "ip-masq in cluster mode, from the environment", env: map[string]string{"WEFTD_IP_MASQ": "true"}, check: func(t *testing.T, c *config) {
			if !c.ipMasq || c.static() {
				t.Errorf("ipMasq %v, static %v", c.ipMasq, c.static())
			}
		}},
		{name: "ip-masq false as flanneld units write it", args: append(base, "--ip-masq=false"), check: func(t *testing.T, c *config) {
			if c.ipMasq {
				t.Error("ipMasq true")
			}
		}},
		{name: "ip-masq off by default", args: base, check: func(t *testing.T, c *config) {
			if c.ipMasq {
				t.Error("ipMasq true")
			}
		}},
		{name: "ip-masq bad value", env: map[string]string{"WEFTD_IP_MASQ": "yes please"}, wantErr: `WEFTD_IP_MASQ="yes please"`},
		{name: "unknown flag", args: append(base, "--frobnicate"), wantErr: "frobnicate"},
		{name: "stray argument", args: append(base, "extra"), wantErr: `unexpected argument "extra"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			getenv := func(k string) string { return c.env[k] }
			cfg, err := parseFlagsQuiet(c.args, getenv)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.check != nil {
				c.check(t, cfg)
			}
		})
	}
}

func TestVersionFlag(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"-version", "--subnet", "bad"}} {
		c, err := parseFlags(args, func(string) string { return "" })
		if err != nil || !c.version {
			t.Errorf("%q: version=%v err=%v, want the version and no error", args, c != nil && c.version, err)
		}
	}
}
