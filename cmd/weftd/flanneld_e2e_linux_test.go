package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/weft-dev/weft/netlab"
)

// TestForwardPolicyDrop: hosts whose FORWARD policy is DROP (Docker's
// default, set here with Debian's iptables, which is iptables-nft) still
// forward pod traffic through weft with --iptables-forward-rules, its
// default, and, as the control, do not without it. The rules are put back
// after a flush of the chain, and weftd --cleanup removes them.
func TestForwardPolicyDrop(t *testing.T) {
	needRoot(t)
	if err := netlab.CheckTools("iptables"); err != nil {
		t.Fatal(err) // make deps installs Debian's iptables
	}
	topo := newTopology(t, "fw", 2)
	h1, h2 := topo.Hosts[0], topo.Hosts[1]
	iptables := func(ns string, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := topo.Run(ctx, ns, append([]string{"iptables"}, args...)...)
		if err != nil {
			t.Fatalf("iptables %q in %s: %v", args, ns, err)
		}
		return string(out)
	}
	for _, h := range topo.Hosts {
		iptables(h.NS, "-P", "FORWARD", "DROP")
	}
	t.Logf("FORWARD chain of %s:\n%s", h1.NS, iptables(h1.NS, "-S", "FORWARD"))
	static := func(me, peer netlab.Host, extra ...string) []string {
		return append([]string{
			"--network", topo.Network.String(),
			"--subnet", me.Subnet.String(),
			"--peer", peer.Subnet.String() + "=" + peer.UnderlayIP.String(),
			"--public-ip", me.UnderlayIP.String(),
			"--iptables-resync", "1",
		}, extra...)
	}
	start := func(extra ...string) (*daemon, *daemon) {
		t.Helper()
		d1 := startWeftd(t, topo, h1.NS, 19465, static(h1, h2, extra...)...)
		d2 := startWeftd(t, topo, h2.NS, 19465, static(h2, h1, extra...)...)
		for _, d := range []*daemon{d1, d2} {
			eventually(t, 10*time.Second, "weftd ready", func() error { return d.get("/readyz") })
		}
		return d1, d2
	}
	stop := func(ds ...*daemon) {
		t.Helper()
		for _, d := range ds {
			if err := d.stop(10 * time.Second); err != nil {
				t.Fatalf("weftd exit: %v", err)
			}
		}
	}
	weftRule := "-A FORWARD -s " + topo.Network.String()

	t.Run("control: without the rules, the DROP policy cuts the pods off", func(t *testing.T) {
		d1, d2 := start("--iptables-forward-rules=false")
		defer stop(d1, d2)
		out, err := ping(topo, h1.PodNS, h2.PodIP.String(), 2)
		t.Logf("pod %v -> pod %v with FORWARD policy DROP and no rules: %v\n%s", h1.PodIP, h2.PodIP, err, lastLines(out, 3))
		if err == nil {
			t.Fatal("the pods reached each other across a FORWARD policy of DROP without accept rules: the test shows nothing")
		}
	})

	t.Run("with the rules, pod traffic crosses", func(t *testing.T) {
		d1, d2 := start()
		defer stop(d1, d2)
		eventually(t, 10*time.Second, "pod 1 reaches pod 2", func() error {
			_, err := ping(topo, h1.PodNS, h2.PodIP.String(), 1)
			return err
		})
		chain := iptables(h1.NS, "-S", "FORWARD")
		t.Logf("FORWARD chain of %s under weftd, as iptables-nft lists it:\n%s", h1.NS, chain)
		if !strings.Contains(chain, weftRule) || !strings.Contains(chain, "-A FORWARD -d "+topo.Network.String()) {
			t.Errorf("iptables does not list weft's two accept rules")
		}

		iptables(h1.NS, "-F", "FORWARD") // a firewall reload
		eventually(t, 10*time.Second, "the rules put back and pod 1 reaching pod 2", func() error {
			if !strings.Contains(iptables(h1.NS, "-S", "FORWARD"), weftRule) {
				return fmt.Errorf("rules not back yet")
			}
			_, err := ping(topo, h1.PodNS, h2.PodIP.String(), 1)
			return err
		})
	})

	t.Run("they outlive weftd; --iptables-forward-rules=false or --cleanup removes them", func(t *testing.T) {
		if chain := iptables(h1.NS, "-S", "FORWARD"); !strings.Contains(chain, weftRule) {
			t.Fatalf("weft's rules went with weftd:\n%s", chain)
		}
		d := startWeftd(t, topo, h1.NS, 19465, static(h1, h2, "--iptables-forward-rules=false")...)
		eventually(t, 10*time.Second, "weftd ready", func() error { return d.get("/readyz") })
		if chain := iptables(h1.NS, "-S", "FORWARD"); strings.Contains(chain, weftRule) {
			t.Errorf("weft's rules still there under a weftd with --iptables-forward-rules=false:\n%s", chain)
		}
		stop(d)
		d = startWeftd(t, topo, h1.NS, 19465, static(h1, h2)...)
		eventually(t, 10*time.Second, "weftd ready", func() error { return d.get("/readyz") })
		stop(d)
		if chain := iptables(h1.NS, "-S", "FORWARD"); !strings.Contains(chain, weftRule) {
			t.Fatalf("weft's rules not back after a weftd with them:\n%s", chain)
		}
		out, err := weftdCleanup(t, topo, h1.NS)
		t.Logf("weftd --cleanup in %s: %s", h1.NS, out)
		if err != nil {
			t.Fatal(err)
		}
		if chain := iptables(h1.NS, "-S", "FORWARD"); strings.Contains(chain, weftRule) {
			t.Errorf("weft's rules still there after weftd --cleanup:\n%s", chain)
		}
		// The policy is iptables', not weft's: it stays.
		if chain := iptables(h1.NS, "-S", "FORWARD"); !strings.Contains(chain, "-P FORWARD DROP") {
			t.Errorf("the FORWARD policy changed:\n%s", chain)
		}
	})

	t.Run("a FORWARD chain that appears after weftd started (Docker starting later) gets the rules", func(t *testing.T) {
		for _, h := range topo.Hosts {
			masqNftConn(t, h.NS, func(c *nftables.Conn) error {
				c.DelTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "filter"})
				return c.Flush()
			})
		}
		d1, d2 := start()
		defer stop(d1, d2)
		if _, err := ping(topo, h1.PodNS, h2.PodIP.String(), 1); err != nil {
			t.Fatalf("no FORWARD chain yet, and still the pods do not reach each other: %v", err)
		}
		for _, h := range topo.Hosts {
			iptables(h.NS, "-P", "FORWARD", "DROP")
		}
		eventually(t, 10*time.Second, "the rules in the new chain and pod 1 reaching pod 2", func() error {
			if !strings.Contains(iptables(h1.NS, "-S", "FORWARD"), weftRule) {
				return fmt.Errorf("no rules yet")
			}
			_, err := ping(topo, h1.PodNS, h2.PodIP.String(), 1)
			return err
		})
		t.Logf("FORWARD chain of %s, made after weftd started:\n%s", h1.NS, iptables(h1.NS, "-S", "FORWARD"))
	})
}

