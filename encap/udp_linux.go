package encap

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/weft-dev/weft/internal/busypoll"
)

// Options says how a UDPConn moves datagrams.
type Options struct {
	// Batch is the most datagrams per recvmmsg or sendmmsg.
	Batch int
	// GSO asks for UDP segmentation offload on send (UDP_SEGMENT, Linux
	// 4.18): consecutive datagrams to one peer go down as one super-datagram
	// that the kernel or the NIC cuts. It is turned off for good, and
	// Offloads says so, if the kernel or the device refuses it.
	GSO bool
	// GRO asks for UDP receive offload (UDP_GRO, Linux 5.0): the kernel hands
	// over runs of datagrams of one flow in one buffer.
	GRO bool
	// ZeroCopy lets ReadBatch hand out GRO segments as slices of its own
	// buffers, valid until the next ReadBatch, instead of copying them into
	// the caller's.
	ZeroCopy bool
	// BusyPoll keeps receives polling for this long after traffic instead
	// of sleeping at once (see internal/busypoll); 0 never polls.
	BusyPoll time.Duration
}

// The kernel's limits on one UDP_SEGMENT send.
const (
	maxGSOSegments = 64    // UDP_MAX_SEGMENTS
	maxGSOBytes    = 65507 // IP total length 65535 minus IPv4 and UDP headers
	groBufferSize  = 65535
)

// UDPConn is a UDP socket read with recvmmsg and written with sendmmsg
// (golang.org/x/net/ipv4's ReadBatch and WriteBatch), with UDP_SEGMENT and
// UDP_GRO where the kernel has them. It is bound with SO_REUSEPORT so that
// each worker can have a socket of its own on the same port and the kernel
// spreads incoming flows across them.
//
// A UDPConn is used by one reader and one writer goroutine at a time.
type UDPConn struct {
	conn *net.UDPConn
	pc   *ipv4.PacketConn

	gso        atomic.Bool
	gro        bool
	zeroCopy   bool
	gsoRefused atomic.Uint64 // sends that fell back after the kernel refused UDP_SEGMENT
	gsoSplit   atomic.Uint64 // runs sent again one datagram each: the path MTU is below their segments
	narrow     [4]narrowPath // peers whose path MTU refused runs lately; used by the writer only
	narrowed   int           // entries of narrow in use

	// Writing: wmsgs[k] carries one group of datagrams; groupLen[k] how many.
	wmsgs    []ipv4.Message
	waddrs   []net.UDPAddr
	wips     [][4]byte
	woob     [][]byte
	groupLen []int

	// Reading: with GRO, datagrams land in big buffers of rbatch's slots
	// and are handed out segment by segment; pending is what is not handed
	// out yet. Without GRO they land straight in the caller's buffers.
	raw     syscall.RawConn
	rbatch  *recvBatch
	pending []recvSlot
	pendOff int
}

// ListenUDP opens a socket bound to laddr (an unspecified address binds all).
func ListenUDP(laddr netip.AddrPort, opts Options) (*UDPConn, error) {
	if opts.Batch < 1 {
		return nil, fmt.Errorf("listen %v: batch size %d below 1", laddr, opts.Batch)
	}
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); serr != nil {
				return
			}
			setBuffers(int(fd))
		})
		if err != nil {
			return err
		}
		return serr
	}}
	pconn, err := lc.ListenPacket(context.Background(), "udp4", laddr.String())
	if err != nil {
		return nil, fmt.Errorf("listen %v: %w", laddr, err)
	}
	conn := pconn.(*net.UDPConn)
	c := &UDPConn{conn: conn, pc: ipv4.NewPacketConn(conn), zeroCopy: opts.ZeroCopy}
	raw, err := conn.SyscallConn()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("listen %v: %w", laddr, err)
	}
	c.raw = raw
	raw.Control(func(fd uintptr) {
		if opts.GSO {
			// Reading UDP_SEGMENT back works from the kernel that has it on.
			_, gerr := unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT)
			c.gso.Store(gerr == nil)
		}
		if opts.GRO {
			c.gro = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_GRO, 1) == nil
		}
	})

	batch := opts.Batch
	c.wmsgs = make([]ipv4.Message, batch)
	c.waddrs = make([]net.UDPAddr, batch)
	c.wips = make([][4]byte, batch)
	c.woob = make([][]byte, batch)
	c.groupLen = make([]int, batch)
	for i := range batch {
		c.wmsgs[i].Buffers = make([][]byte, 0, 2*maxGSOSegments)
		c.waddrs[i].IP = c.wips[i][:]
		c.wmsgs[i].Addr = &c.waddrs[i]
		c.woob[i] = make([]byte, unix.CmsgSpace(2))
	}
	nr := batch
	if c.gro {
		// Each buffer can hold up to 64 datagrams: fewer of them suffice.
		nr = max(1, batch/4)
	}
	c.rbatch = newRecvBatch(nr)
	c.rbatch.poll = busypoll.New(opts.BusyPoll)
	if c.gro {
		for i := range c.rbatch.slots {
			c.rbatch.slots[i].buf = make([]byte, groBufferSize)
			c.rbatch.slots[i].oob = make([]byte, unix.CmsgSpace(2)+unix.CmsgSpace(4))
		}
	}
	return c, nil
}

