package tun

import (
	"errors"
	"fmt"
	"os"

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
	return offloadQueue{dev}, nil
}

// offloadQueue adapts wireguard-go's device to Device. Its Write reports
// bytes, not packets, and joins the errors of the packets it could not
// write; offloadQueue reports packets, and on error none as known written.
type offloadQueue struct {
	dev wgtun.Device
}

// Read hands over what wireguard-go's device read. Its errors other than a
// closed or failing file are about one packet (a super-packet with more
// segments than bufs, a virtio-net header it does not handle): the packet
// is gone, the device is not, so they become ErrDropped.
func (q offloadQueue) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := q.dev.Read(bufs, sizes, offset)
	var pathErr *os.PathError
	if err != nil && !errors.Is(err, os.ErrClosed) && !errors.As(err, &pathErr) {
		return 0, ErrDropped
	}
	return n, err
}

func (q offloadQueue) Write(bufs [][]byte, offset int) (int, error) {
	if _, err := q.dev.Write(bufs, offset); err != nil {
		return 0, err
	}
	return len(bufs), nil
}

func (q offloadQueue) BatchSize() int { return q.dev.BatchSize() }

func (q offloadQueue) Close() error { return q.dev.Close() }

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