// TestHealthzPort: with flanneld's --healthz-port, weftd answers /healthz
// and /readyz there, on --healthz-ip's default 0.0.0.0, and nothing else.
func TestHealthzPort(t *testing.T) {
	needRoot(t)
	topo := newTopology(t, "hz", 2)
	h1, h2 := topo.Hosts[0], topo.Hosts[1]
	d := startWeftd(t, topo, h1.NS, 19465,
		"--network", topo.Network.String(), "--subnet", h1.Subnet.String(),
		"--peer", h2.Subnet.String()+"="+h2.UnderlayIP.String(), "--public-ip", h1.UnderlayIP.String(),
		"--healthz-port", "8081")
	healthz := netip.AddrPortFrom(h1.UnderlayIP, 8081) // 0.0.0.0 listens on every address
	get := func(path string) (int, string, error) {
		resp, err := d.client().Get("http://" + healthz.String() + path)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b)), nil
	}
	eventually(t, 10*time.Second, "/readyz on the healthz port", func() error {
		code, body, err := get("/readyz")
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("%d %s", code, body)
		}
		return err
	})
	for _, c := range []struct {
		path string
		code int
	}{{"/healthz", http.StatusOK}, {"/readyz", http.StatusOK}, {"/metrics", http.StatusNotFound}} {
		code, body, err := get(c.path)
		t.Logf("GET http://%v%s: %d %q %v", healthz, c.path, code, body, err)
		if err != nil || code != c.code {
			t.Errorf("GET %s: %d, %v; want %d", c.path, code, err, c.code)
		}
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
