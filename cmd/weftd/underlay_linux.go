package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// underlay is the interface that carries the encapsulated traffic.
type underlay struct {
	name     string
	mtu      int
	localIP  netip.Addr // the interface's address: weftd binds its sockets to it
	publicIP netip.Addr // what peers send to (differs from localIP behind NAT)
}

// findUnderlay picks the underlay interface as flanneld does: the one named
// by --iface (a name or an address on it), else the one holding --public-ip,
// else the one of the default route.
func findUnderlay(iface string, publicIP netip.Addr) (*underlay, error) {
	var link netlink.Link
	var err error
	switch {
	case iface != "":
		if ip, perr := netip.ParseAddr(iface); perr == nil {
			link, err = linkWithAddr(ip)
		} else {
			link, err = netlink.LinkByName(iface)
		}
		if err != nil {
			return nil, fmt.Errorf("--iface %q: %w", iface, err)
		}
	case publicIP.IsValid():
		if link, err = linkWithAddr(publicIP); err != nil {
			link, err = defaultRouteLink()
		}
		if err != nil {
			return nil, fmt.Errorf("--public-ip %v is on no interface and %w; name the underlay with --iface", publicIP, err)
		}
	default:
		if link, err = defaultRouteLink(); err != nil {
			return nil, fmt.Errorf("no --iface given and %w; name the underlay with --iface", err)
		}
	}
	u := &underlay{name: link.Attrs().Name, mtu: link.Attrs().MTU}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("underlay %s: list addresses: %w", u.name, err)
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP.To4())
		if !ok {
			continue
		}
		if !u.localIP.IsValid() || ip == publicIP {
			u.localIP = ip
		}
	}
	if ip, err := netip.ParseAddr(iface); err == nil {
		u.localIP = ip
	}
	if !u.localIP.IsValid() {
		return nil, fmt.Errorf("underlay %s has no IPv4 address", u.name)
	}
	u.publicIP = publicIP
	if !u.publicIP.IsValid() {
		u.publicIP = u.localIP
	}
	return u, nil
}

func linkWithAddr(ip netip.Addr) (netlink.Link, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, err
	}
	for _, l := range links {
		addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if a.IP.Equal(net.IP(ip.AsSlice())) {
				return l, nil
			}
		}
	}
	return nil, fmt.Errorf("no interface has address %v", ip)
}

func defaultRouteLink() (netlink.Link, error) {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, err
	}
	for _, r := range routes {
		if r.Dst == nil || r.Dst.IP.IsUnspecified() && isZeroMask(r.Dst.Mask) {
			return netlink.LinkByIndex(r.LinkIndex)
		}
	}
	return nil, errors.New("there is no default route")
}

func isZeroMask(m net.IPMask) bool {
	ones, _ := m.Size()
	return ones == 0
}
