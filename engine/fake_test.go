package engine

import (
	"errors"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weft-dev/weft/encap"
	"github.com/weft-dev/weft/tun"
)

// In-memory stand-ins for the kernel, after wireguard-go's tun/tuntest and
// conn/bindtest: a test pushes what the kernel would hand over into a
// channel, and the fakes record what the engine gave back.

var errRefused = errors.New("fake: refused")

// deviceRead is what one Read of a fakeDevice returns.
type deviceRead struct {
	pkts [][]byte
	err  error
}

// fakeDevice is a tun.Device. Each Read takes one batch pushed with push (or
// an error pushed with fail), copies it into the caller's buffers as the
// kernel would (cutting packets that do not fit), and remembers where.
// Write records a copy of each packet and where it was, skipping those
// refuse is true for.
type fakeDevice struct {
	batch  int
	reads  chan deviceRead
	closed chan struct{}
	once   sync.Once
	isShut atomic.Bool
	stop   readStop

	// refuse, if set before use, makes Write refuse the packets it is true for.
	refuse func(pkt []byte) bool

	mu        sync.Mutex
	readAt    []*byte  // where the last Read put each packet
	readBuf   [][]byte // and the buffers it put them in, from there on
	written   [][]byte
	writtenAt []*byte
	writes    int // Write calls
}

var _ tun.Device = (*fakeDevice)(nil)

func newFakeDevice(batch int) *fakeDevice {
	return &fakeDevice{batch: batch, reads: make(chan deviceRead, 64), closed: make(chan struct{}), stop: newReadStop()}
}

// push queues one batch for Read.
func (d *fakeDevice) push(pkts ...[]byte) { d.reads <- deviceRead{pkts: pkts} }

// fail makes the next Read fail with err.
func (d *fakeDevice) fail(err error) { d.reads <- deviceRead{err: err} }

func (d *fakeDevice) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	var r deviceRead
	select {
	case <-d.closed:
		return 0, os.ErrClosed
	case <-d.stop.c:
		return 0, os.ErrDeadlineExceeded
	case r = <-d.reads:
	}
	if r.err != nil {
		return 0, r.err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	n := min(len(r.pkts), len(bufs), d.batch)
	d.readAt, d.readBuf = d.readAt[:0], d.readBuf[:0]
	for i, p := range r.pkts[:n] {
		sizes[i] = copy(bufs[i][offset:], p)
		d.readAt = append(d.readAt, &bufs[i][offset])
		d.readBuf = append(d.readBuf, bufs[i][offset:])
	}
	return n, nil
}

func (d *fakeDevice) Write(bufs [][]byte, offset int) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.writes++
	if d.isShut.Load() {
		return 0, os.ErrClosed
	}
	// As tun.Device.Write says: write every packet that can be, count them,
	// and report an error if any was refused.
	n := 0
	var err error
	for _, b := range bufs {
		p := b[offset:]
		if d.refuse != nil && d.refuse(p) {
			err = errRefused
			continue
		}
		d.written = append(d.written, append([]byte(nil), p...))
		d.writtenAt = append(d.writtenAt, &p[0])
		n++
	}
	return n, err
}

func (d *fakeDevice) BatchSize() int { return d.batch }

func (d *fakeDevice) SetReadDeadline(t time.Time) error { d.stop.set(t); return nil }

func (d *fakeDevice) Close() error {
	d.once.Do(func() { d.isShut.Store(true); close(d.closed) })
	return nil
}

// packets returns copies of the packets written so far.
func (d *fakeDevice) packets() [][]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([][]byte(nil), d.written...)
}

// datagram is one datagram as the kernel hands it to a fakeConn's reader.
type datagram struct {
	data      []byte
	from      netip.AddrPort
	truncated bool // report MSG_TRUNC even if data fits
}

type connRead struct {
	dgrams []datagram
	err    error
}

// sentDatagram is a datagram a fakeConn was asked to send.
type sentDatagram struct {
	data []byte // a copy of Head and Buf
	head int    // how much of data was Head
	to   netip.AddrPort
	at   *byte // where Buf was in the caller's memory (nil if empty)
}

