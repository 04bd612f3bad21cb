package engine

import (
	"time"

	"github.com/weft-dev/weft/encap"
	"github.com/weft-dev/weft/tun"
)

// outbound carries packets from a TUN queue to the peers: read a batch,
// check each packet and look its destination up, decrement its TTL, and send
// the batch with one sendmmsg. The UDP payload is the buffer the TUN read
// filled: no copy.
type outbound struct {
	e     *Engine
	dev   tun.Device
	conn  encap.Conn
	stats *counters

	bufs  [][]byte
	sizes []int
	msgs  []encap.Message

	limit   rateLimit
	icmp    [][]byte // buffers for ICMP answers
	replies [][]byte // the answers of this batch, slices of icmp
}

func (e *Engine) newOutbound(q Queue) *outbound {
	batch := min(e.cfg.BatchSize, q.Dev.BatchSize())
	return &outbound{
		e:       e,
		dev:     q.Dev,
		conn:    q.Conn,
		stats:   e.newCounters(false),
		bufs:    newBuffers(batch, e.cfg.MaxPacket),
		sizes:   make([]int, batch),
		msgs:    make([]encap.Message, 0, batch),
		icmp:    newBuffers(icmpBurst, icmpMaxLen),
		replies: make([][]byte, 0, icmpBurst),
	}
}

// step forwards one batch. It returns an error only when the TUN cannot be read.
func (o *outbound) step() error {
	n, err := o.dev.Read(o.bufs, o.sizes, tun.Headroom)
	if err != nil {
		return err
	}
	table := o.e.routes.Load()
	msgs := o.msgs[:0]
	replies := o.replies[:0]
	for i := range n {
		pkt := o.bufs[i][tun.Headroom : tun.Headroom+o.sizes[i]]
		total, drop := checkIPv4(pkt, false)
		var r *Route
		if drop == DropNone {
			pkt = pkt[:total]
			r = table.Lookup(ipv4Dst(pkt))
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
			case pkt[offTTL] <= 1:
				drop = DropTTLExpired
			}
		}
		if drop != DropNone {
			o.stats.drops[drop].Add(1)
			continue
		}
		decrementTTL(pkt)
		msgs = append(msgs, encap.Message{Buf: pkt, Addr: r.Peer})
	}
	o.send(msgs)
	if len(replies) > 0 {
		sent, err := o.dev.Write(replies, tun.Headroom)
		o.stats.icmp.Add(uint64(sent))
		_ = err // an answer that cannot be written is not worth more than its count
	}
	return nil
}

// send sends msgs; a datagram the socket refuses is dropped and counted and
// the rest still go.
func (o *outbound) send(msgs []encap.Message) {
	for len(msgs) > 0 {
		n, err := o.conn.WriteBatch(msgs)
		var bytes uint64
		for _, m := range msgs[:n] {
			bytes += uint64(len(m.Buf))
		}
		o.stats.packets.Add(uint64(n))
		o.stats.bytes.Add(bytes)
		if err == nil {
			return
		}
		o.stats.drops[DropSendError].Add(1)
		msgs = msgs[n+1:]
	}
}
