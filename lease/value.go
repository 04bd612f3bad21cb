package lease

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// SubnetKey is the name flannel gives a subnet's key under <prefix>/subnets/:
// 100.96.1.0/24 is "100.96.1.0-24".
func SubnetKey(subnet netip.Prefix) string {
	return subnet.Addr().String() + "-" + strconv.Itoa(subnet.Bits())
}

// ParseSubnetKey parses the last element of a key under <prefix>/subnets/, as
// SubnetKey writes it: a masked IPv4 network, "-", the prefix length (1..32),
// nothing else; or flannel's dual-stack name, that followed by "&" and an IPv6
// network spelled the same way ("100.96.3.0-24&fd00:1:2:3::-64"). It returns
// the IPv4 network: weft routes only IPv4, but a dual-stack host's subnet is
// a route and is taken all the same. It is stricter than flannel's regular
// expression on purpose: the IPv4 part round-trips through SubnetKey, and the
// IPv6 part must be masked and in its canonical spelling (as flannel writes
// it), so two spellings can never name one subnet pair.
func ParseSubnetKey(name string) (netip.Prefix, error) {
	v4, v6, dual := strings.Cut(name, "&")
	p, err := parseSubnetKey4(v4)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("subnet key %q: %w", name, err)
	}
	if dual {
		if err := checkSubnetKey6(v6); err != nil {
			return netip.Prefix{}, fmt.Errorf("subnet key %q: %w", name, err)
		}
	}
	return p, nil
}

func parseSubnetKey4(name string) (netip.Prefix, error) {
	addr, bits, ok := strings.Cut(name, "-")
	if !ok {
		return netip.Prefix{}, errors.New("no '-' between address and length")
	}
	a, err := netip.ParseAddr(addr)
	if err != nil || !a.Is4() {
		return netip.Prefix{}, fmt.Errorf("%q is not an IPv4 address", addr)
	}
	n, err := strconv.Atoi(bits)
	if err != nil || n < 1 || n > 32 || strconv.Itoa(n) != bits {
		return netip.Prefix{}, fmt.Errorf("%q is not a prefix length 1..32", bits)
	}
	p := netip.PrefixFrom(a, n)
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("host bits set (network is %s)", p.Masked())
	}
	return p, nil
}

// checkSubnetKey6 checks the IPv6 part of a dual-stack name: a masked IPv6
// network (no zone, not IPv4-mapped) in its canonical spelling, "-", the
// prefix length (1..128).
func checkSubnetKey6(name string) error {
	addr, bits, ok := strings.Cut(name, "-")
	if !ok {
		return fmt.Errorf("IPv6 part %q: no '-' between address and length", name)
	}
	a, err := netip.ParseAddr(addr)
	if err != nil || !a.Is6() || a.Is4In6() || a.Zone() != "" || a.String() != addr {
		return fmt.Errorf("IPv6 part %q: %q is not an IPv6 address as flannel spells one", name, addr)
	}
	n, err := strconv.Atoi(bits)
	if err != nil || n < 1 || n > 128 || strconv.Itoa(n) != bits {
		return fmt.Errorf("IPv6 part %q: %q is not a prefix length 1..128", name, bits)
	}
	if p := netip.PrefixFrom(a, n); p.Masked() != p {
		return fmt.Errorf("IPv6 part %q: host bits set (network is %s)", name, p.Masked())
	}
	return nil
}

// parseLeaseValue reads the JSON flannel keeps under a subnet key (its
// LeaseAttrs). Both weft's {"PublicIP":"192.0.2.1","PublicIPv6":null,
// "BackendType":"udp"} and flanneld's udp {"PublicIP":"192.0.2.1","PublicIPv6":null}
// are accepted; other fields (BackendData, PublicIPv6, ...) are ignored, and so
// is BackendType, as flanneld's udp backend ignores it. PublicIP must be IPv4.
func parseLeaseValue(data []byte) (netip.Addr, error) {
	if ip, ok := quickLeaseValue(data); ok {
		return ip, nil
	}
	return decodeLeaseValue(data)
}

func decodeLeaseValue(data []byte) (netip.Addr, error) {
	var v struct {
		PublicIP    *string
		BackendType string
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return netip.Addr{}, fmt.Errorf("lease value: %w", err)
	}
	if v.PublicIP == nil {
		return netip.Addr{}, errors.New("lease value: no PublicIP")
	}
	ip, err := netip.ParseAddr(*v.PublicIP)
	if err != nil || !ip.Is4() {
		return netip.Addr{}, fmt.Errorf("lease value: PublicIP %q is not an IPv4 address", *v.PublicIP)
	}
	return ip, nil
}

// quickLeaseValue reads, without encoding/json, exactly the values flanneld's
// udp backend and weft write, which is nearly every value there is; it
// declines (false) anything else, for parseLeaseValue to decode in full.
// A WatchRoutes after a mass restart parses one per host.
func quickLeaseValue(data []byte) (netip.Addr, bool) {
	const head = `{"PublicIP":"`
	if !bytes.HasPrefix(data, []byte(head)) {
		return netip.Addr{}, false
	}
	rest := data[len(head):]
	end := bytes.IndexByte(rest, '"')
	if end < 0 {
		return netip.Addr{}, false
	}
	switch string(rest[end+1:]) {
	case `}`, `,"PublicIPv6":null}`, `,"PublicIPv6":null,"BackendType":"udp"}`:
	default:
		return netip.Addr{}, false
	}
	// A JSON escape in the address fails here and goes the long way.
	ip, err := netip.ParseAddr(string(rest[:end]))
	if err != nil || !ip.Is4() {
		return netip.Addr{}, false
	}
	return ip, true
}

// leaseValue is what weft writes under its subnet key: flanneld's udp value
// (which flannel reads back) plus BackendType, as flannel's other backends write it.
func leaseValue(publicIP netip.Addr) string {
	return `{"PublicIP":"` + publicIP.String() + `","PublicIPv6":null,"BackendType":"udp"}`
}
