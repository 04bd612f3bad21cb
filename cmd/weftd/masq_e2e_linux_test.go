package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netns"

	"github.com/weft-dev/weft/masq"
	"github.com/weft-dev/weft/netlab"
)

// TestMasqStatic is --ip-masq end to end: host 1 runs weftd with --ip-masq,
// host 2 without. A pod's traffic to the underlay leaves with host 1's
// address, pod-to-pod traffic keeps the pod's, the rules come back after
// someone deletes them, and they outlive weftd, as flanneld's do: only a
// weftd started without --ip-masq, or weftd --cleanup, takes them away.
func TestMasqStatic(t *testing.T) {
	needRoot(t)
	topo := newTopology(t, "mq", 2)
	h1, h2 := topo.Hosts[0], topo.Hosts[1]
	static := func(me, peer netlab.Host) []string {
		return []string{
			"--network", topo.Network.String(),
			"--subnet", me.Subnet.String(),
			"--peer", peer.Subnet.String() + "=" + peer.UnderlayIP.String(),
			"--public-ip", me.UnderlayIP.String(),
		}
	}
	const resync = 2 * time.Second
	masqArgs := append(static(h1, h2), "--ip-masq", "--iptables-resync", "2")
	d1 := startWeftd(t, topo, h1.NS, 19465, masqArgs...)
	startWeftd(t, topo, h2.NS, 19465, static(h2, h1)...)
	eventually(t, 10*time.Second, "pod 1 reaches pod 2", func() error {
		_, err := ping(topo, h1.PodNS, h2.PodIP.String(), 1)
		return err
	})
	masqVerify(t, h1.NS, topo.Network, h1.Subnet)
	t.Logf("table ip %s in %s holds %d rules:", masq.TableName, h1.NS, len(masqRules(t, topo.Network, h1.Subnet)))
	for i, r := range masqRules(t, topo.Network, h1.Subnet) {
		t.Logf("  %d: %s", i+1, r)
	}

	t.Run("pod to an underlay address leaves with the host's address", func(t *testing.T) {
		// The pod's default route points at its host, which forwards
		// out of the underlay: no route to add.
		seen := masqPeerSeen(t, h2.NS, netip.AddrPortFrom(h2.UnderlayIP, 7101), h1.PodNS, netip.Addr{})
		t.Logf("pod %v -> %v:7101 (underlay, outside %v): the listener on host 2 saw %v", h1.PodIP, h2.UnderlayIP, topo.Network, seen)
		if seen != h1.UnderlayIP {
			t.Errorf("source seen %v, want host 1's underlay address %v", seen, h1.UnderlayIP)
		}
	})

	t.Run("pod to pod keeps the pod's address", func(t *testing.T) {
		seen := masqPeerSeen(t, h2.PodNS, netip.AddrPortFrom(h2.PodIP, 7102), h1.PodNS, netip.Addr{})
		t.Logf("pod %v -> pod %v:7102 over the overlay: pod 2 saw %v", h1.PodIP, h2.PodIP, seen)
		if seen != h1.PodIP {
			t.Errorf("source seen %v, want pod 1's address %v", seen, h1.PodIP)
		}
	})

	t.Run("host to a remote pod leaves with the TUN device's address", func(t *testing.T) {
		// Bound to the underlay address, the packet would reach host 2
		// with a source outside host 1's subnet and be dropped as
		// spoofed; flannel's fourth rule makes it the TUN's address.
		seen := masqPeerSeen(t, h2.PodNS, netip.AddrPortFrom(h2.PodIP, 7103), h1.NS, h1.UnderlayIP)
		t.Logf("host 1 from %v -> pod %v:7103: pod 2 saw %v", h1.UnderlayIP, h2.PodIP, seen)
		if seen != h1.Subnet.Addr() {
			t.Errorf("source seen %v, want flannel0's address %v", seen, h1.Subnet.Addr())
		}
	})

	t.Run("what kube-proxy marked is left to kube-proxy", func(t *testing.T) {
		// kube-proxy marks what it will masquerade itself with bit
		// 0x4000; here a table of the test's marks every packet.
		marker := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: "kubeproxytest"}
		masqNftConn(t, h1.NS, func(c *nftables.Conn) error {
			c.AddTable(marker)
			ch := c.AddChain(&nftables.Chain{Name: "mark", Table: marker, Type: nftables.ChainTypeFilter,
				Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityMangle})
			c.AddRule(&nftables.Rule{Table: marker, Chain: ch, Exprs: []expr.Any{
				&expr.Immediate{Register: 1, Data: binary.NativeEndian.AppendUint32(nil, masq.KubeProxyMark)},
				&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
			}})
			return c.Flush()
		})
		defer masqNftConn(t, h1.NS, func(c *nftables.Conn) error { c.DelTable(marker); return c.Flush() })
		// Unmasqueraded, the pod's address reaches host 2. Its answer
		// must not go over the overlay (host 1's weftd would drop it
		// as spoofed: host 2's underlay address is outside host 2's
		// subnet): a route sends it straight back over the underlay.
		route := []string{"route", "add", h1.Subnet.String(), "via", h1.UnderlayIP.String()}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if out, err := topo.Run(ctx, h2.NS, append([]string{"ip"}, route...)...); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		defer func() {
			route[1] = "del"
			if out, err := topo.Run(ctx, h2.NS, append([]string{"ip"}, route...)...); err != nil {
				t.Errorf("%v: %s", err, out)
			}
		}()
		seen := masqPeerSeen(t, h2.NS, netip.AddrPortFrom(h2.UnderlayIP, 7106), h1.PodNS, netip.Addr{})
		t.Logf("pod %v -> %v:7106 with mark 0x4000: host 2 saw %v", h1.PodIP, h2.UnderlayIP, seen)
		if seen != h1.PodIP {
			t.Errorf("source seen %v, want the pod's %v: weft masqueraded what kube-proxy marked", seen, h1.PodIP)
		}
	})

	t.Run("rules deleted from outside come back within the check interval", func(t *testing.T) {
		masqNftConn(t, h1.NS, func(c *nftables.Conn) error {
			c.DelTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: masq.TableName})
			return c.Flush()
		})
		deleted := time.Now()
		eventually(t, resync+5*time.Second, "table reinstalled and the repair logged", func() error {
			log, _ := os.ReadFile(d1.log)
			if !strings.Contains(string(log), "reinstalled them") {
				return fmt.Errorf("no repair logged yet")
			}
			return nil
		})
		masqVerify(t, h1.NS, topo.Network, h1.Subnet)
		t.Logf("table deleted with the library; weftd reinstalled it %v later", time.Since(deleted).Round(100*time.Millisecond))
		seen := masqPeerSeen(t, h2.NS, netip.AddrPortFrom(h2.UnderlayIP, 7104), h1.PodNS, netip.Addr{})
		if seen != h1.UnderlayIP {
			t.Errorf("after the repair, source seen %v, want %v", seen, h1.UnderlayIP)
		}
	})

	t.Run("the rules outlive weftd: pods stay masqueraded while it is down", func(t *testing.T) {
		if err := d1.stop(10 * time.Second); err != nil {
			t.Fatalf("weftd exit: %v", err)
		}
		masqVerify(t, h1.NS, topo.Network, h1.Subnet)
		seen := masqPeerSeen(t, h2.NS, netip.AddrPortFrom(h2.UnderlayIP, 7105), h1.PodNS, netip.Addr{})
		t.Logf("weftd stopped; pod %v -> %v:7105: host 2 saw %v", h1.PodIP, h2.UnderlayIP, seen)
		if seen != h1.UnderlayIP {
			t.Errorf("with weftd stopped, source seen %v, want %v: pods egress unmasqueraded", seen, h1.UnderlayIP)
		}
	})

	t.Run("a restart with --ip-masq-random-fully-disable replaces them with plain masquerading", func(t *testing.T) {
		d := startWeftd(t, topo, h1.NS, 19465, append(masqArgs, "--ip-masq-random-fully-disable")...)
		eventually(t, 10*time.Second, "weftd ready", func() error { return d.get("/readyz") })
		masqVerify(t, h1.NS, topo.Network, h1.Subnet, masq.PlainMasquerade())
		if err := d.stop(10 * time.Second); err != nil {
			t.Fatalf("weftd exit: %v", err)
		}
		masqVerify(t, h1.NS, topo.Network, h1.Subnet, masq.PlainMasquerade())
	})

	t.Run("a weftd without --ip-masq removes them", func(t *testing.T) {
		d := startWeftd(t, topo, h1.NS, 19465, static(h1, h2)...)
		eventually(t, 10*time.Second, "weftd ready", func() error { return d.get("/readyz") })
		names := masqTables(t, h1.NS)
		t.Logf("nftables tables in %s under a weftd without --ip-masq: %q", h1.NS, names)
		if slices.Contains(names, masq.TableName) {
			t.Errorf("table ip %s still there", masq.TableName)
		}
		if err := d.stop(10 * time.Second); err != nil {
			t.Fatalf("weftd exit: %v", err)
		}
	})

	t.Run("weftd --cleanup removes them", func(t *testing.T) {
		d := startWeftd(t, topo, h1.NS, 19465, masqArgs...)
		eventually(t, 10*time.Second, "weftd ready", func() error { return d.get("/readyz") })
		if err := d.stop(10 * time.Second); err != nil {
			t.Fatalf("weftd exit: %v", err)
		}
		masqVerify(t, h1.NS, topo.Network, h1.Subnet)
		out, err := weftdCleanup(t, topo, h1.NS)
		t.Logf("weftd --cleanup in %s: %s", h1.NS, out)
		if err != nil {
			t.Fatalf("weftd --cleanup: %v", err)
		}
		if names := masqTables(t, h1.NS); slices.Contains(names, masq.TableName) {
			t.Errorf("table ip %s still there after weftd --cleanup: %q", masq.TableName, names)
		}
	})
}

