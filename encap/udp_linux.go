package encap

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// UDPConn is a UDP socket read with recvmmsg and written with sendmmsg
// (golang.org/x/net/ipv4's ReadBatch and WriteBatch). It is bound with
// SO_REUSEPORT so that each worker can have a socket of its own on the same
// port and the kernel spreads incoming flows across them.
//
// A UDPConn is used by one reader and one writer goroutine at a time.
type UDPConn struct {
	conn *net.UDPConn
	pc   *ipv4.PacketConn

	rmsgs []ipv4.Message
	wmsgs []ipv4.Message
	// waddrs back wmsgs[i].Addr, so that setting a destination allocates nothing.
	waddrs []net.UDPAddr
	wips   [][4]byte
}

// ListenUDP opens a socket bound to laddr (an unspecified address binds all)
// for batches of up to batch datagrams.
func ListenUDP(laddr netip.AddrPort, batch int) (*UDPConn, error) {
	if batch < 1 {
		return nil, fmt.Errorf("listen %v: batch size %d below 1", laddr, batch)
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
	c := &UDPConn{
		conn:   conn,
		pc:     ipv4.NewPacketConn(conn),
		rmsgs:  make([]ipv4.Message, batch),
		wmsgs:  make([]ipv4.Message, batch),
		waddrs: make([]net.UDPAddr, batch),
		wips:   make([][4]byte, batch),
	}
	for i := range batch {
		c.rmsgs[i].Buffers = make([][]byte, 1)
		c.wmsgs[i].Buffers = make([][]byte, 1)
		c.waddrs[i].IP = c.wips[i][:]
		c.wmsgs[i].Addr = &c.waddrs[i]
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

// ReadBatch implements Conn. It reads at most the batch size given to ListenUDP.
func (c *UDPConn) ReadBatch(msgs []Message) (int, error) {
	rm := c.rmsgs[:min(len(msgs), len(c.rmsgs))]
	for i := range rm {
		rm[i].Buffers[0] = msgs[i].Buf
	}
	// x/net's ReadBatch allocates a net.UDPAddr for each datagram's source.
	n, err := c.pc.ReadBatch(rm, 0)
	for i := range n {
		m := &msgs[i]
		m.N = rm[i].N
		m.Truncated = rm[i].Flags&unix.MSG_TRUNC != 0
		m.Addr = netip.AddrPort{}
		if ua, ok := rm[i].Addr.(*net.UDPAddr); ok {
			ap := ua.AddrPort()
			m.Addr = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		}
	}
	return n, err
}

// WriteBatch implements Conn.
func (c *UDPConn) WriteBatch(msgs []Message) (int, error) {
	sent := 0
	for sent < len(msgs) {
		chunk := msgs[sent:min(len(msgs), sent+len(c.wmsgs))]
		wm := c.wmsgs[:len(chunk)]
		for i := range chunk {
			wm[i].Buffers[0] = chunk[i].Buf
			c.wips[i] = chunk[i].Addr.Addr().As4()
			c.waddrs[i].Port = int(chunk[i].Addr.Port())
		}
		n, err := c.pc.WriteBatch(wm, 0)
		sent += n
		if err != nil {
			return sent, err
		}
		if n == 0 {
			return sent, fmt.Errorf("sendmmsg sent nothing")
		}
	}
	return sent, nil
}

// Close implements Conn.
func (c *UDPConn) Close() error { return c.conn.Close() }
