package engine

import (
	"net/netip"

	"github.com/weft-dev/weft/encap"
	"github.com/weft-dev/weft/tun"

	"github.com/weft-dev/weft/ipv4"
)

// inbound carries datagrams from the peers to a TUN queue: receive a batch
// with one recvmmsg, admit each inner packet (from a peer's address and
// port, source in that peer's subnet, destination in ours, sane header),
// decrement its TTL, and write the batch to the TUN. The packet written is the buffer the datagram
// was received into: no copy.
type inbound struct {
	e     *Engine
	dev   tun.Device
	conn  encap.Conn
	stats *counters
	tap   *tapSet // this batch's packet tap: nil unless a dump runs (tap.go)

	bufs [][]byte
	msgs []encap.Message
	out  [][]byte
}

func (e *Engine) newInbound(q Queue) *inbound {
	batch := e.cfg.BatchSize
	in := &inbound{
		e:     e,
		dev:   q.Dev,
		conn:  q.Conn,
		stats: e.newCounters(true),
		bufs:  newBuffers(batch, max(e.cfg.MaxPacket, q.Dev.Caps().WriteSize)),
		msgs:  make([]encap.Message, batch),
		out:   make([][]byte, 0, batch),
	}
	for i := range in.msgs {
		// A peer may send MaxPacket; the rest of the buffer is the
		// device's room to coalesce into (tun.Caps.WriteSize).
		in.msgs[i].Buf = in.bufs[i][tun.Headroom : tun.Headroom+e.cfg.MaxPacket]
	}
	return in
}

// step forwards one batch. It returns an error only when the socket cannot be read.
func (in *inbound) step() error {
	if in.e.cfg.ZeroCopyReceive {
		// The socket pointed the messages at its own buffers last time.
		for i := range in.msgs {
			in.msgs[i].Buf = in.bufs[i][tun.Headroom : tun.Headroom+in.e.cfg.MaxPacket]
		}
	}
	n, err := in.conn.ReadBatch(in.msgs)
	if err != nil {
		return err
	}
	in.stats.batches.observe(n)
	in.tap = in.e.activeTap()
	in.tap.wireIn(in.conn, in.msgs[:n])
	table := in.e.routes.Load()
	out := in.out[:0]
	var bytes uint64
	for i := range n {
		m := &in.msgs[i]
		pkt := m.Buf[:m.N]
		total, drop := in.e.admitReceived(table, m)
		if drop != DropNone {
			in.stats.drops[drop].Add(1)
			continue
		}
		decrementTTL(pkt)
		if in.e.cfg.ZeroCopyReceive {
			out = append(out, pkt[:total])
		} else {
			out = append(out, in.bufs[i][:tun.Headroom+total])
		}
		bytes += uint64(total)
	}
	in.tapDrops(table, n, out)
	if len(out) == 0 {
		return nil
	}
	offset := tun.Headroom
	if in.e.cfg.ZeroCopyReceive {
		offset = 0 // the packets have no room in front: the device needs none
	}
	in.e.routeStats.countReceived(out, offset)
	in.tap.tunOut(out, offset)
	written, err := in.dev.Write(out, offset)
	if err != nil {
		// Some packets were refused; the device says how many it knows
		// written. Count the rest, never log per packet.
		in.stats.drops[DropTUNWriteError].Add(uint64(len(out) - written))
		// Which ones failed is unknown: count bytes as if the
		// written ones were of average size.
		bytes = bytes * uint64(written) / uint64(len(out))
	}
	in.stats.packets.Add(uint64(written))
	in.stats.bytes.Add(bytes)
	return nil
}

// admitReceived is admit for a received datagram: one cut short, or (a
// zero-copy receive can hand over more) one past MaxPacket, which the TUN's
// MTU would refuse, is truncated. The dump's drop stage asks it too.
func (e *Engine) admitReceived(t *Table, m *encap.Message) (int, Drop) {
	total, drop := e.admit(t, m.Buf[:m.N], m.Addr)
	if m.Truncated || m.N > e.cfg.MaxPacket {
		drop = DropTruncated
	}
	return total, drop
}

// admit decides whether a datagram's payload pkt, from the peer address
// and port from, may go into the TUN, and returns the inner packet's length.
//
// A peer is known by its address and its port: flanneld and weftd send from
// the port they listen on, so a datagram from a peer's address on another
// port is some other process on that host (or one of its pods, masqueraded
// to its address) and may not speak for the peer's pods.
func (e *Engine) admit(t *Table, pkt []byte, from netip.AddrPort) (int, Drop) {
	if len(pkt) < ipv4.MinHeaderLen {
		return 0, DropTruncated
	}
	owner := t.Lookup(ipv4.Src(pkt))
	spoofed := owner == nil || owner.Peer != from
	if spoofed {
		switch {
		case !t.IsPeer(from.Addr()):
			return 0, DropUnknownPeer
		case !t.IsPeerPort(from):
			return 0, DropWrongPeerPort
		}
	}
	total, drop := checkIPv4(pkt, true)
	switch {
	case drop != DropNone:
		return 0, drop
	case spoofed:
		return 0, DropSpoofedSource
	case !e.inSubnet(ipv4.Dst(pkt)):
		return 0, DropNotLocal
	case pkt[ipv4.OffTTL] <= 1:
		return 0, DropTTLExpired
	}
	return total, DropNone
}