// socketBuffer is the send and receive buffer each socket asks for. The
// default (212 KiB) overflows under a burst of full batches: flanneld's TCP
// retransmits match its socket drops.
const socketBuffer = 4 << 20

// setBuffers sizes the socket buffers, past net.core.rmem_max/wmem_max when
// weftd has CAP_NET_ADMIN, else as far as those limits allow.
func setBuffers(fd int) {
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, socketBuffer) != nil {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, socketBuffer)
	}
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, socketBuffer) != nil {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, socketBuffer)
	}
}

// LocalAddr is the address the socket is bound to.
func (c *UDPConn) LocalAddr() netip.AddrPort {
	return c.conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

// Offloads reports whether UDP_SEGMENT and UDP_GRO are in use.
func (c *UDPConn) Offloads() (gso, gro bool) { return c.gso.Load(), c.gro }

// GSORefused counts sends that fell back to one datagram per message after
// the kernel or the device refused UDP_SEGMENT.
func (c *UDPConn) GSORefused() uint64 { return c.gsoRefused.Load() }

// GSOSplit counts runs of datagrams sent again one per message because
// their segments did not fit the path MTU to their peer.
func (c *UDPConn) GSOSplit() uint64 { return c.gsoSplit.Load() }

// ReadBatch implements Conn.
func (c *UDPConn) ReadBatch(msgs []Message) (int, error) {
	if !c.gro {
		return c.readPlain(msgs)
	}
	if n := c.drain(msgs); n > 0 {
		return n, nil
	}
	k, err := c.rbatch.recv(c.raw, len(c.rbatch.slots))
	if err != nil {
		return 0, err
	}
	c.pending, c.pendOff = c.rbatch.slots[:k], 0
	return c.drain(msgs), nil
}

// readPlain receives straight into the caller's buffers.
func (c *UDPConn) readPlain(msgs []Message) (int, error) {
	k := min(len(msgs), len(c.rbatch.slots))
	for i := range k {
		c.rbatch.slots[i].buf = msgs[i].Buf
	}
	n, err := c.rbatch.recv(c.raw, k)
	for i := range n {
		rs, m := &c.rbatch.slots[i], &msgs[i]
		m.N = rs.n
		m.Truncated = rs.flags&unix.MSG_TRUNC != 0
		m.Addr = rs.from
		rs.buf = nil // the caller's; not to be kept
	}
	return n, err
}

// drain hands out pending GRO segments, one datagram each, copying each
// into the caller's buffer.
func (c *UDPConn) drain(msgs []Message) int {
	n := 0
	for len(c.pending) > 0 && n < len(msgs) {
		rs := &c.pending[0]
		data := rs.buf[:rs.n]
		seg := groSegmentSize(rs.oob[:rs.nn])
		if seg <= 0 || seg > len(data) {
			seg = len(data)
		}
		for c.pendOff < len(data) && n < len(msgs) {
			end := min(c.pendOff+seg, len(data))
			m := &msgs[n]
			if c.zeroCopy {
				m.Buf = data[c.pendOff:end:end]
				m.N = len(m.Buf)
			} else {
				m.N = copy(m.Buf, data[c.pendOff:end])
			}
			m.Truncated = m.N < end-c.pendOff || rs.flags&unix.MSG_TRUNC != 0
			m.Addr = rs.from
			c.pendOff = end
			n++
		}
		if c.pendOff >= len(data) {
			c.pending, c.pendOff = c.pending[1:], 0
		}
	}
	return n
}

// groSegmentSize finds the UDP_GRO control message: the size of every
// coalesced datagram but the last. 0 means the buffer is one datagram.
func groSegmentSize(oob []byte) int {
	for len(oob) >= unix.SizeofCmsghdr {
		h, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			return 0
		}
		if h.Level == unix.SOL_UDP && h.Type == unix.UDP_GRO && len(data) >= 2 {
			return int(*(*uint16)(unsafe.Pointer(&data[0])))
		}
		oob = rest
	}
	return 0
}

// narrowPath is a peer whose path MTU refused runs of segments of seg
// bytes: runs to it of segments that large go one datagram each without
// asking the kernel first (a refused send has copied the whole run), for
// the next left runs; then the kernel is asked again, since the path MTU it
// learned may have grown back.
type narrowPath struct {
	to   netip.AddrPort
	seg  int
	left int
}

// narrowRuns is how many runs to a narrow peer skip UDP_SEGMENT before it
// is tried again: a refused try costs one syscall and one copy of the run,
// so this keeps the cost of trying under 1%.
const narrowRuns = 128

// isNarrow reports whether a run of segments of seg bytes to peer to should
// go one datagram each, counting it against the entry.
func (c *UDPConn) isNarrow(to netip.AddrPort, seg int) bool {
	if c.narrowed == 0 {
		return false
	}
	for k := range c.narrow {
		e := &c.narrow[k]
		if e.left > 0 && e.to == to && seg >= e.seg {
			if e.left--; e.left == 0 {
				c.narrowed--
			}
			return true
		}
	}
	return false
}

