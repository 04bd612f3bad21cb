package kube

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// ErrNoPodCIDR says a Node has no pod CIDR yet: the controller manager
// assigns one soon after the Node registers, so callers wait for it.
var ErrNoPodCIDR = errors.New("no pod CIDR assigned yet")

// ErrUnmanaged says a Node is not (yet) run by flanneld or weftd in kube
// mode: its kube-subnet-manager annotation is not "true".
var ErrUnmanaged = errors.New("not marked kube-subnet-manager=true")

// Peer is another Node's subnet and the address its packets go to.
type Peer struct {
	Node     string
	Subnet   netip.Prefix // the Node's IPv4 podCIDR, masked
	PublicIP netip.Addr   // IPv4, from the public-ip annotation
}

// PodCIDR returns n's IPv4 pod CIDR: the IPv4 one of spec.podCIDRs (one
// per address family, so at most two), or spec.podCIDR when the list is
// empty (an older API server). An unset one is ErrNoPodCIDR; an IPv6-only
// Node, a malformed CIDR, or one with host bits set is an error that names
// the value.
func PodCIDR(n *corev1.Node) (netip.Prefix, error) {
	cidrs := n.Spec.PodCIDRs
	if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
		cidrs = []string{n.Spec.PodCIDR}
	}
	switch {
	case len(cidrs) == 0:
		return netip.Prefix{}, ErrNoPodCIDR
	case len(cidrs) > 2:
		return netip.Prefix{}, fmt.Errorf("podCIDRs %q: more than one per address family", cidrs)
	}
	for _, c := range cidrs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("podCIDR %q: not a CIDR", c)
		}
		if !p.Addr().Is4() {
			continue
		}
		if p != p.Masked() {
			return netip.Prefix{}, fmt.Errorf("podCIDR %q: host bits set", c)
		}
		return p, nil
	}
	return netip.Prefix{}, fmt.Errorf("podCIDRs %q: no IPv4 CIDR (weft forwards IPv4 only)", cidrs)
}

// Peer decodes n as a peer: its pod CIDR and its public-ip annotation. A
// Node without the kube-subnet-manager annotation (a Node with no
// annotations at all included) is ErrUnmanaged; a malformed public-ip,
// an IPv6 one, or a bad pod CIDR is an error naming the Node and the value.
// It never panics, whatever the Node holds.
func (a Annotations) Peer(n *corev1.Node) (Peer, error) {
	if n.Annotations[a.SubnetKubeManaged] != "true" {
		return Peer{}, fmt.Errorf("node %q: %w", n.Name, ErrUnmanaged)
	}
	raw := n.Annotations[a.PublicIP]
	ip, err := netip.ParseAddr(strings.TrimSpace(raw))
	if err != nil || !ip.Is4() || ip.IsUnspecified() {
		return Peer{}, fmt.Errorf("node %q: annotation %s=%q is not an IPv4 address", n.Name, a.PublicIP, raw)
	}
	subnet, err := PodCIDR(n)
	if err != nil {
		return Peer{}, fmt.Errorf("node %q: %w", n.Name, err)
	}
	return Peer{Node: n.Name, Subnet: subnet, PublicIP: ip}, nil
}
