// Package engine forwards packets between a TUN device and UDP peers: the
// outbound loop (TUN -> wire) and the inbound loop (wire -> TUN) of every
// worker, the route table they read, the checks every packet passes, and the
// counters of what was forwarded and what was dropped, with the reason.
package engine

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weft-dev/weft/encap"
	"github.com/weft-dev/weft/tun"

	"github.com/weft-dev/weft/ipv4"
)

// Config is what the forwarding loops need to know of this host.
type Config struct {
	// Subnet is this host's subnet: datagrams from peers must be addressed into it.
	Subnet netip.Prefix
	// BatchSize is the most packets handled per read and per write
	// (1 is flannel's one packet per syscall).
	BatchSize int
	// MaxPacket is the largest packet the TUN hands over or a peer may send.
	MaxPacket int
	// ZeroCopySend cuts super-packets from a device that hands them over
	// (tun.Caps.SuperPackets) into segments that point into the read
	// buffer, each with a small header of its own, instead of letting the
	// device copy every segment out.
	ZeroCopySend bool
	// ZeroCopyReceive writes received segments to the TUN from the socket's
	// own buffers (the socket must hand them out that way:
	// encap.Options.ZeroCopy) instead of copying each into a buffer of the
	// engine's; it needs devices that write no headroom
	// (tun.Caps.WriteHeadroom 0).
	ZeroCopyReceive bool
}

// DefaultBatchSize is the most packets handled per read and write: enough
// to amortise a syscall over many packets, small enough that a batch's
// buffers stay in cache.
const DefaultBatchSize = 64

// Queue is one worker's pair: a TUN queue and a UDP socket of its own.
type Queue struct {
	Dev  tun.Device
	Conn encap.Conn
}

// Engine forwards between TUN queues and UDP sockets.
type Engine struct {
	cfg        Config
	subnetBase uint32
	subnetMask uint32
	routes     atomic.Pointer[Table]
	routeStats routeTracker // per-route counters (routestats.go)
	tap        tap          // the packet tap for dumps (tap.go)

	mu    sync.Mutex
	loops []*counters // one per loop, summed by Stats
}

// New returns an engine for cfg with an empty route table.
func New(cfg Config) (*Engine, error) {
	if !cfg.Subnet.IsValid() || !cfg.Subnet.Addr().Is4() {
		return nil, fmt.Errorf("engine: subnet %v is not an IPv4 prefix", cfg.Subnet)
	}
	if cfg.BatchSize < 1 {
		return nil, fmt.Errorf("engine: batch size %d below 1", cfg.BatchSize)
	}
	if cfg.MaxPacket < ipv4.MinHeaderLen || cfg.MaxPacket > 65535 {
		return nil, fmt.Errorf("engine: max packet %d out of range %d-65535", cfg.MaxPacket, ipv4.MinHeaderLen)
	}
	cfg.Subnet = cfg.Subnet.Masked()
	a := cfg.Subnet.Addr().As4()
	e := &Engine{
		cfg:        cfg,
		subnetBase: binary.BigEndian.Uint32(a[:]),
		subnetMask: ^uint32(0) << (32 - cfg.Subnet.Bits()),
	}
	if cfg.Subnet.Bits() == 0 {
		e.subnetMask = 0
	}
	e.routes.Store(&Table{})
	return e, nil
}

// SetRoutes makes t the table every loop reads from its next batch on.
func (e *Engine) SetRoutes(t *Table) {
	e.routeStats.track(t, time.Now())
	e.routes.Store(t)
}

// Routes is the table in use.
func (e *Engine) Routes() *Table { return e.routes.Load() }

// Run forwards on every queue, one outbound and one inbound loop each, until
// ctx is done or a loop fails, and returns the first failure.
//
// When ctx is done, Run stops reading but lets every loop finish the batch
// it holds: every device, and every socket that can end a blocked read
// without closing (readStopper), gets a read deadline now, so what was read
// is still sent or written, and only then is it closed. One that cannot is
// closed at once.
// When a loop fails, every queue is closed at once, which ends the others.
// Either way every device and socket is closed when Run returns.
func (e *Engine) Run(ctx context.Context, queues []Queue) error {
	if len(queues) == 0 {
		return errors.New("engine: no queues")
	}
	for i, q := range queues {
		if c := q.Dev.Caps(); c.Batch < 1 || c.WriteHeadroom > tun.Headroom || (e.cfg.ZeroCopyReceive && c.WriteHeadroom > 0) {
			return fmt.Errorf("engine: queue %d: the device wants %d bytes of headroom (zero-copy receive %v) and batches of %d",
				i, c.WriteHeadroom, e.cfg.ZeroCopyReceive, c.Batch)
		}
	}
	var (
		wg       sync.WaitGroup
		once     sync.Once
		firstErr error
		stopping atomic.Bool
	)
	closeAll := func() {
		for _, q := range queues {
			q.Dev.Close()
			q.Conn.Close()
		}
	}
	abort := func() { once.Do(func() { stopping.Store(true); closeAll() }) }
	drain := func() {
		once.Do(func() {
			stopping.Store(true)
			for _, q := range queues {
				if q.Dev.SetReadDeadline(time.Now()) != nil {
					q.Dev.Close()
				}
				stopReading(q.Conn)
			}
		})
	}
	fail := func(err error) {
		e.mu.Lock()
		if firstErr == nil && !stopping.Load() {
			firstErr = err
		}
		e.mu.Unlock()
		abort()
	}
	for i, q := range queues {
		out := e.newOutbound(q)
		in := e.newInbound(q)
		wg.Add(2)
		go func() {
			defer wg.Done()
			for {
				if err := out.step(); err != nil {
					fail(fmt.Errorf("worker %d: read tun: %w", i, err))
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for {
				if err := in.step(); err != nil {
					fail(fmt.Errorf("worker %d: receive: %w", i, err))
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-ctx.Done():
		drain()
		<-done
	case <-done:
	}
	closeAll()
	return firstErr
}

// readStopper is a socket whose blocked read can be ended without
// closing it (os.File and net.UDPConn on Go's poller can).
type readStopper interface {
	SetReadDeadline(t time.Time) error
}

// stopReading ends x's reads, now and from now on, leaving its writes open;
// if it cannot, it closes x.
func stopReading(x io.Closer) {
	if rs, ok := x.(readStopper); ok && rs.SetReadDeadline(time.Now()) == nil {
		return
	}
	x.Close()
}

// newCounters returns the counters of a new loop, inbound or outbound. The
// direction is set before Stats can see them.
func (e *Engine) newCounters(inbound bool) *counters {
	c := &counters{inbound: inbound}
	e.mu.Lock()
	e.loops = append(e.loops, c)
	e.mu.Unlock()
	return c
}

// inSubnet reports whether the big-endian IPv4 address a is in this host's subnet.
func (e *Engine) inSubnet(a uint32) bool { return a&e.subnetMask == e.subnetBase }

// newBuffers allocates a batch of packet buffers with tun.Headroom in front.
// They are the loop's pool: allocated once, reused for every batch.
func newBuffers(batch, size int) [][]byte {
	slab := make([]byte, batch*(tun.Headroom+size))
	bufs := make([][]byte, batch)
	for i := range bufs {
		bufs[i] = slab[i*(tun.Headroom+size) : (i+1)*(tun.Headroom+size) : (i+1)*(tun.Headroom+size)]
	}
	return bufs
}
