// Package masq keeps weft's masquerade rules, flanneld's --ip-masq: traffic
// from the pod network to anywhere outside it leaves with the host's
// address, traffic within the overlay keeps its pod addresses, and what
// kube-proxy marked for its own masquerading is left to kube-proxy. The
// rules live in an nftables table of weft's own, so that installing,
// checking and removing them never touches another program's rules.
//
// The rules are data first (Rules, Rule): what they mean can be read and
// tested on any system. Putting them into the kernel is Linux only (Table).
package masq

import (
	"fmt"
	"net/netip"
	"strings"
)

// Action is what a rule does with a packet it matches.
type Action uint8

const (
	// Return ends the chain: the packet leaves with its source unchanged.
	Return Action = iota + 1
	// Masquerade rewrites the source to the address of the interface the
	// packet leaves by, with the kernel's usual choice of source port.
	Masquerade
	// MasqueradeFullyRandom masquerades with fully random source ports
	// (iptables' --random-fully), as flannel does unless told not to:
	// it avoids the port clashes of many pods' connections to one
	// destination.
	MasqueradeFullyRandom
)

func (a Action) String() string {
	switch a {
	case Return:
		return "return"
	case Masquerade:
		return "masquerade"
	case MasqueradeFullyRandom:
		return "masquerade fully-random"
	}
	return fmt.Sprintf("action(%d)", uint8(a))
}

// Match tests an address: it matches an address inside Prefix or, with Not,
// outside it. The zero Match matches every address.
type Match struct {
	Prefix netip.Prefix
	Not    bool
}

// Any reports whether m matches every address.
func (m Match) Any() bool { return !m.Prefix.IsValid() }

func in(p netip.Prefix) Match    { return Match{Prefix: p} }
func notIn(p netip.Prefix) Match { return Match{Prefix: p, Not: true} }

// Rule is one rule of the chain: a packet whose firewall mark has every bit
// of Mark set (any packet if Mark is 0), whose source matches Src and whose
// destination matches Dst gets Action; the rules are tried in order and the
// first that matches decides. A packet no rule matches leaves unchanged.
type Rule struct {
	Mark     uint32
	Src, Dst Match
	Action   Action
}

// KubeProxyMark is the firewall mark bit kube-proxy sets on packets it will
// masquerade itself (its --iptables-masquerade-bit, 14, by default):
// flannel leaves them alone so that they are not masqueraded twice.
const KubeProxyMark = 0x4000

// String writes r as nft(8) would list it, e.g.
// "ip saddr 100.96.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random".
func (r Rule) String() string {
	var b strings.Builder
	if r.Mark != 0 {
		fmt.Fprintf(&b, "meta mark & %#08x == %#08x ", r.Mark, r.Mark)
	}
	for _, m := range []struct {
		field string
		Match
	}{{"saddr", r.Src}, {"daddr", r.Dst}} {
		if m.Any() {
			continue
		}
		b.WriteString("ip " + m.field + " ")
		if m.Not {
			b.WriteString("!= ")
		}
		b.WriteString(m.Prefix.String() + " ")
	}
	b.WriteString(r.Action.String())
	return b.String()
}

// multicast is 224.0.0.0/4: pod traffic to it is left alone, as flannel does.
var multicast = netip.MustParsePrefix("224.0.0.0/4")

// Rules returns flannel's masquerade rules (those flanneld puts in its
// FLANNEL-POSTRTG chain, in the same order and with the same meaning) for
// the overlay network and this host's subnet of it, masquerading with fully
// random ports if fullyRandom. Both must be IPv4 prefixes without host bits,
// the subnet inside the network.
func Rules(network, subnet netip.Prefix, fullyRandom bool) ([]Rule, error) {
	if err := checkPrefix("network", network); err != nil {
		return nil, err
	}
	if err := checkPrefix("subnet", subnet); err != nil {
		return nil, err
	}
	if subnet.Bits() < network.Bits() || !network.Contains(subnet.Addr()) {
		return nil, fmt.Errorf("masq: subnet %v is not inside network %v", subnet, network)
	}
	masquerade := Masquerade
	if fullyRandom {
		masquerade = MasqueradeFullyRandom
	}
	return []Rule{
		// kube-proxy masquerades what it marked: not twice.
		{Mark: KubeProxyMark, Action: Return},
		// This host's pods to the overlay, and the overlay to them:
		// pod addresses kept.
		{Src: in(subnet), Dst: in(network), Action: Return},
		{Src: in(network), Dst: in(subnet), Action: Return},
		// Anything from outside the overlay to this host's pods (say, a
		// node port's traffic another node forwarded): unchanged.
		{Src: notIn(network), Dst: in(subnet), Action: Return},
		// Pods to the outside world (not multicast): the host's address.
		{Src: in(network), Dst: notIn(multicast), Action: masquerade},
		// This host (or something it routes) to another host's pods: the
		// source becomes the TUN device's address, inside this host's
		// subnet, so that the peer accepts the packet and can answer it.
		{Src: notIn(network), Dst: in(network), Action: masquerade},
	}, nil
}

func checkPrefix(what string, p netip.Prefix) error {
	if !p.IsValid() || !p.Addr().Is4() {
		return fmt.Errorf("masq: %s %v: not an IPv4 prefix", what, p)
	}
	if p != p.Masked() {
		return fmt.Errorf("masq: %s %v: host bits set", what, p)
	}
	return nil
}
