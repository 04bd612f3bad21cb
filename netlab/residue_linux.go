package netlab

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// Leftover is a device or route in a host or pod namespace that the topology
// did not make: what a mode (or a daemon on SIGTERM) failed to remove.
type Leftover struct {
	NS   string
	Kind string // "link" or "route"
	Spec string // the link's name, or the route as `ip route` prints it
}

func (l Leftover) String() string { return fmt.Sprintf("%s: %s %s", l.NS, l.Kind, l.Spec) }

// Residue lists what the host and pod namespaces hold beyond the bare
// topology. Run between modes, it guarantees that no mode measures with
// another's routes still in place, and in daemon tests it checks cleanup.
func (t *Topology) Residue(ctx context.Context) ([]Leftover, error) {
	var out []Leftover
	for _, h := range t.Hosts {
		for _, ns := range []struct {
			name  string
			links []string
		}{
			{h.NS, []string{"lo", h.UnderlayDev, h.HostPodDev}},
			{h.PodNS, []string{"lo", h.PodDev}},
		} {
			links, err := linkNames(ctx, ns.name)
			if err != nil {
				return nil, err
			}
			for _, l := range links {
				if !slices.Contains(ns.links, l) {
					out = append(out, Leftover{ns.name, "link", l})
				}
			}
			routes, err := stdoutOf(ctx, "ip", "-n", ns.name, "-4", "route", "show")
			if err != nil {
				return nil, err
			}
			for _, r := range strings.Split(string(routes), "\n") {
				r = strings.TrimSpace(r) // iproute2 ends some lines with a space
				if r == "" || strings.Contains(r, "proto kernel") ||
					(ns.name == h.PodNS && r == "default via "+h.PodGateway.String()+" dev "+h.PodDev) {
					continue
				}
				out = append(out, Leftover{ns.name, "route", r})
			}
		}
	}
	return out, nil
}

// Scrub removes leftovers, links first since their routes go with them.
func (t *Topology) Scrub(ctx context.Context, left []Leftover) error {
	var errs []string
	for _, kind := range []string{"link", "route"} {
		for _, l := range left {
			if l.Kind != kind {
				continue
			}
			var err error
			if kind == "link" {
				_, err = runCmd(ctx, "ip", "-n", l.NS, "link", "del", l.Spec)
			} else {
				_, err = runCmd(ctx, "ip", append([]string{"-n", l.NS, "route", "del"}, strings.Fields(l.Spec)...)...)
			}
			if err != nil && !strings.Contains(err.Error(), "No such") && !strings.Contains(err.Error(), "Cannot find") {
				errs = append(errs, err.Error())
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("scrub: %s", strings.Join(errs, "; "))
	}
	return nil
}

// linkNames lists the interface names in ns. It reads stdout alone: while
// it prints a veth, ip looks up which named namespace holds the peer, and
// when any namespace on the machine is being added or deleted meanwhile (a
// topology's own Close, another test's) that lookup prints "Error: Peer
// netns reference is invalid." on stderr, which mixed into the listing read
// as a link named "Peer".
func linkNames(ctx context.Context, ns string) ([]string, error) {
	out, err := stdoutOf(ctx, "ip", "-n", ns, "-o", "link", "show")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		// "2: ul0@if2: <BROADCAST,...> mtu 1500 ..."
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name := strings.TrimSuffix(f[1], ":")
		name, _, _ = strings.Cut(name, "@")
		names = append(names, name)
	}
	return names, nil
}
