package main

import "github.com/weft-dev/weft/lease"

// leaseState reports the cluster side for status and metrics: the lease's
// expiry, whether etcd answered the last request, and the lease changes the
// watch delivered. It is a leaseSource.
func (cl *cluster) leaseState() leaseState {
	ignored := make(map[string]uint64, len(lease.IgnoreReasons()))
	for _, r := range lease.IgnoreReasons() {
		ignored[r.String()] = cl.reg.Ignored(r)
	}
	return leaseState{
		Expiry: cl.lease.Expiry(),
		Etcd:   &etcdState{Connected: cl.reg.Connected(), WatchEvents: cl.watchEvents.Load(), IgnoredLeases: ignored},
	}
}
