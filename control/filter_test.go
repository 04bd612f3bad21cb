package control

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
)

// pkt builds the first bytes of an IPv4 packet: header and, for TCP and
// UDP, the ports.
func pkt(src, dst string, proto byte, sport, dport uint16) []byte {
	p := make([]byte, 28)
	p[0] = 0x45
	p[9] = proto
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	binary.BigEndian.PutUint16(p[20:], sport)
	binary.BigEndian.PutUint16(p[22:], dport)
	return p
}

var (
	pingOut = pkt("100.96.1.2", "100.96.2.2", 1, 0, 0)
	webIn   = pkt("100.96.2.2", "100.96.1.2", 6, 80, 40000)
	dnsOut  = pkt("100.96.1.2", "100.96.3.3", 17, 40001, 53)
	peer1   = netip.MustParseAddrPort("192.0.2.1:8285")
	peer2   = netip.MustParseAddrPort("192.0.2.2:8285")
)

func TestFilterMatch(t *testing.T) {
	noWire := netip.AddrPort{}
	for _, tc := range []struct {
		filter string
		pkt    []byte
		wire   bool // seen as a datagram from peer1 to peer2
		want   bool
	}{
		{"", pingOut, false, true},
		{"icmp", pingOut, false, true},
		{"icmp", webIn, false, false},
		{"proto 6", webIn, false, true},
		{"proto tcp", webIn, false, true},
		{"host 100.96.2.2", pingOut, false, true},
		{"host 100.96.2.2", webIn, false, true},
		{"src host 100.96.2.2", pingOut, false, false},
		{"dst host 100.96.2.2", pingOut, false, true},
		{"net 100.96.2.0/24", webIn, false, true},
		{"src net 100.96.2.0/24", webIn, false, true},
		{"dst net 100.96.2.0/24", webIn, false, false},
		{"net 0.0.0.0/0", dnsOut, false, true},
		{"port 53", dnsOut, false, true},
		{"src port 53", dnsOut, false, false},
		{"dst port 53", dnsOut, false, true},
		{"port 80", webIn, false, true},
		{"port 0", pingOut, false, false}, // ICMP has no ports
		{"udp and port 53", dnsOut, false, true},
		{"tcp and port 53", dnsOut, false, false},
		{"tcp or udp", dnsOut, false, true},
		{"not icmp", pingOut, false, false},
		{"! icmp", dnsOut, false, true},
		{"icmp || port 53", dnsOut, false, true},
		{"icmp && port 53", dnsOut, false, false},
		{"not (icmp or udp)", webIn, false, true},
		{"not (icmp or udp)", dnsOut, false, false},
		// "and" binds tighter than "or".
		{"udp or tcp and port 9", dnsOut, false, true},
		{"(udp or tcp) and port 9", dnsOut, false, false},
		// Outer headers count at the wire stages only.
		{"host 192.0.2.2", pingOut, false, false},
		{"host 192.0.2.2", pingOut, true, true},
		{"port 8285", pingOut, true, true},
		{"src host 192.0.2.1 and dst port 8285", pingOut, true, true},
		{"udp", pingOut, true, true}, // the outer datagram is UDP
		// Either view: inner or outer, each as a whole.
		{"host 100.96.2.2 and port 8285", pingOut, true, false},
		// Not an IPv4 packet: only negations match.
		{"host 100.96.2.2", []byte{0x60, 0, 0}, false, false},
		{"not tcp", []byte{0x60}, false, true},
		// A later fragment has no ports.
		{"port 80", func() []byte { p := append([]byte(nil), webIn...); p[7] = 1; return p }(), false, false},
	} {
		f, err := ParseFilter(tc.filter)
		if err != nil {
			t.Fatalf("ParseFilter(%q): %v", tc.filter, err)
		}
		src, dst := noWire, noWire
		if tc.wire {
			src, dst = peer1, peer2
		}
		if got := f.Match(tc.pkt, src, dst); got != tc.want {
			t.Errorf("%q on %v (wire %v): %v, want %v", tc.filter, tc.pkt[:20], tc.wire, got, tc.want)
		}
	}
}

func TestFilterErrors(t *testing.T) {
	for _, tc := range []struct{ filter, want string }{
		{"hots 1.2.3.4", `column 1: expected host, net, port, proto, tcp, udp, icmp, src, dst, not or "("; got "hots"`},
		{"host", "at the end: host wants an IPv4 address"},
		{"host 300.1.1.1", `column 6: host wants an IPv4 address, got "300.1.1.1"`},
		{"host fd00::1", "host wants an IPv4 address"},
		{"net 100.96.1.1/24", "net 100.96.1.1/24 has host bits set (did you mean 100.96.1.0/24?)"},
		{"net 100.96.1.0", `net wants an IPv4 network as ADDR/LEN, got "100.96.1.0"`},
		{"port 70000", `port wants a number from 0 to 65535, got "70000"`},
		{"port http", "port wants a number"},
		{"proto sctp", "proto wants tcp, udp, icmp or a number from 0 to 255"},
		{"proto 256", "proto wants tcp, udp, icmp or a number"},
		{"src tcp", "column 5: expected host, net or port after src or dst"},
		{"dst", "at the end: expected host, net or port after src or dst"},
		{"icmp and", "at the end: expected host"},
		{"icmp udp", `column 6: unexpected "udp" after a complete expression (missing "and" or "or"?)`},
		{"(icmp", `at the end: expected ")" to close the "(" at column 1`},
		{"icmp)", `unexpected ")"`},
		{"()", `column 2: expected host`},
		{"not", "at the end: expected host"},
		{"icmp & udp", `column 6: unexpected "&"`},
		{strings.Repeat("(", 100) + "icmp" + strings.Repeat(")", 100), "nested more than 64 deep"},
		{strings.Repeat("icmp or ", 200), "longer than 1024 characters"},
	} {
		_, err := ParseFilter(tc.filter)
		if err == nil {
			t.Errorf("ParseFilter(%q) accepted", tc.filter)
			continue
		}
		if !strings.HasPrefix(err.Error(), "filter: ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseFilter(%q) = %q, want it to contain %q", tc.filter, err, tc.want)
		}
	}
}

func TestFilterMatchAllocs(t *testing.T) {
	f, err := ParseFilter("not (host 100.96.9.9 or net 10.0.0.0/8) and (tcp or udp) and port 53")
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { f.Match(dnsOut, peer1, peer2) }); n != 0 {
		t.Errorf("Match allocates %v times", n)
	}
}

// FuzzParseFilter: no input panics the parser, and whatever parses can be
// matched against any bytes.
func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{"", "icmp", "host 100.96.2.2 and not port 22", "(src net 10.0.0.0/8 || dst port 53) && !tcp", "proto 47"} {
		f.Add(s, pingOut)
	}
	f.Fuzz(func(t *testing.T, s string, p []byte) {
		flt, err := ParseFilter(s)
		if err != nil {
			return
		}
		flt.Match(p, netip.AddrPort{}, netip.AddrPort{})
		flt.Match(p, peer1, peer2)
	})
}