// weftdCleanup runs weftd --cleanup in ns and returns what it printed.
func weftdCleanup(t *testing.T, topo *netlab.Topology, ns string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := topo.Command(ctx, ns, buildWeftd(t), "--cleanup").CombinedOutput()
	return string(out), err
}

// TestMasqClusterSubnetFile: in cluster mode, --ip-masq installs the rules
// for the leased subnet and subnet.env says FLANNEL_IPMASQ=true, as
// flanneld writes it for the CNI plugin; the rules stay after weftd stops.
func TestMasqClusterSubnetFile(t *testing.T) {
	needRoot(t)
	topo := newTopology(t, "mc", 2)
	h1 := topo.Hosts[0]
	file := seedSubnetFile(t, h1)
	d := startWeftd(t, topo, h1.NS, 19465, append(clusterArgs(t, topo, 0, file), "--ip-masq")...)
	var env string
	eventually(t, 20*time.Second, "subnet.env rewritten by weftd", func() error {
		b, err := os.ReadFile(file)
		env = string(b)
		if err != nil || !strings.Contains(env, "FLANNEL_IPMASQ=true") {
			return fmt.Errorf("%q, %v", env, err)
		}
		return nil
	})
	t.Logf("subnet.env:\n%s", env)
	masqVerify(t, h1.NS, topo.Network, h1.Subnet)
	if err := d.stop(10 * time.Second); err != nil {
		t.Fatalf("weftd exit: %v", err)
	}
	masqVerify(t, h1.NS, topo.Network, h1.Subnet)
}

