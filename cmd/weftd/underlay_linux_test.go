package main

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// TestFindUnderlay checks flanneld's choice of the underlay interface in a
// network namespace of the test's own with two veth interfaces: --iface in
// order, then --iface-regex (addresses before names), else
// --iface-can-reach, else --public-ip's interface, else the default route's.
func TestFindUnderlay(t *testing.T) {
	needRoot(t)
	a, b := fmt.Sprintf("ua%d", os.Getpid()%100000), fmt.Sprintf("ub%d", os.Getpid()%100000)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New() // this thread is in it from here on
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	defer func() {
		if err := netns.Set(orig); err != nil {
			runtime.LockOSThread() // a thread in the wrong namespace dies with its goroutine
			t.Errorf("back to the original namespace: %v", err)
		}
	}()
	for _, l := range []struct{ name, addr string }{{a, "192.0.2.1/24"}, {b, "198.51.100.1/24"}} {
		// A veth pair: the other end, down and without addresses,
		// named "p..." to stay out of the regexes' way.
		link := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: l.name, MTU: 1400}, PeerName: "p" + l.name}
		if err := netlink.LinkAdd(link); err != nil {
			t.Fatal(err)
		}
		addr, _ := netlink.ParseAddr(l.addr)
		if err := netlink.AddrAdd(link, addr); err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkSetUp(link); err != nil {
			t.Fatal(err)
		}
	}
	lb, _ := netlink.LinkByName(b)
	if err := netlink.RouteAdd(&netlink.Route{LinkIndex: lb.Attrs().Index, Gw: net.ParseIP("198.51.100.254")}); err != nil {
		t.Fatalf("default route: %v", err)
	}
	re := func(s ...string) (rs []*regexp.Regexp) {
		for _, x := range s {
			rs = append(rs, regexp.MustCompile(x))
		}
		return rs
	}
	ip := netip.MustParseAddr
	cases := []struct {
		name      string
		cfg       config
		wantIface string
		wantIP    string
		wantErr   string
	}{
		{name: "default route", wantIface: b, wantIP: "198.51.100.1"},
		{name: "public ip's interface", cfg: config{publicIP: ip("192.0.2.1")}, wantIface: a, wantIP: "192.0.2.1"},
		{name: "iface by name", cfg: config{ifaces: []string{a}}, wantIface: a, wantIP: "192.0.2.1"},
		{name: "iface by address", cfg: config{ifaces: []string{"198.51.100.1"}}, wantIface: b, wantIP: "198.51.100.1"},
		{name: "iface tried in order, the first that exists wins", cfg: config{ifaces: []string{"nosuch0", "192.0.2.99", b, a}}, wantIface: b, wantIP: "198.51.100.1"},
		{name: "iface before iface-regex", cfg: config{ifaces: []string{a}, ifaceRegexes: re("^ub")}, wantIface: a},
		{name: "iface-regex when no iface exists", cfg: config{ifaces: []string{"nosuch0"}, ifaceRegexes: re("^ub")}, wantIface: b},
		{name: "iface-regex on an address", cfg: config{ifaceRegexes: re(`^198\.51\.100\.`)}, wantIface: b, wantIP: "198.51.100.1"},
		{name: "iface-regex: addresses before names", cfg: config{ifaceRegexes: re("^(ua|198)")}, wantIface: b},
		{name: "iface-regex in order", cfg: config{ifaceRegexes: re("^nomatch$", "^ua")}, wantIface: a},
		{name: "can-reach", cfg: config{ifaceCanReach: ip("192.0.2.77")}, wantIface: a, wantIP: "192.0.2.1"},
		{name: "can-reach by the default route", cfg: config{ifaceCanReach: ip("100.96.5.5")}, wantIface: b, wantIP: "198.51.100.1"},
		{name: "can-reach only without iface", cfg: config{ifaces: []string{b}, ifaceCanReach: ip("192.0.2.77")}, wantIface: b},
		{name: "nothing found", cfg: config{ifaces: []string{"nosuch0"}, ifaceRegexes: re("^nomatch$")}, wantErr: "--iface nosuch0"},
		{name: "nothing found names each try", cfg: config{ifaces: []string{"nosuch0"}, ifaceRegexes: re("^nomatch$")}, wantErr: "--iface-regex ^nomatch$"},
	}
	for _, c := range cases {
		// No t.Run: subtests run on other goroutines, outside this
		// thread's namespace.
		u, err := findUnderlay(&c.cfg)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%s: %v, want an error saying %q", c.name, err, c.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if u.name != c.wantIface || (c.wantIP != "" && u.localIP.String() != c.wantIP) || u.mtu != 1400 {
			t.Errorf("%s: %s %v MTU %d, want %s %s MTU 1400", c.name, u.name, u.localIP, u.mtu, c.wantIface, c.wantIP)
		}
	}
}