// fakeConn is an encap.Conn. Each ReadBatch takes one batch pushed with push
// (or an error pushed with fail); WriteBatch records what it sends and
// refuses, as sendmmsg does, the first message refuse is true for.
type fakeConn struct {
	reads  chan connRead
	closed chan struct{}
	once   sync.Once
	isShut atomic.Bool
	stop   readStop

	refuse func(m encap.Message) bool
	// gate, if set, holds every WriteBatch until it is closed; each
	// WriteBatch first sends on entered, if set.
	gate, entered chan struct{}
	// own, if set, makes ReadBatch receive into these buffers of its own and
	// point each message at them, as encap does with Options.ZeroCopy.
	own [][]byte

	mu     sync.Mutex
	readAt []*byte
	sent   []sentDatagram
	writes int // WriteBatch calls
}

var _ encap.Conn = (*fakeConn)(nil)

func newFakeConn() *fakeConn {
	return &fakeConn{reads: make(chan connRead, 64), closed: make(chan struct{}), stop: newReadStop()}
}

func (c *fakeConn) push(d ...datagram) { c.reads <- connRead{dgrams: d} }

func (c *fakeConn) fail(err error) { c.reads <- connRead{err: err} }

func (c *fakeConn) ReadBatch(msgs []encap.Message) (int, error) {
	var r connRead
	select {
	case <-c.closed:
		return 0, os.ErrClosed
	case <-c.stop.c:
		return 0, os.ErrDeadlineExceeded
	case r = <-c.reads:
	}
	if r.err != nil {
		return 0, r.err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n := min(len(r.dgrams), len(msgs))
	c.readAt = c.readAt[:0]
	for i, d := range r.dgrams[:n] {
		m := &msgs[i]
		if c.own != nil {
			m.Buf = c.own[i]
		}
		m.N = copy(m.Buf, d.data)
		m.Truncated = d.truncated || len(d.data) > len(m.Buf)
		m.Addr = d.from
		c.readAt = append(c.readAt, &m.Buf[0])
	}
	return n, nil
}

func (c *fakeConn) WriteBatch(msgs []encap.Message) (int, error) {
	if c.entered != nil {
		c.entered <- struct{}{}
	}
	if c.gate != nil {
		<-c.gate
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes++
	if c.isShut.Load() {
		return 0, os.ErrClosed
	}
	for i, m := range msgs {
		if c.refuse != nil && c.refuse(m) {
			return i, errRefused
		}
		d := sentDatagram{data: append(append([]byte(nil), m.Head...), m.Buf...), head: len(m.Head), to: m.Addr}
		if len(m.Buf) > 0 {
			d.at = &m.Buf[0]
		}
		c.sent = append(c.sent, d)
	}
	return len(msgs), nil
}

func (c *fakeConn) SetReadDeadline(t time.Time) error { c.stop.set(t); return nil }

func (c *fakeConn) Close() error {
	c.once.Do(func() { c.isShut.Store(true); close(c.closed) })
	return nil
}

func (c *fakeConn) datagrams() []sentDatagram {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]sentDatagram(nil), c.sent...)
}

// readStop is a fake's read deadline: a deadline set ends every read from
// then on (the engine only ever sets one to stop reading).
type readStop struct {
	c    chan struct{}
	once *sync.Once
}

func newReadStop() readStop { return readStop{c: make(chan struct{}), once: new(sync.Once)} }

func (r readStop) set(t time.Time) {
	if !t.IsZero() {
		r.once.Do(func() { close(r.c) })
	}
}

// newTestEngine returns an engine for h1 (subnet 100.96.1.0/24) routing to
// h2 and h3.
func newTestEngine(tb testing.TB, batch int) *Engine {
	tb.Helper()
	e, err := New(Config{Subnet: localSubnet, BatchSize: batch, MaxPacket: 1500})
	if err != nil {
		tb.Fatal(err)
	}
	t, err := NewTable(testRoutes())
	if err != nil {
		tb.Fatal(err)
	}
	e.SetRoutes(t)
	return e
}

// checkDrops fails tb unless the drop counters are exactly want.
func checkDrops(tb testing.TB, s Stats, want map[Drop]uint64) {
	tb.Helper()
	for d := range numDrops {
		if s.Drops[d] != want[d] {
			tb.Errorf("drops[%v] = %d, want %d", d, s.Drops[d], want[d])
		}
	}
}

// eventually polls cond until it holds or a generous deadline passes: the
// deadline only stops a test that would otherwise hang, it measures nothing.
func eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
