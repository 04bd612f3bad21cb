package engine

import (
	"net/netip"
	"time"

	"github.com/weft-dev/weft/encap"
)

// The calls the forwarding loops make into the tap. Each loop loads the set
// of running dumps once per batch (activeTap) and hands it to these methods,
// which are small enough to be inlined: on a nil set, the idle case, each
// is one compare of a pointer already in a register or the loop's struct.

// activeTap returns the running dumps, nil while there are none. It is the
// one atomic load the tap costs a batch.
func (e *Engine) activeTap() *tapSet {
	if !tapBuilt {
		return nil
	}
	return e.tap.active.Load()
}

// tunIn offers the packets of a TUN read: packet i is bufs[i][offset:offset+sizes[i]].
func (s *tapSet) tunIn(bufs [][]byte, sizes []int, offset int) {
	if tapBuilt && s != nil {
		s.tunInSlow(bufs, sizes, offset)
	}
}

func (s *tapSet) tunInSlow(bufs [][]byte, sizes []int, offset int) {
	now := time.Now()
	for i, b := range bufs {
		s.capture(StageTUNIn, DropNone, nil, b[offset:offset+sizes[i]], netip.AddrPort{}, netip.AddrPort{}, now)
	}
}

// tunOut offers packets about to be written to the TUN, each bufs[i][offset:].
func (s *tapSet) tunOut(bufs [][]byte, offset int) {
	if tapBuilt && s != nil {
		s.tunOutSlow(bufs, offset)
	}
}

func (s *tapSet) tunOutSlow(bufs [][]byte, offset int) {
	now := time.Now()
	for _, b := range bufs {
		s.capture(StageTUNOut, DropNone, nil, b[offset:], netip.AddrPort{}, netip.AddrPort{}, now)
	}
}

// wireOut offers datagrams about to be sent on conn.
func (s *tapSet) wireOut(conn encap.Conn, msgs []encap.Message) {
	if tapBuilt && s != nil {
		s.wireOutSlow(conn, msgs)
	}
}

func (s *tapSet) wireOutSlow(conn encap.Conn, msgs []encap.Message) {
	now, local := time.Now(), localAddr(conn)
	for i := range msgs {
		m := &msgs[i]
		s.capture(StageWireOut, DropNone, m.Head, m.Buf, local, m.Addr, now)
	}
}

// wireIn offers datagrams received on conn.
func (s *tapSet) wireIn(conn encap.Conn, msgs []encap.Message) {
	if tapBuilt && s != nil {
		s.wireInSlow(conn, msgs)
	}
}

func (s *tapSet) wireInSlow(conn encap.Conn, msgs []encap.Message) {
	now, local := time.Now(), localAddr(conn)
	for i := range msgs {
		m := &msgs[i]
		s.capture(StageWireIn, DropNone, nil, m.Buf[:m.N], m.Addr, local, now)
	}
}

// drop offers a packet from the TUN dropped for why.
func (s *tapSet) drop(pkt []byte, why Drop) {
	if tapBuilt && s != nil {
		s.dropSlow(pkt, why)
	}
}

// tapDrops offers the datagrams of a received batch that were not
// forwarded, each with the reason admit gives again. It runs after the
// loop, not in it, and outside the inlined hooks: a tap call on the loop's
// drop path, however cold, or an inlined one with many arguments after it,
// cost every packet about a nanosecond (the loop's registers). out holds
// the packets forwarded, in order; each shares the end of its buffer with
// its message's Buf, which is how they are told apart.
func (in *inbound) tapDrops(t *Table, n int, out [][]byte) {
	if tapBuilt && in.tap != nil && len(out) < n {
		in.tapDropsSlow(t, n, out)
	}
}

//go:noinline
func (in *inbound) tapDropsSlow(t *Table, n int, out [][]byte) {
	in.tap.dropsReceivedSlow(in.e, t, in.conn, in.msgs[:n], out)
}

func (s *tapSet) dropsReceivedSlow(e *Engine, t *Table, conn encap.Conn, msgs []encap.Message, out [][]byte) {
	now, local := time.Now(), localAddr(conn)
	j := 0
	for i := range msgs {
		m := &msgs[i]
		if j < len(out) && bufferEnd(out[j]) == bufferEnd(m.Buf) {
			j++
			continue
		}
		if _, why := e.admitReceived(t, m); why != DropNone {
			s.capture(StageDrop, why, nil, m.Buf[:m.N], m.Addr, local, now)
		}
	}
}

// bufferEnd is the address of the last byte of b's capacity.
func bufferEnd(b []byte) *byte {
	if cap(b) == 0 {
		return nil
	}
	return &b[:cap(b)][cap(b)-1]
}

// dropSent offers a datagram conn refused to send.
func (s *tapSet) dropSent(conn encap.Conn, m *encap.Message, why Drop) {
	if tapBuilt && s != nil {
		s.dropSentSlow(conn, m, why)
	}
}

func (s *tapSet) dropSlow(pkt []byte, why Drop) {
	s.capture(StageDrop, why, nil, pkt, netip.AddrPort{}, netip.AddrPort{}, time.Now())
}

func (s *tapSet) dropSentSlow(conn encap.Conn, m *encap.Message, why Drop) {
	s.capture(StageDrop, why, m.Head, m.Buf, localAddr(conn), m.Addr, time.Now())
}

// localAddr is the address conn is bound to, the source of what it sends,
// if it can say; encap.Conn does not require it, and fakes need not.
func localAddr(conn encap.Conn) netip.AddrPort {
	if c, ok := conn.(interface{ LocalAddr() netip.AddrPort }); ok {
		return c.LocalAddr()
	}
	return netip.AddrPort{}
}
