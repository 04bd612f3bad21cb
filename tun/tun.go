// Package tun opens and configures the TUN device that carries pod packets
// between the kernel and weft, and reads and writes packets in batches.
package tun

import "errors"

// Device is one queue of a TUN device, read and written in batches.
// The engine sees only this interface, so an offloading device (virtio-net
// header, GSO/GRO) can replace the plain one without touching it.
type Device interface {
	// Read blocks until at least one packet is ready, then reads up to
	// len(bufs) packets: packet i into bufs[i][offset:], its length into
	// sizes[i]. It returns the number of packets read. len(sizes) must be
	// >= len(bufs), and offset must be at least Headroom.
	Read(bufs [][]byte, sizes []int, offset int) (n int, err error)

	// Write writes each bufs[i][offset:] as one packet (an offloading device
	// may coalesce them first, growing bufs[i] within its capacity). It
	// writes every packet it can and returns how many it knows written; on
	// error, at least one was refused. Write is safe to call concurrently
	// with Read and with itself.
	Write(bufs [][]byte, offset int) (n int, err error)

	// BatchSize is the most packets one Read returns.
	BatchSize() int

	// Close releases the queue; a blocked Read returns an error.
	Close() error
}

// ErrDropped is what Read returns when the device consumed a packet it
// cannot hand over (a super-packet it cannot cut): the caller counts one
// drop and reads on. Any other error means the device is gone.
var ErrDropped = errors.New("tun: a packet read could not be handed over")

// Headroom is the offset every Device accepts: room in front of each packet
// for a device's own header (the 10-byte virtio-net header of an offloading
// device), so that no packet needs moving.
const Headroom = 16
