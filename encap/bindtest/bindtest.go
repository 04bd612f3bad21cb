// Package bindtest is an in-memory encap.Conn for tests, after wireguard-go's
// conn/bindtest: a test pushes the datagrams the kernel would hand over, and
// the connection records what it was asked to send.
package bindtest

import (
	"errors"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weft-dev/weft/encap"
)

// ErrRefused is what WriteBatch reports when Refuse refused a message.
var ErrRefused = errors.New("bindtest: refused")

// Datagram is one datagram as the kernel hands it to the reader.
type Datagram struct {
	Data      []byte
	From      netip.AddrPort
	Truncated bool // report MSG_TRUNC even if Data fits
}

// Sent is a datagram the connection was asked to send.
type Sent struct {
	Data []byte // a copy of Head and Buf
	Head int    // how much of Data was Head
	To   netip.AddrPort
	At   *byte // where Buf was in the caller's memory (nil if empty)
}

type read struct {
	dgrams []Datagram
	err    error
}

// Conn is an encap.Conn. Each ReadBatch takes one batch pushed with Push (or
// an error pushed with Fail); WriteBatch records what it sends and refuses,
// as sendmmsg does, the first message Refuse is true for.
type Conn struct {
	// Refuse, if set before use, makes WriteBatch refuse the first
	// message it is true for.
	Refuse func(m encap.Message) bool
	// Gate, if set, holds every WriteBatch until it is closed; each
	// WriteBatch first sends on Entered, if set.
	Gate, Entered chan struct{}
	// Own, if set, makes ReadBatch receive into these buffers of its own
	// and point each message at them, as encap does with Options.ZeroCopy.
	Own [][]byte

	reads  chan read
	closed chan struct{}
	once   sync.Once
	isShut atomic.Bool
	stop   chan struct{}
	stopOn sync.Once

	mu     sync.Mutex
	readAt []*byte
	sent   []Sent
	writes int
}

var _ encap.Conn = (*Conn)(nil)

func NewConn() *Conn {
	return &Conn{reads: make(chan read, 64), closed: make(chan struct{}), stop: make(chan struct{})}
}

// Push queues one batch for ReadBatch.
func (c *Conn) Push(d ...Datagram) { c.reads <- read{dgrams: d} }

// Fail makes the next ReadBatch fail with err.
func (c *Conn) Fail(err error) { c.reads <- read{err: err} }

func (c *Conn) ReadBatch(msgs []encap.Message) (int, error) {
	var r read
	select {
	case <-c.closed:
		return 0, os.ErrClosed
	case <-c.stop:
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
		if c.Own != nil {
			m.Buf = c.Own[i]
		}
		m.N = copy(m.Buf, d.Data)
		m.Truncated = d.Truncated || len(d.Data) > len(m.Buf)
		m.Addr = d.From
		c.readAt = append(c.readAt, &m.Buf[0])
	}
	return n, nil
}

func (c *Conn) WriteBatch(msgs []encap.Message) (int, error) {
	if c.Entered != nil {
		c.Entered <- struct{}{}
	}
	if c.Gate != nil {
		<-c.Gate
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes++
	if c.isShut.Load() {
		return 0, os.ErrClosed
	}
	for i, m := range msgs {
		if c.Refuse != nil && c.Refuse(m) {
			return i, ErrRefused
		}
		d := Sent{Data: append(append([]byte(nil), m.Head...), m.Buf...), Head: len(m.Head), To: m.Addr}
		if len(m.Buf) > 0 {
			d.At = &m.Buf[0]
		}
		c.sent = append(c.sent, d)
	}
	return len(msgs), nil
}

// SetReadDeadline ends every ReadBatch from now on once a deadline is set
// (the engine only ever sets one to stop reading).
func (c *Conn) SetReadDeadline(t time.Time) error {
	if !t.IsZero() {
		c.stopOn.Do(func() { close(c.stop) })
	}
	return nil
}

func (c *Conn) Close() error {
	c.once.Do(func() { c.isShut.Store(true); close(c.closed) })
	return nil
}

// Sent returns the datagrams sent so far.
func (c *Conn) Sent() []Sent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Sent(nil), c.sent...)
}

// ReadAt returns where the last ReadBatch put each datagram.
func (c *Conn) ReadAt() []*byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*byte(nil), c.readAt...)
}

// Writes is the number of WriteBatch calls.
func (c *Conn) Writes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes
}

// Reset forgets what was sent.
func (c *Conn) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sent = nil
}

// Closed reports whether Close was called.
func (c *Conn) Closed() bool { return c.isShut.Load() }

// ReadStopped reports whether a read deadline was set.
func (c *Conn) ReadStopped() bool {
	select {
	case <-c.stop:
		return true
	default:
		return false
	}
}
