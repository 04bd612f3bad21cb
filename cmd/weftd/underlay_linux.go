package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"

	"github.com/vishvananda/netlink"
)

// underlay is the interface that carries the encapsulated traffic.
type underlay struct {
	name     string
	mtu      int
	localIP  netip.Addr // the interface's address: weftd binds its sockets to it
	publicIP netip.Addr // what peers send to (differs from localIP behind NAT)
}

// findUnderlay picks the underlay interface as flanneld does: the first of
// --iface (names or addresses, in order) that exists, else the first
// interface an --iface-regex matches (the regexes in order, each tried
// against every interface's IPv4 addresses, then against their names),
// else, with neither flag, the interface the route to --iface-can-reach
// leaves by. Without any of the three, weft takes the interface holding
// --public-ip, else that of the default route.
func findUnderlay(cfg *config) (*underlay, error) {
	var link netlink.Link
	var localIP netip.Addr // the address the choice named, if it named one
	var err error
	publicIP := cfg.publicIP
	switch {
	case len(cfg.ifaces) > 0 || len(cfg.ifaceRegexes) > 0:
		link, localIP, err = pickIface(cfg.ifaces, cfg.ifaceRegexes)
		if err != nil {
			return nil, err
		}
	case cfg.ifaceCanReach.IsValid():
		link, localIP, err = routeTo(cfg.ifaceCanReach)
		if err != nil {
			return nil, fmt.Errorf("--iface-can-reach %v: %w", cfg.ifaceCanReach, err)
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
	u := &underlay{name: link.Attrs().Name, mtu: link.Attrs().MTU, localIP: localIP}
	if !u.localIP.IsValid() {
		addrs, err := ipv4Addrs(link)
		if err != nil {
			return nil, fmt.Errorf("underlay %s: list addresses: %w", u.name, err)
		}
		for _, ip := range addrs {
			if !u.localIP.IsValid() || ip == publicIP {
				u.localIP = ip
			}
		}
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

// pickIface returns the first interface of names (each a name or one of
// its addresses) that exists, else the first one a regex matches; and the
// address that named it, if one did.
func pickIface(names []string, regexes []*regexp.Regexp) (netlink.Link, netip.Addr, error) {
	var tried []string
	for _, n := range names {
		if ip, err := netip.ParseAddr(n); err == nil {
			l, err := linkWithAddr(ip)
			if err == nil {
				return l, ip, nil
			}
			tried = append(tried, fmt.Sprintf("--iface %s: %v", n, err))
			continue
		}
		l, err := netlink.LinkByName(n)
		if err == nil {
			return l, netip.Addr{}, nil
		}
		tried = append(tried, fmt.Sprintf("--iface %s: %v", n, err))
	}
	if len(regexes) > 0 {
		links, err := netlink.LinkList()
		if err != nil {
			return nil, netip.Addr{}, fmt.Errorf("list interfaces: %w", err)
		}
		for _, re := range regexes {
			for _, l := range links {
				addrs, _ := ipv4Addrs(l)
				for _, ip := range addrs {
					if re.MatchString(ip.String()) {
						return l, ip, nil
					}
				}
			}
			for _, l := range links {
				if re.MatchString(l.Attrs().Name) {
					return l, netip.Addr{}, nil
				}
			}
			tried = append(tried, fmt.Sprintf("--iface-regex %s: no interface's name or IPv4 address matches", re))
		}
	}
	return nil, netip.Addr{}, fmt.Errorf("no underlay interface found (%s)", strings.Join(tried, "; "))
}

// routeTo returns the interface the route to ip leaves by and the source
// address the kernel picks for it, as "ip route get" shows them.
func routeTo(ip netip.Addr) (netlink.Link, netip.Addr, error) {
	routes, err := netlink.RouteGet(net.IP(ip.AsSlice()))
	if err != nil {
		return nil, netip.Addr{}, fmt.Errorf("route lookup: %w", err)
	}
	if len(routes) == 0 || routes[0].LinkIndex == 0 {
		return nil, netip.Addr{}, errors.New("no route to it leaves by an interface")
	}
	l, err := netlink.LinkByIndex(routes[0].LinkIndex)
	if err != nil {
		return nil, netip.Addr{}, err
	}
	src, _ := netip.AddrFromSlice(routes[0].Src.To4())
	return l, src, nil
}

func ipv4Addrs(l netlink.Link) ([]netip.Addr, error) {
	addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return nil, err
	}
	var ips []netip.Addr
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok {
			ips = append(ips, ip)
		}
	}
	return ips, nil
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
