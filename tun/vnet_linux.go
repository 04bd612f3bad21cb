package tun

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/weft-dev/weft/internal/busypoll"
)

// virtioNetHdrLen is the size of struct virtio_net_hdr, which precedes every
// packet read from or written to a TUN opened with IFF_VNET_HDR.
const virtioNetHdrLen = 10

// virtio_net_hdr fields, in the host's byte order.
const (
	vnetFlagNeedsCsum = 1 // VIRTIO_NET_HDR_F_NEEDS_CSUM
	vnetGSONone       = 0 // VIRTIO_NET_HDR_GSO_NONE
	vnetGSOTCPv4      = 1 // VIRTIO_NET_HDR_GSO_TCPV4
	vnetGSOUDPL4      = 5 // VIRTIO_NET_HDR_GSO_UDP_L4
)

// vnetQueue is weft's own offloading TUN queue. Reads hand over TCP and UDP
// super-packets whole (ReadGSO), with the virtio-net header read into the
// headroom so nothing moves. Writes coalesce runs of TCP segments of one
// flow into super-packets with writev: the virtio-net header and the
// rewritten first header come from small buffers of the queue, the payloads
// stay where they were received. wireguard-go's device instead copies every
// segment on read and every coalesced payload on write.
type vnetQueue struct {
	file  *os.File
	raw   syscall.RawConn
	batch int
	// uso: the kernel knows UDP segmentation offload (Linux 6.2), so runs
	// of UDP datagrams are written as one super-packet too.
	uso bool
	// poll keeps reads polling for a while after traffic; nil sleeps as
	// soon as nothing is ready.
	poll *busypoll.Window

	// Read's, which cuts super-packets by copying; one reader at a time.
	// A super-packet of more segments than the caller's buffers is handed
	// over window by window: cut is the first segment of the next window,
	// 0 when none is held.
	split []Segment
	heads []byte
	rbuf  []byte
	rbufs [1][]byte // rbuf, as ReadGSO takes it
	rgso  [1]GSO
	rsize [1]int
	cut   int

	// ReadGSO's call to the poller, made once with its arguments and
	// results here: a closure built per read would allocate.
	readFn func(fd uintptr) bool
	rd     struct {
		bufs        [][]byte
		sizes       []int
		gso         []GSO
		offset, max int
		n           int
		err         error
	}

	wmu     sync.Mutex // guards the rest: Write may be called concurrently
	iov     []unix.Iovec
	vhdr    [virtioNetHdrLen]byte
	head    [MaxHeader]byte
	runs    []run
	writeFn func(fd uintptr) bool // writeRun's call, made once
	werr    syscall.Errno
}

// openVnetQueue opens one queue of the device with IFF_VNET_HDR and turns on
// checksum and TCP segmentation offloads, and UDP segmentation where the
// kernel has it (Linux 6.2).
func openVnetQueue(name string, batch int) (*vnetQueue, error) {
	fd, err := openVnetFD(name, unix.O_NONBLOCK)
	if err != nil {
		return nil, err
	}
	// IPv4 only (weft's overlay is IPv4), but USO needs both USO flags.
	const tcp = unix.TUN_F_CSUM | unix.TUN_F_TSO4
	uso := true
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, tcp|unix.TUN_F_USO4|unix.TUN_F_USO6); err != nil {
		uso = false
		if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, tcp); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("TUNSETOFFLOAD: %w", err)
		}
	}
	return newVnetQueue(os.NewFile(uintptr(fd), "/dev/net/tun"), batch, uso)
}

// newVnetQueue makes a queue of the open file f: a TUN queue opened with a
// virtio-net header, or a stand-in in tests. On error it closes f.
func newVnetQueue(f *os.File, batch int, uso bool) (*vnetQueue, error) {
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	q := &vnetQueue{
		file:  f,
		raw:   raw,
		batch: batch,
		uso:   uso,
		iov:   make([]unix.Iovec, 0, 2+MaxSegments),
		runs:  make([]run, 0, batch),
		split: make([]Segment, MaxSegments),
		heads: make([]byte, MaxSegments*MaxHeader),
		rbuf:  make([]byte, virtioNetHdrLen+65535),
	}
	q.rbufs[0] = q.rbuf
	q.readFn = q.readReady
	q.writeFn = q.writeIovec
	return q, nil
}

