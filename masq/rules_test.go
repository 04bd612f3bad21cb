package masq

import (
	"net/netip"
	"strings"
	"testing"
)

func TestRules(t *testing.T) {
	pfx := netip.MustParsePrefix
	cases := []struct {
		name            string
		network, subnet netip.Prefix
		fullyRandom     bool
		want            []string // Rule.String of each, in order
		wantErr         string
	}{
		{name: "flannel's six, in its order", network: pfx("100.96.0.0/16"), subnet: pfx("100.96.1.0/24"), fullyRandom: true, want: []string{
			"meta mark & 0x00004000 == 0x00004000 return",
			"ip saddr 100.96.1.0/24 ip daddr 100.96.0.0/16 return",
			"ip saddr 100.96.0.0/16 ip daddr 100.96.1.0/24 return",
			"ip saddr != 100.96.0.0/16 ip daddr 100.96.1.0/24 return",
			"ip saddr 100.96.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random",
			"ip saddr != 100.96.0.0/16 ip daddr 100.96.0.0/16 masquerade fully-random",
		}},
		{name: "without fully random ports (--ip-masq-random-fully-disable)", network: pfx("100.96.0.0/16"), subnet: pfx("100.96.1.0/24"), want: []string{
			"meta mark & 0x00004000 == 0x00004000 return",
			"ip saddr 100.96.1.0/24 ip daddr 100.96.0.0/16 return",
			"ip saddr 100.96.0.0/16 ip daddr 100.96.1.0/24 return",
			"ip saddr != 100.96.0.0/16 ip daddr 100.96.1.0/24 return",
			"ip saddr 100.96.0.0/16 ip daddr != 224.0.0.0/4 masquerade",
			"ip saddr != 100.96.0.0/16 ip daddr 100.96.0.0/16 masquerade",
		}},
		{name: "subnet as large as the network", network: pfx("10.0.0.0/8"), subnet: pfx("10.0.0.0/8"), fullyRandom: true, want: []string{
			"meta mark & 0x00004000 == 0x00004000 return",
			"ip saddr 10.0.0.0/8 ip daddr 10.0.0.0/8 return",
			"ip saddr 10.0.0.0/8 ip daddr 10.0.0.0/8 return",
			"ip saddr != 10.0.0.0/8 ip daddr 10.0.0.0/8 return",
			"ip saddr 10.0.0.0/8 ip daddr != 224.0.0.0/4 masquerade fully-random",
			"ip saddr != 10.0.0.0/8 ip daddr 10.0.0.0/8 masquerade fully-random",
		}},
		{name: "subnet outside the network", network: pfx("100.96.0.0/16"), subnet: pfx("100.97.1.0/24"), wantErr: "not inside network"},
		{name: "subnet containing the network", network: pfx("100.96.0.0/16"), subnet: pfx("100.96.0.0/15"), wantErr: "not inside network"},
		{name: "host bits", network: pfx("100.96.0.1/16"), subnet: pfx("100.96.1.0/24"), wantErr: "network 100.96.0.1/16: host bits set"},
		{name: "IPv6", network: pfx("fd00::/48"), subnet: pfx("fd00::/64"), wantErr: "not an IPv4 prefix"},
		{name: "no network", subnet: pfx("100.96.1.0/24"), wantErr: "network invalid Prefix: not an IPv4 prefix"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rules, err := Rules(c.network, c.subnet, c.fullyRandom)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(rules) != len(c.want) {
				t.Fatalf("%d rules, want %d", len(rules), len(c.want))
			}
			for i, r := range rules {
				if r.String() != c.want[i] {
					t.Errorf("rule %d: %q, want %q", i+1, r, c.want[i])
				}
			}
		})
	}
}

// TestRulesDecide walks packets through the rules as the chain would and
// checks flannel's promise: pod traffic leaving the overlay is masqueraded,
// traffic within it is not, and the host reaching remote pods is.
func TestRulesDecide(t *testing.T) {
	rules, err := Rules(netip.MustParsePrefix("100.96.0.0/16"), netip.MustParsePrefix("100.96.1.0/24"), true)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		src, dst string
		masq     bool
		mark     uint32
	}{
		{"pod to the internet, marked by kube-proxy", "100.96.1.2", "198.51.100.7", false, 0x4000},
		{"pod to the internet, kube-proxy's bit among others", "100.96.1.2", "198.51.100.7", false, 0xc001},
		{"pod to the internet, other marks", "100.96.1.2", "198.51.100.7", true, 0x8000},
		{"pod to pod on another host", "100.96.1.2", "100.96.2.2", false, 0},
		{"pod to pod on this host", "100.96.1.2", "100.96.1.3", false, 0},
		{"pod to the underlay", "100.96.1.2", "192.0.2.2", true, 0},
		{"pod to the internet", "100.96.1.2", "198.51.100.7", true, 0},
		{"pod to multicast", "100.96.1.2", "224.0.0.251", false, 0},
		{"pod to the top of multicast", "100.96.1.2", "239.255.255.250", false, 0},
		{"pod to the broadcast address", "100.96.1.2", "255.255.255.255", true, 0},
		{"outside to a pod here", "198.51.100.7", "100.96.1.2", false, 0},
		{"host to a pod on another host", "192.0.2.1", "100.96.2.2", true, 0},
		{"host to the underlay", "192.0.2.1", "192.0.2.2", false, 0},
	}
	for _, c := range cases {
		src, dst := netip.MustParseAddr(c.src), netip.MustParseAddr(c.dst)
		if got := decide(rules, src, dst, c.mark); got != c.masq {
			t.Errorf("%s (%s -> %s): masquerade %v, want %v", c.name, c.src, c.dst, got, c.masq)
		}
	}
}

// decide is the chain, slowly and plainly: the first rule that matches.
func decide(rules []Rule, src, dst netip.Addr, mark uint32) bool {
	matches := func(m Match, a netip.Addr) bool { return m.Any() || m.Prefix.Contains(a) != m.Not }
	for _, r := range rules {
		if mark&r.Mark == r.Mark && matches(r.Src, src) && matches(r.Dst, dst) {
			return r.Action == Masquerade || r.Action == MasqueradeFullyRandom
		}
	}
	return false
}
