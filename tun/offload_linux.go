package tun

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	wgtun "golang.zx2c4.com/wireguard/tun"
)

// openOffloadQueue opens one queue of the device with a virtio-net header
// (IFF_VNET_HDR) and hands it to wireguard-go's tun package, which reads the
// flags back and turns the offloads on: TUNSETOFFLOAD with CSUM, TSO4 and
// TSO6, plus USO4/USO6 where the kernel has them (6.2). Its Read splits a
// TCP or UDP super-packet into segments with valid checksums, and its Write
// coalesces TCP and UDP segments of one flow into super-packets (GRO).
//
// songgao/water cannot do this: it never sets IFF_VNET_HDR, and the flag
// cannot be added to a queue once TUNSETIFF has run.
func openOffloadQueue(name string) (Device, error) {
	fd, err := openVnetFD(name, 0)
	if err != nil {
		return nil, err
	}
	// The unmonitored variant: weftd watches the link itself and needs no
	// goroutines per queue listening to netlink.
	dev, _, err := wgtun.CreateUnmonitoredTUNFromFD(fd)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("offload: %w", err)
	}
	if dev.BatchSize() <= 1 {
		dev.Close()
		return nil, fmt.Errorf("offload: kernel refused the virtio-net header")
	}
	return newOffloadQueue(dev, dev.(interface{ File() *os.File }).File()), nil
}

// maxCopiedSegments is the most segments a super-packet from the kernel
// can have: 64 KiB of TCP payload cut at the smallest MSS Linux sends
// (TCP_MIN_SND_MSS, 48 bytes). UDP super-packets have at most 128.
const maxCopiedSegments = 65535/48 + 1

// offloadQueue adapts wireguard-go's device to Device. Its Write reports
// bytes, not packets, and joins the errors of the packets it could not
// write; offloadQueue reports packets, and on error none as known written.
//
// Its Read cuts a super-packet into as many buffers as it is given and
// drops one of more segments; it indexes past a buffer shorter than a
// segment, and past the packet on some virtio-net headers the kernel never
// makes. So it is given buffers of 64 KiB (Caps.ReadSize), spare buffers
// past the caller's for the segments of a super-packet that do not fit,
// handed over by the Reads after, and a panic in it is a dropped packet.
type offloadQueue struct {
	dev  wgtun.Device
	file *os.File

	// Read's; one reader at a time. all is the caller's buffers followed
	// by spare: spare[i] holds the segment after the caller's i-th, at
	// most 120 bytes of headers plus 64 KiB/(callers+i) of payload.
	all     [][]byte
	spare   [][]byte
	sizes   []int
	callers int // the buffers the caller gave when spare was cut
	offset  int // and the offset
	next    int // the first spare segment not handed over
	pending int // the spare segments held
}

func newOffloadQueue(dev wgtun.Device, f *os.File) *offloadQueue {
	return &offloadQueue{dev: dev, file: f, sizes: make([]int, maxCopiedSegments)}
}

// Caps implements Device: its Read may write a segment of any size into
// each buffer, and its Write coalesces segments into the first one's
// buffer, after a virtio-net header it writes in front of it.
func (q *offloadQueue) Caps() Caps {
	return Caps{Batch: q.dev.BatchSize(), ReadSize: 65535, WriteSize: 65535, WriteHeadroom: virtioNetHdrLen}
}

func (q *offloadQueue) SyscallConn() (syscall.RawConn, error) { return q.file.SyscallConn() }

func (q *offloadQueue) SetReadDeadline(t time.Time) error { return q.file.SetReadDeadline(t) }

// Read hands over what wireguard-go's device read, the segments of a
// super-packet window by window. Its errors other than a closed or failing
// file are about one packet (a super-packet of more segments than the
// kernel makes, a virtio-net header it does not handle): the packet is
// gone, the device is not, so they become ErrDropped.
func (q *offloadQueue) Read(bufs [][]byte, sizes []int, offset int) (n int, err error) {
	if q.next < q.pending {
		n = min(q.pending-q.next, len(bufs))
		for i := range n {
			k := q.next + i
			sizes[i] = copy(bufs[i][offset:], q.spare[k][offset:offset+q.sizes[q.callers+k]])
		}
		q.next += n
		return n, nil
	}
	q.next, q.pending = 0, 0
	all := q.withSpares(bufs, offset)
	defer func() {
		if recover() != nil {
			n, err = 0, ErrDropped
		}
	}()
	m, err := q.dev.Read(all, q.sizes, offset)
	if err != nil {
		if !fileFailed(err) {
			err = ErrDropped
		}
		return 0, err
	}
	if m == 0 {
		return 0, ErrDropped // a super-packet of headers only: nothing to hand over
	}
	n = min(m, len(bufs))
	copy(sizes, q.sizes[:n])
	q.pending = m - n
	return n, nil
}

// fileFailed reports whether err, from wireguard-go's Read, is about the
// file (closed, or a failed read), not one packet. Apart from Read, so that
// the error's target is allocated only when there is an error.
func fileFailed(err error) bool {
	var pathErr *os.PathError
	return errors.Is(err, os.ErrClosed) || errors.As(err, &pathErr)
}

// withSpares is bufs followed by the spare buffers, cut anew only when the
// caller's number of buffers or offset changes. Segment k of a super-packet
// exists only if k segments of payload come before it, so its payload is at
// most 64 KiB/k: the spares get smaller, and all of them take under 1 MiB.
func (q *offloadQueue) withSpares(bufs [][]byte, offset int) [][]byte {
	if q.all == nil || len(bufs) != q.callers || offset != q.offset {
		q.callers, q.offset = len(bufs), offset
		q.spare = q.spare[:0]
		size := func(k int) int { return offset + MaxHeader + 65535/max(k, 1) + 1 }
		total := 0
		for k := len(bufs); k < maxCopiedSegments; k++ {
			total += size(k)
		}
		slab := make([]byte, total)
		for k := len(bufs); k < maxCopiedSegments; k++ {
			q.spare, slab = append(q.spare, slab[:size(k):size(k)]), slab[size(k):]
		}
		q.all = make([][]byte, 0, maxCopiedSegments)
	}
	q.all = append(append(q.all[:0], bufs...), q.spare...)
	return q.all
}

// ReadGSO implements Device: wireguard-go's device hands over segments,
// never super-packets.
func (q *offloadQueue) ReadGSO(bufs [][]byte, sizes []int, gso []GSO, offset int) (int, error) {
	n, err := q.Read(bufs, sizes, offset)
	clear(gso[:n])
	return n, err
}

func (q *offloadQueue) Write(bufs [][]byte, offset int) (int, error) {
	if _, err := q.dev.Write(bufs, offset); err != nil {
		return 0, err
	}
	return len(bufs), nil
}

func (q *offloadQueue) Close() error { return q.dev.Close() }

// openVnetFD opens one more queue of the TUN device name with a virtio-net
// header (IFF_TUN, IFF_NO_PI, IFF_VNET_HDR, IFF_MULTI_QUEUE); flags are
// extra open(2) flags such as O_NONBLOCK.
func openVnetFD(name string, flags int) (int, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|flags, 0)
	if err != nil {
		return -1, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return -1, err
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI | unix.IFF_VNET_HDR | unix.IFF_MULTI_QUEUE)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("TUNSETIFF with IFF_VNET_HDR: %w", err)
	}
	return fd, nil
}