// Caps implements Device: ReadGSO hands over super-packets of up to 64 KiB,
// and Write needs no headroom (the virtio-net header is an iovec of its own)
// and never grows a packet (runs are coalesced with writev).
func (q *vnetQueue) Caps() Caps {
	return Caps{Batch: q.batch, ReadSize: 65535, SuperPackets: true}
}

func (q *vnetQueue) SyscallConn() (syscall.RawConn, error) { return q.raw, nil }

// SetReadDeadline ends a blocked Read or ReadGSO, and those after it, at t,
// leaving writes open.
func (q *vnetQueue) SetReadDeadline(t time.Time) error { return q.file.SetReadDeadline(t) }

func (q *vnetQueue) Close() error {
	err := q.file.Close()
	if errors.Is(err, os.ErrClosed) {
		return nil
	}
	return err
}

// ReadGSO implements Device. It waits once, then drains what is ready.
func (q *vnetQueue) ReadGSO(bufs [][]byte, sizes []int, gso []GSO, offset int) (int, error) {
	if offset < virtioNetHdrLen {
		return 0, fmt.Errorf("tun: offset %d leaves no room for the virtio-net header", offset)
	}
	q.rd.bufs, q.rd.sizes, q.rd.gso, q.rd.offset = bufs, sizes, gso, offset
	q.rd.max, q.rd.n, q.rd.err = min(len(bufs), q.batch), 0, nil
	err := q.raw.Read(q.readFn)
	n, rerr := q.rd.n, q.rd.err
	q.rd.bufs, q.rd.sizes, q.rd.gso = nil, nil, nil // the caller's; not to be kept
	return drained(n, err, rerr)
}

// readReady is ReadGSO's work once the poller says the queue is readable:
// it reads packets until the batch is full or none is left, and asks to
// wait only while nothing was read and the busy-poll window, if any, has
// closed.
func (q *vnetQueue) readReady(fd uintptr) bool {
	r := &q.rd
	r.n, r.err = readPolling(int(fd), r.bufs[:r.max], r.offset-virtioNetHdrLen, r.sizes[:r.max], q.poll)
	for i := range r.n {
		q.parse(i)
	}
	return r.n > 0 || r.err != nil
}

// parse reads the virtio-net header of the packet read into slot i and
// leaves the packet's own length in its size. A packet that cannot be
// handed over is still handed up, marked, so that its drop is counted.
func (q *vnetQueue) parse(i int) {
	r := &q.rd
	m := r.sizes[i]
	b := r.bufs[i][r.offset-virtioNetHdrLen:]
	g, perr := GSO{Kind: GSOInvalid}, error(nil)
	if m >= virtioNetHdrLen {
		g, perr = parseVnetHdr(b[:virtioNetHdrLen])
	}
	pkt := b[min(m, virtioNetHdrLen):m]
	switch {
	case perr != nil:
		g = GSO{Kind: GSOInvalid}
	case g.Kind == GSONone && g.NeedsCsum:
		if Checksum(pkt, g) != nil {
			g = GSO{Kind: GSOInvalid}
		}
		g.NeedsCsum = false
	}
	r.gso[i] = g
	r.sizes[i] = len(pkt)
}

// parseVnetHdr reads a virtio_net_hdr. Only IPv4 GSO kinds are handed on:
// weft's overlay is IPv4, and the engine drops other packets whole.
func parseVnetHdr(b []byte) (GSO, error) {
	g := GSO{
		NeedsCsum:   b[0]&vnetFlagNeedsCsum != 0,
		SegmentSize: int(binary.NativeEndian.Uint16(b[4:6])),
		CsumStart:   int(binary.NativeEndian.Uint16(b[6:8])),
		CsumOffset:  int(binary.NativeEndian.Uint16(b[8:10])),
	}
	switch b[1] &^ 0x80 { // 0x80 is the ECN bit
	case vnetGSONone:
		g.Kind = GSONone
	case vnetGSOTCPv4:
		g.Kind = GSOTCPv4
	case vnetGSOUDPL4:
		g.Kind = GSOUDPv4
	default:
		return g, fmt.Errorf("tun: GSO type %d not handled", b[1])
	}
	return g, nil
}

