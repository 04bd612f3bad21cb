// Package tuntest is an in-memory tun.Device for tests, after wireguard-go's
// tun/tuntest: a test pushes what the kernel would hand over, and the
// device records what it was given to write.
package tuntest

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/weft-dev/weft/tun"
)

// ErrRefused is what Write reports when Refuse refused a packet.
var ErrRefused = errors.New("tuntest: refused")

// read is what one Read returns.
type read struct {
	pkts [][]byte
	gso  []tun.GSO
	err  error
}

// Device is a tun.Device. Each Read takes one batch pushed with Push (or an
// error pushed with Fail), copies it into the caller's buffers as the kernel
// would (cutting packets that do not fit), and remembers where. Write
// records a copy of each packet and where it was, skipping those Refuse is
// true for.
type Device struct {
	// Refuse, if set before use, makes Write refuse the packets it is true for.
	Refuse func(pkt []byte) bool

	caps   tun.Caps
	reads  chan read
	closed chan struct{}
	once   sync.Once
	isShut atomic.Bool
	stop   chan struct{}
	stopOn sync.Once

	mu        sync.Mutex
	readAt    []*byte
	readBufs  [][]byte
	written   [][]byte
	writtenAt []*byte
	writes    int
}

var _ tun.Device = (*Device)(nil)

// NewDevice returns a device of the given capabilities; caps.Batch must be
// at least 1.
func NewDevice(caps tun.Caps) *Device {
	return &Device{caps: caps, reads: make(chan read, 64), closed: make(chan struct{}), stop: make(chan struct{})}
}

// Push queues one batch for Read.
func (d *Device) Push(pkts ...[]byte) { d.reads <- read{pkts: pkts} }

// PushGSO queues one batch for ReadGSO, packet i described by gso[i].
func (d *Device) PushGSO(pkts [][]byte, gso []tun.GSO) { d.reads <- read{pkts: pkts, gso: gso} }

// Fail makes the next Read fail with err.
func (d *Device) Fail(err error) { d.reads <- read{err: err} }

func (d *Device) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, _, err := d.read(bufs, sizes, offset)
	return n, err
}

// ReadGSO hands over the GSO descriptors pushed with the batch, or GSONone
// for each packet.
func (d *Device) ReadGSO(bufs [][]byte, sizes []int, gso []tun.GSO, offset int) (int, error) {
	n, g, err := d.read(bufs, sizes, offset)
	clear(gso[:n])
	copy(gso[:n], g)
	return n, err
}

func (d *Device) read(bufs [][]byte, sizes []int, offset int) (int, []tun.GSO, error) {
	var r read
	select {
	case <-d.closed:
		return 0, nil, os.ErrClosed
	case <-d.stop:
		return 0, nil, os.ErrDeadlineExceeded
	case r = <-d.reads:
	}
	if r.err != nil {
		return 0, nil, r.err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	n := min(len(r.pkts), len(bufs), d.caps.Batch)
	d.readAt, d.readBufs = d.readAt[:0], d.readBufs[:0]
	for i, p := range r.pkts[:n] {
		sizes[i] = copy(bufs[i][offset:], p)
		d.readAt = append(d.readAt, &bufs[i][offset])
		d.readBufs = append(d.readBufs, bufs[i][offset:])
	}
	return n, r.gso, nil
}

// Write writes every packet Refuse does not refuse, counts them, and
// reports an error if any was refused, as tun.Device.Write says.
func (d *Device) Write(bufs [][]byte, offset int) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.writes++
	if d.isShut.Load() {
		return 0, os.ErrClosed
	}
	n := 0
	var err error
	for _, b := range bufs {
		p := b[offset:]
		if d.Refuse != nil && d.Refuse(p) {
			err = ErrRefused
			continue
		}
		d.written = append(d.written, append([]byte(nil), p...))
		d.writtenAt = append(d.writtenAt, &p[0])
		n++
	}
	return n, err
}

func (d *Device) Caps() tun.Caps { return d.caps }

// SetReadDeadline ends every Read from now on once a deadline is set (the
// engine only ever sets one to stop reading).
func (d *Device) SetReadDeadline(t time.Time) error {
	if !t.IsZero() {
		d.stopOn.Do(func() { close(d.stop) })
	}
	return nil
}

// SyscallConn fails: there is no descriptor behind the device.
func (d *Device) SyscallConn() (syscall.RawConn, error) {
	return nil, errors.New("tuntest: no descriptor")
}

func (d *Device) Close() error {
	d.once.Do(func() { d.isShut.Store(true); close(d.closed) })
	return nil
}

// Written returns copies of the packets written so far.
func (d *Device) Written() [][]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([][]byte(nil), d.written...)
}

// WrittenAt returns where in the caller's memory each written packet was.
func (d *Device) WrittenAt() []*byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]*byte(nil), d.writtenAt...)
}

// Writes is the number of Write calls.
func (d *Device) Writes() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.writes
}

// ReadAt returns where the last Read put each packet.
func (d *Device) ReadAt() []*byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]*byte(nil), d.readAt...)
}

// ReadBufs returns the buffers the last Read put each packet in, from the
// packet's start on.
func (d *Device) ReadBufs() [][]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([][]byte(nil), d.readBufs...)
}

// Reset forgets what was written.
func (d *Device) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.written, d.writtenAt = nil, nil
}

// Closed reports whether Close was called.
func (d *Device) Closed() bool { return d.isShut.Load() }

// ReadStopped reports whether a read deadline was set.
func (d *Device) ReadStopped() bool {
	select {
	case <-d.stop:
		return true
	default:
		return false
	}
}
