package lease

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	"github.com/weft-dev/weft/encap"
)

// BackendUDP is the only backend type weft implements.
const BackendUDP = "udp"

// Config is a validated <prefix>/config, with flannel's defaults filled in.
type Config struct {
	Network   netip.Prefix // the whole overlay, masked IPv4, e.g. 100.96.0.0/16
	SubnetLen int          // prefix length of each host's subnet
	SubnetMin netip.Addr   // first subnet that may be leased
	SubnetMax netip.Addr   // last subnet that may be leased (its network address)
	Backend   string       // always BackendUDP
	Port      uint16       // Backend.Port: where peers send the encapsulated packets
}

// Fits reports whether subnet is one this config could lease: of length
// SubnetLen, aligned, and between SubnetMin and SubnetMax. flannel applies the
// same test before it takes a lease back (isSubnetConfigCompat).
func (c Config) Fits(subnet netip.Prefix) bool {
	if !c.SubnetMin.Is4() || !subnet.IsValid() || !subnet.Addr().Is4() || subnet.Bits() != c.SubnetLen || subnet.Masked() != subnet {
		return false
	}
	a := u32(subnet.Addr())
	return a >= u32(c.SubnetMin) && a <= u32(c.SubnetMax)
}

// ParseConfig decodes and validates the JSON of <prefix>/config with the rules
// of flannel's pkg/subnet (ParseConfig + CheckNetworkConfig):
//
//   - Network is required: an IPv4 CIDR, masked as net.ParseCIDR does, not /0.
//   - SubnetLen 0 or absent: 24 if Network is /22 or wider, else Network's
//     length + 2; a Network longer than /28 is too small. Given: at most 30 and at
//     least Network's length + 2 (four subnets, the first of which is never used).
//   - SubnetMin absent or 0.0.0.0: the second subnet of Network (the first one
//     would give a host Network's own address). SubnetMax absent or 0.0.0.0: the
//     last subnet. Given: inside Network and aligned to SubnetLen.
//   - Backend absent, null, {} or with an empty Type: udp. Backend.Port absent or
//     0: encap.DefaultPort (8285).
//
// Field names match case-insensitively, as in flannel (encoding/json); unknown
// fields are ignored. Beyond flannel, weft refuses SubnetMin > SubnetMax (flannel
// would fail later with "out of subnets") and any backend other than udp. Errors
// name the field.
func ParseConfig(data []byte) (Config, error) {
	var raw struct {
		Network, SubnetLen, SubnetMin, SubnetMax, Backend json.RawMessage
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return Config{}, fmt.Errorf("not a JSON object of flannel's network config: %w", err)
	}
	var c Config

	if absent(raw.Network) {
		return Config{}, fieldErr("Network", "missing (an IPv4 CIDR such as 100.96.0.0/16 is required)")
	}
	var network string
	if err := json.Unmarshal(raw.Network, &network); err != nil {
		return Config{}, fieldErr("Network", "not a string: %s", raw.Network)
	}
	p, err := netip.ParsePrefix(network)
	if err != nil || !p.Addr().Is4() {
		return Config{}, fieldErr("Network", "%q is not an IPv4 CIDR", network)
	}
	c.Network = p.Masked()
	bits := c.Network.Bits()
	if bits == 0 {
		return Config{}, fieldErr("Network", "%q: a /0 network is not allowed", network)
	}

	if !absent(raw.SubnetLen) {
		if err := json.Unmarshal(raw.SubnetLen, &c.SubnetLen); err != nil {
			return Config{}, fieldErr("SubnetLen", "not an integer: %s", raw.SubnetLen)
		}
	}
	switch {
	case c.SubnetLen < 0:
		return Config{}, fieldErr("SubnetLen", "%d is negative", c.SubnetLen)
	case c.SubnetLen > 30:
		// Each host needs room for a tunnel and a bridge address.
		return Config{}, fieldErr("SubnetLen", "%d: must be at most 30", c.SubnetLen)
	case c.SubnetLen > 0 && c.SubnetLen < bits+2:
		return Config{}, fieldErr("SubnetLen", "%d: Network %s must hold at least four subnets (SubnetLen >= %d)", c.SubnetLen, c.Network, bits+2)
	case c.SubnetLen == 0 && bits > 28:
		return Config{}, fieldErr("Network", "%s is too small: the shortest usable prefix is /28", c.Network)
	case c.SubnetLen == 0 && bits <= 22:
		c.SubnetLen = 24
	case c.SubnetLen == 0:
		c.SubnetLen = bits + 2
	}

	size := uint32(1) << (32 - c.SubnetLen)
	base := u32(c.Network.Addr())
	// uint32 arithmetic wraps for 255.255.0.0/16 exactly as flannel's does.
	c.SubnetMin = addr4(base + size)
	c.SubnetMax = addr4(base + uint32(1)<<(32-bits) - size)
	for _, f := range []struct {
		name string
		raw  json.RawMessage
		dst  *netip.Addr
	}{{"SubnetMin", raw.SubnetMin, &c.SubnetMin}, {"SubnetMax", raw.SubnetMax, &c.SubnetMax}} {
		if absent(f.raw) {
			continue
		}
		var s string
		if err := json.Unmarshal(f.raw, &s); err != nil {
			return Config{}, fieldErr(f.name, "not a string: %s", f.raw)
		}
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is4() {
			return Config{}, fieldErr(f.name, "%q is not an IPv4 address", s)
		}
		if a.IsUnspecified() {
			continue // flannel reads 0.0.0.0 as "not set"
		}
		if !c.Network.Contains(a) {
			return Config{}, fieldErr(f.name, "%s is not inside Network %s", a, c.Network)
		}
		if u32(a)&^(size-1) != u32(a) {
			return Config{}, fieldErr(f.name, "%s is not on a /%d (SubnetLen) boundary", a, c.SubnetLen)
		}
		*f.dst = a
	}
	if u32(c.SubnetMin) > u32(c.SubnetMax) {
		return Config{}, fieldErr("SubnetMin", "%s is above SubnetMax %s", c.SubnetMin, c.SubnetMax)
	}

	c.Backend, c.Port = BackendUDP, encap.DefaultPort
	if !absent(raw.Backend) {
		var be struct {
			Type string
			Port *int
		}
		if err := json.Unmarshal(raw.Backend, &be); err != nil {
			return Config{}, fieldErr("Backend", "not an object with a string Type and an integer Port: %s", raw.Backend)
		}
		if be.Type != "" && !strings.EqualFold(be.Type, BackendUDP) {
			return Config{}, fieldErr("Backend.Type", "%q is not supported: weft implements flannel's udp backend only", be.Type)
		}
		if be.Port != nil && *be.Port != 0 {
			if *be.Port < 1 || *be.Port > 65535 {
				return Config{}, fieldErr("Backend.Port", "%d is not a UDP port", *be.Port)
			}
			c.Port = uint16(*be.Port)
		}
	}
	return c, nil
}

// DefaultConfigJSON is the config weft writes for a fresh network, in the form
// flannel's documentation (and testdata/flannel/etcd-keys.txt) uses.
func DefaultConfigJSON(network netip.Prefix) ([]byte, error) {
	b := fmt.Appendf(nil, `{"Network":%q,"SubnetLen":24,"Backend":{"Type":"udp","Port":%d}}`, network.String(), encap.DefaultPort)
	if _, err := ParseConfig(b); err != nil {
		return nil, fmt.Errorf("default config for %s: %w", network, err)
	}
	return b, nil
}

func absent(raw json.RawMessage) bool {
	return len(raw) == 0 || bytes.Equal(raw, []byte("null"))
}

// fieldErr names the offending field first, so "<key>: <field>: why" reads well
// once the caller has wrapped it with the etcd key.
func fieldErr(field, format string, args ...any) error {
	return fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...))
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

func addr4(u uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], u)
	return netip.AddrFrom4(b)
}
