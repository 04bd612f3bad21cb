// Package lease keeps one host's subnet lease in etcd, in flannel's schema, and
// reports the other hosts' leases as routes.
//
// It is wire- and etcd-compatible with flanneld's udp backend: it reads and
// validates <prefix>/config with flannel's rules, holds a lease on
// <prefix>/subnets/<a.b.c.d>-<len> attached to an etcd lease, renews it before it
// expires, watches <prefix>/subnets/ and writes the subnet.env file that
// flannel's CNI plugin reads. It can also run a single-member etcd in-process.
//
// A typical host (what cmd/weftd does):
//
//	reg, err := lease.Open(lease.Options{Endpoints: eps, Logger: log})
//	cfg, err := reg.WaitConfig(ctx)                 // until <prefix>/config exists
//	prev, _ := lease.PreviousSubnet(subnetFile)     // zero Prefix if none
//	l, err := reg.Acquire(ctx, cfg, publicIP, prev) // l.Origin says how
//	go l.Keep(ctx)                                  // renews; never revokes
//	err = lease.WriteSubnetFile(subnetFile, lease.SubnetFile{
//		Network: cfg.Network, Subnet: l.Subnet, MTU: mtu, IPMasq: ipMasq})
//	for b := range reg.WatchRoutes(ctx, cfg) {      // the full table first
//		apply(b.Routes)
//	}
//
// reg.Connected, reg.Malformed, reg.Ignored and l.Expiry are there for health
// checks and metrics. With --embedded-etcd, StartEtcd runs the server and
// reg.WriteDefaultConfig seeds the config.
//
// The package emits route changes; it never programs a dataplane itself.
package lease
