package lease

import (
	"fmt"
	"net/netip"
	"sync/atomic"
)

// IgnoreReason says why WatchRoutes left a well-formed lease out of the routes.
// A lease the network config could never have granted must not become a
// route: a key such as 8.8.8.0-24 would send that traffic into the overlay,
// and widen the inner sources its host may claim.
type IgnoreReason int8

const (
	// IgnoredOutsideNetwork: the subnet is not inside the config's Network.
	IgnoredOutsideNetwork IgnoreReason = iota
	// IgnoredSubnetLen: the subnet is inside Network but its prefix length
	// is not the config's SubnetLen.
	IgnoredSubnetLen

	numIgnoreReasons
)

func (r IgnoreReason) String() string {
	switch r {
	case IgnoredOutsideNetwork:
		return "outside_network"
	case IgnoredSubnetLen:
		return "subnet_len"
	}
	return fmt.Sprintf("IgnoreReason(%d)", int8(r))
}

// IgnoreReasons lists every reason, for a metric that exports each, zero or not.
func IgnoreReasons() []IgnoreReason {
	return []IgnoreReason{IgnoredOutsideNetwork, IgnoredSubnetLen}
}

// ignoredCounts counts the leases WatchRoutes ignored, by reason.
type ignoredCounts [numIgnoreReasons]atomic.Uint64

// Ignored counts the leases WatchRoutes left out for reason; each (key,
// revision) counts once, so a re-list does not count the same key again.
func (r *Registry) Ignored(reason IgnoreReason) uint64 {
	if reason < 0 || reason >= numIgnoreReasons {
		return 0
	}
	return r.ignored[reason].Load()
}

// misfit says why the config could never have granted subnet, if so.
func (c Config) misfit(subnet netip.Prefix) (IgnoreReason, bool) {
	switch {
	case !c.Network.Contains(subnet.Addr()) || subnet.Bits() < c.Network.Bits():
		return IgnoredOutsideNetwork, true
	case subnet.Bits() != c.SubnetLen:
		return IgnoredSubnetLen, true
	}
	return 0, false
}