// markNarrow remembers that the path to peer to refused segments of seg bytes.
func (c *UDPConn) markNarrow(to netip.AddrPort, seg int) {
	slot := &c.narrow[0]
	for k := range c.narrow {
		e := &c.narrow[k]
		if e.left > 0 && e.to == to {
			slot = e
			break
		}
		if e.left == 0 || e.left < slot.left {
			slot = e
		}
	}
	if slot.left == 0 {
		c.narrowed++
	}
	*slot = narrowPath{to: to, seg: seg, left: narrowRuns}
}

// WriteBatch implements Conn. With GSO, each run of datagrams to one peer
// whose sizes are equal (the last may be shorter) goes as one message: its
// iovecs are the datagrams' own buffers, so nothing is copied.
//
// A run the kernel refuses as one UDP_SEGMENT send because its segments do
// not fit the path MTU to that peer (EINVAL, or EMSGSIZE) goes again one
// datagram per message, as flanneld sends: the socket discovers the path
// MTU the kernel's default way (IP_PMTUDISC_WANT), so the kernel fragments
// a datagram larger than the path instead of refusing it, and TCP inside
// keeps flowing. The path MTU is the peer's: GSO stays on for the others,
// and the next runs to that peer skip the refused try (narrowPath).
func (c *UDPConn) WriteBatch(msgs []Message) (int, error) {
	sent := 0
	single := 0 // the next datagrams that go one per message
	for sent < len(msgs) {
		gso := c.gso.Load()
		k, i := 0, sent
		for i < len(msgs) && k < len(c.wmsgs) {
			j := i + 1
			if gso && i >= sent+single {
				j = groupEnd(msgs, i)
				if j-i > 1 && c.isNarrow(msgs[i].Addr, msgs[i].len()) {
					single, j = j-sent, i+1
				}
			}
			c.pack(k, msgs[i:j])
			i = j
			k++
		}
		n, err := c.pc.WriteBatch(c.wmsgs[:k], 0)
		n = max(n, 0) // -1 with the error of the first message
		before := sent
		for g := range n {
			sent += c.groupLen[g]
		}
		single = max(0, single-(sent-before))
		if err != nil {
			if gso && n < k && c.groupLen[n] > 1 && (errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EMSGSIZE)) {
				// udp_send_skb refuses segments larger than the path
				// MTU allows: this run, one datagram per message.
				single = c.groupLen[n]
				c.gsoSplit.Add(1)
				c.markNarrow(msgs[sent].Addr, msgs[sent].len())
				continue
			}
			if gso && errors.Is(err, unix.EIO) {
				// udp_send_skb returns EIO when the device cannot
				// checksum a segmented send: fall back for good.
				c.gso.Store(false)
				c.gsoRefused.Add(1)
				continue
			}
			return sent, err
		}
		if n == 0 {
			return sent, errors.New("sendmmsg sent nothing")
		}
	}
	return sent, nil
}

// groupEnd returns the end of the run of datagrams starting at i that can go
// as one UDP_SEGMENT send.
func groupEnd(msgs []Message, i int) int {
	size := msgs[i].len()
	total := size
	j := i + 1
	for j < len(msgs) && j-i < maxGSOSegments {
		m := &msgs[j]
		l := m.len()
		if m.Addr != msgs[i].Addr || l > size || total+l > maxGSOBytes {
			break
		}
		total += l
		j++
		if l < size {
			break // only the last segment may be shorter
		}
	}
	return j
}

// len is the datagram's payload length.
func (m *Message) len() int { return len(m.Head) + len(m.Buf) }

// pack makes wmsgs[k] the send of group, with a UDP_SEGMENT control message
// when it holds more than one datagram.
func (c *UDPConn) pack(k int, group []Message) {
	wm := &c.wmsgs[k]
	wm.Buffers = wm.Buffers[:0]
	for _, m := range group {
		if len(m.Head) > 0 {
			wm.Buffers = append(wm.Buffers, m.Head)
		}
		wm.Buffers = append(wm.Buffers, m.Buf)
	}
	c.wips[k] = group[0].Addr.Addr().As4()
	c.waddrs[k].Port = int(group[0].Addr.Port())
	c.groupLen[k] = len(group)
	wm.OOB = nil
	if len(group) > 1 {
		oob := c.woob[k]
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		h.Level = unix.SOL_UDP
		h.Type = unix.UDP_SEGMENT
		h.SetLen(unix.CmsgLen(2))
		*(*uint16)(unsafe.Pointer(&oob[unix.CmsgLen(0)])) = uint16(group[0].len())
		wm.OOB = oob
	}
}

// Close implements Conn.
func (c *UDPConn) Close() error { return c.conn.Close() }

// SetReadDeadline ends a blocked ReadBatch, and those after it, at t,
// leaving sends open. Segments of a GRO datagram already received are
// still handed out.
func (c *UDPConn) SetReadDeadline(t time.Time) error { return c.conn.SetReadDeadline(t) }
