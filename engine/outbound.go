package engine

import (
	"errors"
	"net/netip"
	"time"

	"github.com/weft-dev/weft/encap"
	"github.com/weft-dev/weft/tun"

	"github.com/weft-dev/weft/ipv4"
)

// outbound carries packets from a TUN queue to the peers: read a batch,
// check each packet (a sane header, a source in this host's subnet) and look
// its destination up, decrement its TTL, and send
// the batch with one sendmmsg. The UDP payload is the buffer the TUN read
// filled: no copy. From a device that hands over super-packets whole
// (tun.Caps.SuperPackets), each is checked and looked up once and cut into
// segments whose payloads stay in the read buffer; only their headers are
// written.
type outbound struct {
	e     *Engine
	dev   tun.Device
	conn  encap.Conn
	stats *counters
	tap   *tapSet // this batch's packet tap: nil unless a dump runs (tap.go)

	bufs  [][]byte
	sizes []int
	msgs  []encap.Message

	gsoDev    tun.Device // dev if it hands over super-packets and they are cut here, else nil
	gso       []tun.GSO
	segs      []tun.Segment
	heads     []byte // segment headers of the messages queued in msgs
	headsUsed int    // segments whose headers are in heads

	limit   rateLimit
	icmp    [][]byte // buffers for ICMP answers
	replies [][]byte // the answers of this batch, slices of icmp
}

// outboundSegments is how many segments one send carries at most when
// super-packets are cut: a few super-packets' worth.
const outboundSegments = 4 * tun.MaxSegments

func (e *Engine) newOutbound(q Queue) *outbound {
	caps := q.Dev.Caps()
	batch := min(e.cfg.BatchSize, caps.Batch)
	o := &outbound{
		e:       e,
		dev:     q.Dev,
		conn:    q.Conn,
		stats:   e.newCounters(false),
		sizes:   make([]int, batch),
		icmp:    newBuffers(icmpBurst, icmpMaxLen),
		replies: make([][]byte, 0, icmpBurst),
	}
	if caps.SuperPackets && e.cfg.ZeroCopySend {
		o.gsoDev = q.Dev
		o.bufs = newBuffers(batch, max(e.cfg.MaxPacket, caps.ReadSize))
		o.gso = make([]tun.GSO, batch)
		o.segs = make([]tun.Segment, tun.MaxSegments)
		o.msgs = make([]encap.Message, 0, max(batch, outboundSegments))
		o.heads = make([]byte, cap(o.msgs)*tun.MaxHeader)
		return o
	}
	o.bufs = newBuffers(batch, max(e.cfg.MaxPacket, caps.ReadSize))
	o.msgs = make([]encap.Message, 0, batch)
	return o
}

func (o *outbound) read() (int, error) {
	if o.gsoDev != nil {
		return o.gsoDev.ReadGSO(o.bufs, o.sizes, o.gso, tun.Headroom)
	}
	return o.dev.Read(o.bufs, o.sizes, tun.Headroom)
}

// step forwards one batch. It returns an error only when the TUN cannot be read.
func (o *outbound) step() error {
	n, err := o.read()
	if errors.Is(err, tun.ErrDropped) {
		o.stats.drops[DropBadGSO].Add(1)
		return nil
	}
	if err != nil {
		return err
	}
	o.stats.batches.observe(n)
	o.tap = o.e.activeTap()
	o.tap.tunIn(o.bufs[:n], o.sizes, tun.Headroom)
	table := o.e.routes.Load()
	msgs := o.msgs[:0]
	o.headsUsed = 0
	replies := o.replies[:0]
	for i := range n {
		pkt := o.bufs[i][tun.Headroom : tun.Headroom+o.sizes[i]]
		total, drop := checkIPv4(pkt, false)
		if o.gsoDev != nil && o.gso[i].Kind == tun.GSOInvalid {
			drop = DropBadGSO
		}
		if drop == DropNone && !o.e.inSubnet(ipv4.Src(pkt)) {
			// Not from one of our pods: no answer either, it would go
			// to an address that is not ours.
			drop = DropForeignSource
		}
		var r *Route
		if drop == DropNone {
			pkt = pkt[:total]
			r = table.Lookup(ipv4.Dst(pkt))
			switch {
			case r == nil:
				drop = DropNoRoute
				// Ask the rate limit last: a packet that gets no answer
				// must not spend the token of one that does.
				if len(replies) < cap(replies) && answerable(pkt) && o.limit.allow(time.Now()) {
					buf := o.icmp[len(replies)]
					if m := netUnreachable(buf[tun.Headroom:], pkt); m > 0 {
						replies = append(replies, buf[:tun.Headroom+m])
					}
				}
			case pkt[ipv4.OffTTL] <= 1:
				drop = DropTTLExpired
			}
		}
		if drop != DropNone {
			o.stats.drops[drop].Add(1)
			o.tap.drop(pkt, drop)
			continue
		}
		decrementTTL(pkt)
		if o.gsoDev != nil && o.gso[i].Kind != tun.GSONone {
			msgs = o.split(msgs, pkt, o.gso[i], r.Peer)
			continue
		}
		if len(msgs) == cap(msgs) {
			o.send(msgs)
			msgs, o.headsUsed = msgs[:0], 0
		}
		msgs = append(msgs, encap.Message{Buf: pkt, Addr: r.Peer})
	}
	o.send(msgs)
	if len(replies) > 0 {
		o.tap.tunOut(replies, tun.Headroom)
		sent, err := o.dev.Write(replies, tun.Headroom)
		o.stats.icmp.Add(uint64(sent))
		_ = err // an answer that cannot be written is not worth more than its count
	}
	return nil
}

// split appends to msgs the segments of the super-packet pkt, each its own
// headers plus a slice of pkt's payload. When they might not fit, what is
// queued is sent first; a super-packet of more segments than one send
// carries (a small MSS) is cut window by window.
func (o *outbound) split(msgs []encap.Message, pkt []byte, g tun.GSO, peer netip.AddrPort) []encap.Message {
	for first := 0; ; {
		if len(msgs)+tun.MaxSegments > cap(msgs) {
			o.send(msgs)
			msgs, o.headsUsed = msgs[:0], 0
		}
		n, total, err := tun.SplitFrom(pkt, g, first, o.heads[o.headsUsed*tun.MaxHeader:], o.segs)
		if err != nil {
			o.stats.drops[DropBadGSO].Add(1)
			return msgs
		}
		o.headsUsed += n
		for _, s := range o.segs[:n] {
			msgs = append(msgs, encap.Message{Head: s.Head, Buf: s.Payload, Addr: peer})
		}
		if first += n; first >= total {
			return msgs
		}
	}
}

// send sends msgs; a datagram the socket refuses is dropped and counted and
// the rest still go.
func (o *outbound) send(msgs []encap.Message) {
	o.tap.wireOut(o.conn, msgs)
	for len(msgs) > 0 {
		n, err := o.conn.WriteBatch(msgs)
		o.e.routeStats.countSent(msgs[:n]) // what the socket took, not what it refused
		var bytes uint64
		for _, m := range msgs[:n] {
			bytes += uint64(len(m.Head) + len(m.Buf))
		}
		o.stats.packets.Add(uint64(n))
		o.stats.bytes.Add(bytes)
		if err == nil {
			return
		}
		o.stats.drops[DropSendError].Add(1)
		o.tap.dropSent(o.conn, &msgs[n], DropSendError)
		msgs = msgs[n+1:]
	}
}
