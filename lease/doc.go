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
//	cfg, err := reg.WaitConfig(ctx)              // blocks until <prefix>/config exists
//	prev, _ := lease.ReadSubnetFile(path)       // previous subnet, if any
//	l, err := reg.Acquire(ctx, cfg, publicIP, prev.Subnet)
//	go l.Keep(ctx)                               // renews; never revokes
//	err = lease.WriteSubnetFile(path, lease.SubnetFile{...})
//	for b := range reg.WatchRoutes(ctx) { apply(b.Routes) }
//
// The package emits route changes; it never programs a dataplane itself.
package lease