func masqRules(t *testing.T, network, subnet netip.Prefix) []masq.Rule {
	t.Helper()
	rules, err := masq.Rules(network, subnet, true)
	if err != nil {
		t.Fatal(err)
	}
	return rules
}

// masqNftConn runs fn with an nftables connection into the named namespace.
func masqNftConn(t *testing.T, ns string, fn func(*nftables.Conn) error) {
	t.Helper()
	h, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(h)))
	if err == nil {
		err = fn(c)
	}
	if err != nil {
		t.Fatalf("nftables in %s: %v", ns, err)
	}
}

// masqVerify fails the test unless weft's table in ns is exactly as weftd
// installs it for network and subnet.
func masqVerify(t *testing.T, ns string, network, subnet netip.Prefix, opts ...masq.Option) {
	t.Helper()
	h, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	tbl, err := masq.New(network, subnet, append(opts, masq.InNetNS(int(h)))...)
	if err != nil {
		t.Fatal(err)
	}
	fault, err := tbl.Verify()
	if err != nil || fault != "" {
		t.Fatalf("weft's nftables table in %s: %q, %v; want it exactly as installed", ns, fault, err)
	}
}

// masqTables lists the names of the ip tables in ns.
func masqTables(t *testing.T, ns string) []string {
	t.Helper()
	names := []string{}
	masqNftConn(t, ns, func(c *nftables.Conn) error {
		tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
		for _, x := range tables {
			names = append(names, x.Name)
		}
		return err
	})
	return names
}

// masqPeerSeen listens on addr (TCP) in listenNS, connects to it from
// fromNS (from local, if valid) and returns the source address the
// listener saw: what the far end knows of the sender after any NAT.
func masqPeerSeen(t *testing.T, listenNS string, addr netip.AddrPort, fromNS string, local netip.Addr) netip.Addr {
	t.Helper()
	var ln *net.TCPListener
	if err := inNS(listenNS, func() (err error) {
		ln, err = net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(addr))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ln.SetDeadline(time.Now().Add(10 * time.Second))
	type accepted struct {
		from netip.Addr
		err  error
	}
	got := make(chan accepted, 1)
	go func() {
		c, err := ln.AcceptTCP()
		if err != nil {
			got <- accepted{err: err}
			return
		}
		from := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
		c.Close()
		got <- accepted{from: from}
	}()
	d := net.Dialer{Timeout: 5 * time.Second}
	if local.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: local.AsSlice()}
	}
	var c net.Conn
	if err := inNS(fromNS, func() (err error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err = d.DialContext(ctx, "tcp4", addr.String())
		return err
	}); err != nil {
		t.Fatalf("connect from %s to %v: %v", fromNS, addr, err)
	}
	c.Close()
	a := <-got
	if a.err != nil {
		t.Fatalf("accept on %v in %s: %v", addr, listenNS, a.err)
	}
	return a.from
}
