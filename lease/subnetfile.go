package lease

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// DefaultSubnetFile is where flanneld writes, and flannel's CNI plugin reads, the
// host's subnet.
const DefaultSubnetFile = "/run/flannel/subnet.env"

// SubnetFile is the content of flannel's subnet.env.
type SubnetFile struct {
	Network netip.Prefix // FLANNEL_NETWORK: the whole overlay
	// Subnet is this host's subnet, masked (100.96.1.0/24). The file holds its
	// first address instead (FLANNEL_SUBNET=100.96.1.1/24), as flannel writes it.
	Subnet netip.Prefix
	MTU    int  // FLANNEL_MTU: the TUN's MTU, which pods should use too
	IPMasq bool // FLANNEL_IPMASQ
}

// Marshal renders f byte for byte as flanneld does: the four variables in this
// order, one per line, with a trailing newline. flannel's CNI plugin parses it.
func (f SubnetFile) Marshal() ([]byte, error) {
	if !f.Network.IsValid() || !f.Network.Addr().Is4() {
		return nil, fmt.Errorf("subnet file: FLANNEL_NETWORK %v is not an IPv4 network", f.Network)
	}
	// A /31 or /32 has no first address distinct from the network address;
	// flannel's SubnetLen never goes past 30 anyway.
	if !f.Subnet.IsValid() || !f.Subnet.Addr().Is4() || f.Subnet.Bits() > 30 {
		return nil, fmt.Errorf("subnet file: FLANNEL_SUBNET %v is not an IPv4 subnet of /30 or wider", f.Subnet)
	}
	if f.MTU <= 0 || f.MTU > 65535 {
		return nil, fmt.Errorf("subnet file: FLANNEL_MTU %d is out of range", f.MTU)
	}
	first := f.Subnet.Masked().Addr().Next()
	return fmt.Appendf(nil, "FLANNEL_NETWORK=%s\nFLANNEL_SUBNET=%s/%d\nFLANNEL_MTU=%d\nFLANNEL_IPMASQ=%t\n",
		f.Network.Masked(), first, f.Subnet.Bits(), f.MTU, f.IPMasq), nil
}

// WriteSubnetFile replaces path with f atomically: a reader (the CNI plugin,
// run at any moment by the kubelet) sees the old file or the new one, never a
// part. It writes a temporary file in the same directory, fsyncs it, renames
// it over path and fsyncs the directory so the rename survives a crash. The
// directory is created if needed; the file gets mode 0644, as flannel's.
func WriteSubnetFile(path string, f SubnetFile) error {
	b, err := f.Marshal()
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(b); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	done = true
	if d, err := os.Open(dir); err == nil {
		// Best effort: some filesystems refuse fsync on a directory, and the
		// file is already in place for every reader.
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// ReadSubnetFile reads a subnet.env written by flanneld or weft, typically to
// find the host's previous subnet (Subnet). A missing file is an error that
// matches fs.ErrNotExist.
func ReadSubnetFile(path string) (SubnetFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return SubnetFile{}, fmt.Errorf("read subnet file: %w", err)
	}
	f, err := ParseSubnetFile(b)
	if err != nil {
		return SubnetFile{}, fmt.Errorf("read %s: %w", path, err)
	}
	return f, nil
}

// ParseSubnetFile parses subnet.env in the dotenv dialect flannel reads it with
// (godotenv): KEY=VALUE lines, blank lines, # comments, an optional "export "
// prefix, optional single or double quotes, a " #" comment after an unquoted
// value; the last of repeated keys wins. Unknown keys (FLANNEL_IPV6_*) are
// ignored and absent ones stay zero, so a file without FLANNEL_SUBNET yields an
// invalid Subnet. Subnet and Network come back masked.
func ParseSubnetFile(data []byte) (SubnetFile, error) {
	var f SubnetFile
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			return SubnetFile{}, fmt.Errorf("line %d: no '=' in %q", n, line)
		}
		key, val = strings.TrimSpace(key), unquote(strings.TrimSpace(val))
		switch key {
		case "FLANNEL_NETWORK", "FLANNEL_SUBNET":
			p, err := netip.ParsePrefix(val)
			if err != nil || !p.Addr().Is4() {
				return SubnetFile{}, fmt.Errorf("line %d: %s=%q is not an IPv4 CIDR", n, key, val)
			}
			if key == "FLANNEL_NETWORK" {
				f.Network = p.Masked()
			} else {
				f.Subnet = p.Masked()
			}
		case "FLANNEL_MTU":
			mtu, err := strconv.Atoi(val)
			if err != nil || mtu <= 0 || mtu > 65535 {
				return SubnetFile{}, fmt.Errorf("line %d: %s=%q is not an MTU", n, key, val)
			}
			f.MTU = mtu
		case "FLANNEL_IPMASQ":
			b, err := strconv.ParseBool(val)
			if err != nil {
				return SubnetFile{}, fmt.Errorf("line %d: %s=%q is not a boolean", n, key, val)
			}
			f.IPMasq = b
		}
	}
	if err := sc.Err(); err != nil {
		return SubnetFile{}, err
	}
	return f, nil
}

func unquote(v string) string {
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') {
		if end := strings.IndexByte(v[1:], v[0]); end >= 0 {
			return v[1 : 1+end]
		}
	}
	if i := strings.Index(v, " #"); i >= 0 {
		v = strings.TrimSpace(v[:i])
	}
	return v
}

var errNoSubnet = errors.New("no FLANNEL_SUBNET")

// PreviousSubnet returns the subnet a subnet file names, for Acquire. It is a
// convenience over ReadSubnetFile for the common "use it if it is there" case:
// a missing, unreadable or malformed file, or one without FLANNEL_SUBNET, gives
// the zero Prefix and the reason (fs.ErrNotExist for a missing file).
func PreviousSubnet(path string) (netip.Prefix, error) {
	f, err := ReadSubnetFile(path)
	if err != nil {
		return netip.Prefix{}, err
	}
	if !f.Subnet.IsValid() {
		return netip.Prefix{}, fmt.Errorf("read %s: %w", path, errNoSubnet)
	}
	return f.Subnet, nil
}
