package bench

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"

	"github.com/weft-dev/weft/netlab"
)

// The kernel modes: the references every userspace dataplane is compared
// with. They need nothing but iproute2.

var underlayMode = Mode{
	Name:  "underlay",
	About: "host to host on the underlay, no overlay: the physical limit of this machine",
	Setup: func(_ context.Context, env *Env, dp *Dataplane) error {
		a, b := env.Topo.Hosts[0], env.Topo.Hosts[1]
		dp.ClientNS, dp.ServerNS, dp.ServerIP = a.NS, b.NS, b.UnderlayIP
		return nil
	},
}

var hostGWMode = Mode{
	Name:   "host-gw",
	About:  "pod to pod through plain kernel routes via the peer's underlay address",
	PodMTU: 1500,
	Setup: func(ctx context.Context, env *Env, dp *Dataplane) error {
		podEndpoints(env.Topo, dp)
		for _, h := range env.Topo.Hosts {
			for _, p := range env.Topo.Hosts {
				if p.Name == h.Name {
					continue
				}
				if err := ipStep(ctx, dp, h.NS,
					[]string{"route", "add", p.Subnet.String(), "via", p.UnderlayIP.String(), "dev", h.UnderlayDev},
					[]string{"route", "del", p.Subnet.String(), "via", p.UnderlayIP.String(), "dev", h.UnderlayDev},
				); err != nil {
					return err
				}
			}
		}
		return nil
	},
}

// VXLAN as flannel's vxlan backend sets it up: a VTEP per host holding the
// subnet's network address, and for each peer a route via the peer's VTEP
// address, a permanent ARP entry and a static FDB entry, so that no
// multicast or learning is involved.
const (
	vxlanDev  = "vxlan1"
	vxlanVNI  = 1
	vxlanPort = 8472
	vxlanMTU  = 1450 // 1500 - outer IPv4 (20) - UDP (8) - VXLAN (8) - inner Ethernet (14)
)

var vxlanMode = Mode{
	Name:   "vxlan",
	About:  "pod to pod through a kernel VXLAN device (VNI 1, port 8472, static FDB)",
	PodMTU: vxlanMTU,
	Setup: func(ctx context.Context, env *Env, dp *Dataplane) error {
		podEndpoints(env.Topo, dp)
		t := env.Topo
		for i, h := range t.Hosts {
			if err := ipStep(ctx, dp, h.NS,
				[]string{"link", "add", vxlanDev, "address", vtepMAC(i + 1), "mtu", strconv.Itoa(vxlanMTU),
					"type", "vxlan", "id", strconv.Itoa(vxlanVNI), "dstport", strconv.Itoa(vxlanPort),
					"local", h.UnderlayIP.String(), "dev", h.UnderlayDev, "nolearning"},
				[]string{"link", "del", vxlanDev},
			); err != nil {
				return err
			}
			// The device's own routes, neighbours and FDB entries go with it.
			steps := [][]string{
				{"ip", "-n", h.NS, "addr", "add", netip.PrefixFrom(h.Subnet.Addr(), 32).String(), "dev", vxlanDev},
				{"ip", "-n", h.NS, "link", "set", vxlanDev, "up"},
			}
			for j, p := range t.Hosts {
				if p.Name == h.Name {
					continue
				}
				vtep := p.Subnet.Addr().String()
				steps = append(steps,
					[]string{"ip", "-n", h.NS, "neigh", "add", vtep, "lladdr", vtepMAC(j + 1), "dev", vxlanDev, "nud", "permanent"},
					[]string{"bridge", "-n", h.NS, "fdb", "append", vtepMAC(j + 1), "dev", vxlanDev, "dst", p.UnderlayIP.String()},
					[]string{"ip", "-n", h.NS, "route", "add", p.Subnet.String(), "via", vtep, "dev", vxlanDev, "onlink"},
				)
			}
			for _, s := range steps {
				if _, err := runCmd(ctx, s[0], s[1:]...); err != nil {
					return err
				}
			}
		}
		return nil
	},
}

// vtepMAC is host n's VXLAN MAC: locally administered, so it cannot clash
// with a real card's.
func vtepMAC(n int) string { return fmt.Sprintf("02:00:c0:00:02:%02x", n) }

// podEndpoints points the traffic from the first host's pod to the second's.
func podEndpoints(t *netlab.Topology, dp *Dataplane) {
	a, b := t.Hosts[0], t.Hosts[1]
	dp.ClientNS, dp.ServerNS, dp.ServerIP = a.PodNS, b.PodNS, b.PodIP
}

// ipStep runs `ip -n ns do...` and, once it has succeeded, registers
// `ip -n ns undo...` to run at Close.
func ipStep(ctx context.Context, dp *Dataplane, ns string, do, undo []string) error {
	if _, err := runCmd(ctx, "ip", append([]string{"-n", ns}, do...)...); err != nil {
		return err
	}
	dp.onClose(func(ctx context.Context) error {
		_, err := runCmd(ctx, "ip", append([]string{"-n", ns}, undo...)...)
		return err
	})
	return nil
}
