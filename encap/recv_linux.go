package encap

import (
	"encoding/binary"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/weft-dev/weft/internal/busypoll"
)

// recvBatch receives datagrams with recvmmsg(2) into slots set up once, so
// that a receive allocates nothing: golang.org/x/net's ReadBatch allocates
// each datagram's source address (two objects per datagram), which under
// load is most of weftd's garbage.
type recvBatch struct {
	slots []recvSlot
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet4

	// The call itself, made once: a closure built per receive would be
	// one more allocation.
	read  func(fd uintptr) bool
	k, n  int
	errno syscall.Errno

	// poll keeps the receive polling for a while after traffic; nil
	// sleeps as soon as nothing is ready.
	poll *busypoll.Window
}

// recvSlot is one datagram of a batch: the buffer it lands in, its control
// buffer, and what the kernel said of it.
type recvSlot struct {
	buf   []byte
	oob   []byte
	n     int // bytes received
	nn    int // control bytes received
	flags int // msg_flags: MSG_TRUNC, MSG_CTRUNC
	from  netip.AddrPort
}

// mmsghdr is the kernel's struct mmsghdr (64-bit layout: Go pads it as C does).
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

func newRecvBatch(n int) *recvBatch {
	b := &recvBatch{
		slots: make([]recvSlot, n),
		hdrs:  make([]mmsghdr, n),
		iovs:  make([]unix.Iovec, n),
		names: make([]unix.RawSockaddrInet4, n),
	}
	b.read = func(fd uintptr) bool {
		for {
			r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[0])), uintptr(b.k), 0, 0, 0)
			switch e {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				if b.poll.Again() {
					continue
				}
				return false // wait for the socket to be readable
			}
			b.n, b.errno = int(r), e
			if e == 0 {
				b.poll.Traffic()
			}
			return true
		}
	}
	return b
}

// recv waits until the socket is readable, then receives up to k datagrams
// into the first k slots, and returns how many arrived.
func (b *recvBatch) recv(raw syscall.RawConn, k int) (int, error) {
	for i := range k {
		s, h := &b.slots[i], &b.hdrs[i]
		*h = mmsghdr{}
		b.iovs[i] = unix.Iovec{Base: unsafe.SliceData(s.buf)}
		b.iovs[i].SetLen(len(s.buf))
		h.hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		h.hdr.Namelen = unix.SizeofSockaddrInet4
		h.hdr.Iov = &b.iovs[i]
		h.hdr.SetIovlen(1)
		if len(s.oob) > 0 {
			h.hdr.Control = &s.oob[0]
			h.hdr.SetControllen(len(s.oob))
		}
	}
	b.k, b.n, b.errno = k, 0, 0
	if err := raw.Read(b.read); err != nil {
		return 0, err
	}
	if b.errno != 0 {
		return 0, b.errno
	}
	n := b.n
	for i := range n {
		s, h, a := &b.slots[i], &b.hdrs[i], &b.names[i]
		s.n, s.nn, s.flags = int(h.n), int(h.hdr.Controllen), int(h.hdr.Flags)
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&a.Port))[:])
		s.from = netip.AddrPortFrom(netip.AddrFrom4(a.Addr), port)
	}
	return n, nil
}
