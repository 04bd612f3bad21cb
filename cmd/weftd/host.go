package main

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weft-dev/weft/control"
	"github.com/weft-dev/weft/encap"
	"github.com/weft-dev/weft/engine"
	"github.com/weft-dev/weft/lease"
)

// hostState is what weftd knows of itself, for the metrics and the control
// socket. Its fields are set before either starts; the sockets are added as
// they open (addConn) and the lease, in etcd mode, once held (setLease).
type hostState struct {
	eng        *engine.Engine
	started    time.Time
	network    netip.Prefix
	subnet     netip.Prefix
	publicIP   netip.Addr
	tun        string
	mtu        int
	workers    int
	batch      int
	tunOffload bool

	mu    sync.Mutex
	conns []*encap.UDPConn

	lease atomic.Pointer[leaseSource]
}

// leaseState is what the etcd side knows: the lease's expiry (zero if not
// known) and, if Etcd is set, the link to etcd.
type (
	leaseState = lease.Status
	etcdState  = lease.EtcdStatus
)

// leaseSource reports the lease's state when asked: at each scrape and
// status request. It must be cheap and safe for concurrent use.
type leaseSource func() leaseState

// setLease plugs in the etcd side. Until it is called (and in static
// mode, never) status and metrics say nothing of a lease or of etcd: there
// is nothing to say, and nothing is made up.
func (h *hostState) setLease(f leaseSource) { h.lease.Store(&f) }

// leaseState returns the lease's state, or false in static mode.
func (h *hostState) leaseState() (leaseState, bool) {
	f := h.lease.Load()
	if f == nil || *f == nil {
		return leaseState{}, false
	}
	return (*f)(), true
}

// addConn records a worker's socket, for its offloads and fallbacks.
func (h *hostState) addConn(c *encap.UDPConn) {
	h.mu.Lock()
	h.conns = append(h.conns, c)
	h.mu.Unlock()
}

// offloads reports the segmentation offloads in use: UDP ones only if every
// socket has them (a socket turns GSO off for good when the kernel refuses it).
func (h *hostState) offloads() control.Offloads {
	h.mu.Lock()
	defer h.mu.Unlock()
	o := control.Offloads{TUN: h.tunOffload, UDPGSO: len(h.conns) > 0, UDPGRO: len(h.conns) > 0}
	for _, c := range h.conns {
		gso, gro := c.Offloads()
		o.UDPGSO = o.UDPGSO && gso
		o.UDPGRO = o.UDPGRO && gro
		o.GSOFallbacks += c.GSORefused() + c.GSOSplit()
	}
	return o
}

// port is the UDP port the sockets are bound to (0 before the first opens).
func (h *hostState) port() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.conns) == 0 {
		return 0
	}
	return int(h.conns[0].LocalAddr().Port())
}

// status answers `weft status`.
func (h *hostState) status() *control.Status {
	now := time.Now()
	s := h.eng.Stats()
	ds := h.eng.DumpStats()
	table := h.eng.Routes()
	st := &control.Status{
		Time:     now,
		Started:  h.started,
		Mode:     "static",
		Network:  h.network.String(),
		Subnet:   h.subnet.String(),
		PublicIP: h.publicIP.String(),
		Port:     h.port(),
		TUN:      h.tun,
		MTU:      h.mtu,
		Workers:  h.workers,
		Batch:    h.batch,
		Offloads: h.offloads(),
		Routes:   table.Len(),
		Peers:    table.PeerCount(),
		Counters: control.Counters{
			TxPackets: s.TxPackets, TxBytes: s.TxBytes,
			RxPackets: s.RxPackets, RxBytes: s.RxBytes,
			ICMPSent: s.ICMPSent,
			Drops:    map[string]uint64{},
		},
		Dumps: control.Dumps{Active: ds.Active, Captured: ds.Captured, Dropped: ds.Dropped},
	}
	for _, d := range engine.DropReasons() {
		st.Counters.Drops[d.String()] = s.Dropped(d)
	}
	if ls, ok := h.leaseState(); ok {
		st.Mode = "etcd"
		if ls.Mode != "" {
			st.Mode = ls.Mode
		}
		if !ls.Expiry.IsZero() {
			st.Lease = &control.Lease{Expiry: ls.Expiry}
		}
		if ls.Etcd != nil {
			st.Etcd = &control.Etcd{Connected: ls.Etcd.Connected, WatchEvents: ls.Etcd.WatchEvents}
		}
	}
	return st
}

// routes answers `weft routes`.
func (h *hostState) routes() []control.Route {
	rs := h.eng.RouteStats()
	out := make([]control.Route, 0, len(rs))
	for _, r := range rs {
		out = append(out, control.Route{
			Subnet: r.Subnet.String(), Peer: r.Peer.String(), Since: r.Since,
			TxPackets: r.TxPackets, TxBytes: r.TxBytes, RxPackets: r.RxPackets, RxBytes: r.RxBytes,
		})
	}
	return out
}
