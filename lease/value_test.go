package lease

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"
)

func TestParseSubnetKey(t *testing.T) {
	for _, tc := range []struct {
		name string
		want string // "" = must fail
	}{
		{"100.96.1.0-24", "100.96.1.0/24"},
		{"10.0.0.0-8", "10.0.0.0/8"},
		{"10.0.0.4-30", "10.0.0.4/30"},
		{"192.0.2.1-32", "192.0.2.1/32"},
		{"100.96.1.0/24", ""},        // the CIDR spelling is not a key
		{"100.96.1.1-24", ""},        // host bits
		{"100.96.1.0-024", ""},       // two spellings of one subnet
		{"100.96.1.0-+24", ""},       //
		{"100.96.1.0-33", ""},        //
		{"100.96.1.0-0", ""},         // a route for everything
		{"100.96.1.0-", ""},          //
		{"-24", ""},                  //
		{"100.96.001.0-24", ""},      // leading zeros
		{"fc00::-64", ""},            // IPv6
		{"::ffff:100.96.1.0-24", ""}, // 4in6
		// flannel's dual-stack names: the IPv4 part is the subnet; the IPv6
		// part must be as flannel spells one, and is otherwise ignored.
		{"100.96.1.0-24&fc00::-64", "100.96.1.0/24"},
		{"100.96.3.0-24&fd00:1:2:3::-64", "100.96.3.0/24"},
		{"10.0.0.4-30&2001:db8::-128", "10.0.0.4/30"},
		{"100.96.1.0-24&", ""},
		{"100.96.1.0-24&fc00::", ""},
		{"100.96.1.0-24&fc00::-", ""},
		{"100.96.1.0-24&fc00::-0", ""},
		{"100.96.1.0-24&fc00::-129", ""},
		{"100.96.1.0-24&fc00::-064", ""},
		{"100.96.1.0-24&fc00::1-64", ""},          // host bits
		{"100.96.1.0-24&FC00::-64", ""},           // not as flannel spells it
		{"100.96.1.0-24&fc00:0::-64", ""},         //
		{"100.96.1.0-24&10.0.0.0-8", ""},          // IPv4 where IPv6 goes
		{"100.96.1.0-24&::ffff:10.0.0.0-104", ""}, // 4in6
		{"100.96.1.0-24&fc00::%eth0-64", ""},      // a zone
		{"100.96.1.0-24&fc00::-64&fc01::-64", ""}, //
		{"100.96.1.1-24&fc00::-64", ""},           // IPv4 host bits
		{"&fc00::-64", ""},                        //
		{"100.96.1.0-24 &fc00::-64", ""},          //
		{"100.96.1.0-24 ", ""},
		{"", ""},
		{"config", ""},
	} {
		p, err := ParseSubnetKey(tc.name)
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("ParseSubnetKey(%q) = %v, want an error", tc.name, p)
		case tc.want != "" && err != nil:
			t.Errorf("ParseSubnetKey(%q): %v", tc.name, err)
		case tc.want != "" && p != pfx(tc.want):
			t.Errorf("ParseSubnetKey(%q) = %v, want %s", tc.name, p, tc.want)
		case tc.want != "" && SubnetKey(p) != tc.name && !strings.HasPrefix(tc.name, SubnetKey(p)+"&"):
			t.Errorf("SubnetKey(%v) = %q, want %q", p, SubnetKey(p), tc.name)
		}
	}
}

