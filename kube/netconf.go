package kube

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/weft-dev/weft/lease"
)

// DefaultNetConfPath is flanneld's --net-config-path default, where
// kube-flannel's ConfigMap is mounted.
const DefaultNetConfPath = "/etc/kube-flannel/net-conf.json"

// ParseNetConf decodes flannel's net-conf.json. It is the network config of
// etcd mode (lease.ParseConfig: same fields, defaults and checks; SubnetLen,
// SubnetMin and SubnetMax are checked but unused, the subnet being the
// Node's podCIDR) plus kube mode's address families: EnableIPv4 absent or
// true, EnableIPv6 absent or false. weft forwards IPv4 only, so it refuses
// a config that asks for IPv6 or turns IPv4 off rather than run half of it.
func ParseNetConf(data []byte) (lease.Config, error) {
	var fam struct {
		EnableIPv4  *bool
		EnableIPv6  *bool
		IPv6Network *string
	}
	if err := json.Unmarshal(data, &fam); err != nil {
		return lease.Config{}, fmt.Errorf("not a JSON object of flannel's network config: %w", err)
	}
	if fam.EnableIPv4 != nil && !*fam.EnableIPv4 {
		return lease.Config{}, fmt.Errorf("EnableIPv4: false is not supported: weft forwards IPv4 only")
	}
	if fam.EnableIPv6 != nil && *fam.EnableIPv6 {
		return lease.Config{}, fmt.Errorf("EnableIPv6: true is not supported: weft's udp backend is IPv4 only, as flannel's")
	}
	return lease.ParseConfig(data)
}

// ReadNetConf reads and parses the net-conf.json at path.
func ReadNetConf(path string) (lease.Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return lease.Config{}, fmt.Errorf("net config: %w", err)
	}
	c, err := ParseNetConf(b)
	if err != nil {
		return lease.Config{}, fmt.Errorf("net config %s: %w", path, err)
	}
	return c, nil
}
