package main

// leaseState reports the cluster side for status and metrics: the lease's
// expiry, whether etcd answered the last request, and the lease changes the
// watch delivered. It is a leaseSource.
func (cl *cluster) leaseState() leaseState {
	return leaseState{
		Expiry: cl.lease.Expiry(),
		Etcd:   &etcdState{Connected: cl.reg.Connected(), WatchEvents: cl.watchEvents.Load()},
	}
}