func TestParseLeaseValue(t *testing.T) {
	for _, tc := range []struct {
		name, value, want string // want "" = must fail
	}{
		{"flanneld udp", `{"PublicIP":"192.0.2.1","PublicIPv6":null}`, "192.0.2.1"},
		{"weft", leaseValue(ip("192.0.2.7")), "192.0.2.7"},
		{"flanneld vxlan", `{"PublicIP":"192.0.2.2","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}}`, "192.0.2.2"},
		{"dual stack", `{"PublicIP":"192.0.2.3","PublicIPv6":"2001:db8::3"}`, "192.0.2.3"},
		{"dual stack vxlan", `{"PublicIP":"192.0.2.3","PublicIPv6":"2001:db8::3","BackendType":"vxlan","BackendData":{"VNI":1},"BackendV6Data":{"VNI":1}}`, "192.0.2.3"},
		{"lower case", `{"publicip":"192.0.2.4"}`, "192.0.2.4"},
		{"no PublicIP", `{"PublicIPv6":null}`, ""},
		{"null PublicIP", `{"PublicIP":null}`, ""},
		{"empty PublicIP", `{"PublicIP":""}`, ""},
		{"IPv6 PublicIP", `{"PublicIP":"2001:db8::1"}`, ""},
		{"garbage PublicIP", `{"PublicIP":"host.example"}`, ""},
		{"numeric PublicIP", `{"PublicIP":3221225985}`, ""},
		{"BackendType not a string", `{"PublicIP":"192.0.2.1","BackendType":1}`, ""},
		{"not JSON", `192.0.2.1`, ""},
		{"trailing garbage", `{"PublicIP":"192.0.2.1"}x`, ""},
		{"null", `null`, ""},
		{"empty", ``, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseLeaseValue([]byte(tc.value))
			switch {
			case tc.want == "" && err == nil:
				t.Errorf("parseLeaseValue(%s) = %v, want an error", tc.value, got)
			case tc.want != "" && (err != nil || got != ip(tc.want)):
				t.Errorf("parseLeaseValue(%s) = %v, %v; want %s", tc.value, got, err, tc.want)
			}
		})
	}
	// What weft writes is flanneld's udp value plus BackendType.
	if v := leaseValue(ip("192.0.2.1")); !strings.HasPrefix(v, `{"PublicIP":"192.0.2.1","PublicIPv6":null`) || !strings.Contains(v, `"BackendType":"udp"`) {
		t.Errorf("leaseValue = %s", v)
	}
}

func FuzzParseSubnetKey(f *testing.F) {
	for _, s := range []string{
		"100.96.1.0-24", "10.0.0.0-8", "1.2.3.4-32", "x-1",
		"100.96.1.0-24&fc00::-64", "100.96.3.0-24&fd00:1:2:3::-64", "10.0.0.4-30&2001:db8::-128",
		"100.96.1.0-24&fc00::1-64", "100.96.1.0-24&", "100.96.1.0-24&::ffff:10.0.0.0-104",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		p, err := ParseSubnetKey(name)
		if err != nil {
			return
		}
		if !p.Addr().Is4() || p.Masked() != p || p.Bits() < 1 {
			t.Fatalf("ParseSubnetKey(%q) = %v", name, p)
		}
		// The IPv4 part round-trips through SubnetKey; a dual-stack name's
		// IPv6 part round-trips as flannel spells it, so no two spellings
		// name one pair of subnets.
		v4, v6, dual := strings.Cut(name, "&")
		if SubnetKey(p) != v4 {
			t.Fatalf("ParseSubnetKey(%q) = %v, which SubnetKey spells %q", name, p, SubnetKey(p))
		}
		if dual {
			addr, bits, _ := strings.Cut(v6, "-")
			q, err := netip.ParsePrefix(addr + "/" + bits)
			if err != nil || !q.Addr().Is6() || q.Addr().Is4In6() || q.Masked() != q || q.Bits() < 1 ||
				q.Addr().String()+"-"+strconv.Itoa(q.Bits()) != v6 {
				t.Fatalf("ParseSubnetKey(%q) accepted the IPv6 part %q", name, v6)
			}
		}
	})
}

func FuzzParseLeaseValue(f *testing.F) {
	for _, s := range []string{
		`{"PublicIP":"192.0.2.1","PublicIPv6":null}`,
		`{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendType":"udp"}`,
		`{"PublicIP":"192.0.2.2","BackendType":"vxlan","BackendData":{"VNI":1}}`,
		`{"PublicIP":null}`, `null`, `{"PublicIP":"192.0.2.\u0031"}`, `{"PublicIP":"192.0.2.1"}`,
		// What flannel's dual-stack hosts write.
		`{"PublicIP":"192.0.2.3","PublicIPv6":"2001:db8::3","BackendType":"udp"}`,
		`{"PublicIP":"192.0.2.3","PublicIPv6":"2001:db8::3","BackendType":"vxlan","BackendData":{"VNI":1},"BackendV6Data":{"VNI":1}}`,
		`{"PublicIP":"192.0.2.3","PublicIPv6":"192.0.2.3"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if q, ok := quickLeaseValue(data); ok {
			if d, err := decodeLeaseValue(data); err != nil || d != q {
				t.Fatalf("%q: quick path %v, encoding/json %v, %v", data, q, d, err)
			}
		}
		a, err := parseLeaseValue(data)
		if err != nil {
			return
		}
		if !a.Is4() {
			t.Fatalf("parseLeaseValue(%q) = %v, not IPv4", data, a)
		}
		// Whatever we accept, we can write back and read again.
		if b, err := parseLeaseValue([]byte(leaseValue(a))); err != nil || b != a {
			t.Fatalf("round trip of %v: %v, %v", a, b, err)
		}
	})
}