// Read implements Device for callers that want whole packets: super-packets
// are cut by copying each segment into its own buffer, as many as bufs
// holds; the rest of the super-packet is handed over by the Reads after.
func (q *vnetQueue) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	g, sz := q.rgso[:], q.rsize[:]
	if q.cut == 0 {
		if _, err := q.ReadGSO(q.rbufs[:], sz, g, virtioNetHdrLen); err != nil {
			return 0, err
		}
		switch g[0].Kind {
		case GSONone:
			sizes[0] = copy(bufs[0][offset:], q.rbuf[virtioNetHdrLen:virtioNetHdrLen+sz[0]])
			return 1, nil
		case GSOInvalid:
			return 0, ErrDropped
		}
	}
	pkt := q.rbuf[virtioNetHdrLen : virtioNetHdrLen+sz[0]]
	n, total, err := SplitFrom(pkt, g[0], q.cut, q.heads, q.split[:min(len(bufs), len(q.split))])
	if err != nil {
		q.cut = 0
		return 0, ErrDropped // the packet is consumed; the device goes on
	}
	for i, s := range q.split[:n] {
		b := bufs[i][offset:]
		sizes[i] = copy(b, s.Head) + copy(b[len(s.Head):], s.Payload)
	}
	if q.cut += n; q.cut >= total {
		q.cut = 0
	}
	return n, nil
}

// Write implements Device. offset is ignored: the virtio-net header is an
// iovec of its own, so packets need no headroom and are never written to.
func (q *vnetQueue) Write(bufs [][]byte, offset int) (int, error) {
	q.wmu.Lock()
	defer q.wmu.Unlock()
	q.runs = planRuns(bufs, offset, q.runs[:0], q.uso)
	written := 0
	var firstErr error
	for _, r := range q.runs {
		err := q.writeRun(bufs[r.start:r.end], offset, r)
		if err != nil {
			if errors.Is(err, os.ErrClosed) || errors.Is(err, unix.EBADFD) {
				return written, os.ErrClosed
			}
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		written += r.end - r.start
	}
	return written, firstErr
}

// writeRun writes one packet, or a run of TCP segments or UDP datagrams as
// one super-packet.
func (q *vnetQueue) writeRun(pkts [][]byte, offset int, r run) error {
	clear(q.vhdr[:])
	q.iov = q.iov[:0]
	q.iov = appendIovec(q.iov, q.vhdr[:])
	if len(pkts) == 1 {
		q.iov = appendIovec(q.iov, pkts[0][offset:])
	} else {
		h := r.header(q.head[:], pkts[0][offset:], pkts[len(pkts)-1][offset:])
		kind, csumOffset := byte(vnetGSOTCPv4), uint16(16)
		if r.udp {
			kind, csumOffset = vnetGSOUDPL4, 6
		}
		q.vhdr[0] = vnetFlagNeedsCsum
		q.vhdr[1] = kind
		binary.NativeEndian.PutUint16(q.vhdr[2:4], uint16(r.hlen))
		binary.NativeEndian.PutUint16(q.vhdr[4:6], uint16(r.segment))
		binary.NativeEndian.PutUint16(q.vhdr[6:8], uint16(r.ihl))
		binary.NativeEndian.PutUint16(q.vhdr[8:10], csumOffset)
		q.iov = appendIovec(q.iov, h)
		for _, p := range pkts {
			q.iov = appendIovec(q.iov, p[offset+r.hlen:])
		}
	}
	q.werr = 0
	if err := q.raw.Write(q.writeFn); err != nil {
		// The poller fails only on a closed file (no deadline is ever set),
		// with internal/poll's error, which is not os.ErrClosed.
		return os.ErrClosed
	}
	if q.werr != 0 {
		return q.werr
	}
	return nil
}

// writeIovec is writeRun's work once the poller says the queue takes more:
// one writev of q.iov.
func (q *vnetQueue) writeIovec(fd uintptr) bool {
	for {
		_, _, e := unix.Syscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&q.iov[0])), uintptr(len(q.iov)))
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false // wait until the queue takes more
		}
		q.werr = e
		return true
	}
}

func appendIovec(iov []unix.Iovec, b []byte) []unix.Iovec {
	v := unix.Iovec{Base: unsafe.SliceData(b)}
	v.SetLen(len(b))
	return append(iov, v)
}
