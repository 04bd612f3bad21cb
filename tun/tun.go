// Package tun opens and configures the TUN device that carries pod packets
// between the kernel and weft, and reads and writes packets in batches.
package tun

import (
	"errors"
	"syscall"
	"time"
)

// Device is one queue of a TUN device, read and written in batches.
// The engine sees only this interface, so an offloading device (virtio-net
// header, GSO/GRO) can replace the plain one without touching it. What a
// device needs of its caller and what it offers is in Caps, fixed when the
// device is opened: the caller asks once, at start, never per packet.
type Device interface {
	// Read blocks until at least one packet is ready, then reads up to
	// len(bufs) packets: packet i into bufs[i][offset:], its length into
	// sizes[i]. It returns the number of packets read. len(sizes) must be
	// >= len(bufs), offset at least Headroom, and each buffer must hold
	// Caps().ReadSize bytes past offset. A super-packet is handed over cut
	// into segments, window by window over as many Reads as it takes.
	Read(bufs [][]byte, sizes []int, offset int) (n int, err error)

	// ReadGSO is Read, except that a packet may be a super-packet handed
	// over uncut, described by gso[i], so that the caller can send its
	// segments without copying them (see Split); a packet with GSO Kind
	// GSONone is complete, its checksum done, and one marked GSOInvalid is
	// to be dropped and counted. len(gso) must be >= len(bufs). A device
	// without Caps().SuperPackets reads as Read does and marks every packet
	// GSONone.
	ReadGSO(bufs [][]byte, sizes []int, gso []GSO, offset int) (n int, err error)

	// Write writes each bufs[i][offset:] as one packet (an offloading device
	// may coalesce them first, growing bufs[i] up to Caps().WriteSize past
	// offset within its capacity). offset must be at least
	// Caps().WriteHeadroom. It writes every packet it can and returns how
	// many it knows written; on error, at least one was refused. Write is
	// safe to call concurrently with Read and with itself.
	Write(bufs [][]byte, offset int) (n int, err error)

	// Caps is what the device needs and offers; it never changes.
	Caps() Caps

	// SetReadDeadline ends a blocked Read or ReadGSO, and those after it,
	// at t, leaving writes open: weftd stops reading, then writes what it
	// holds.
	SetReadDeadline(t time.Time) error

	// SyscallConn gives access to the queue's descriptor without taking it
	// off Go's poller; a device with none returns an error.
	SyscallConn() (syscall.RawConn, error)

	// Close releases the queue; a blocked Read returns an error.
	Close() error
}

// Caps is what a Device needs of its caller and what it offers.
type Caps struct {
	// Batch is the most packets one Read or ReadGSO returns.
	Batch int
	// ReadSize is the bytes every read buffer must hold past the offset:
	// room for a super-packet, or for a segment of any size the kernel may
	// cut (the device's MTU can be raised from outside). 0: the MTU.
	ReadSize int
	// WriteSize is the bytes past the offset a written packet's buffer may
	// be grown to, if its capacity allows, for the device to coalesce
	// segments into it (0: the device never grows a packet). Capacity
	// short of it costs coalescing, never correctness.
	WriteSize int
	// WriteHeadroom is the bytes Write needs in front of every packet for
	// a header of its own; 0: packets may start at offset 0.
	WriteHeadroom int
	// SuperPackets says ReadGSO hands super-packets over uncut.
	SuperPackets bool
}

// ErrDropped is what Read returns when the device consumed a packet it
// cannot hand over (a super-packet it cannot cut): the caller counts one
// drop and reads on. Any other error means the device is gone.
var ErrDropped = errors.New("tun: a packet read could not be handed over")

// Headroom is the offset every Device accepts: room in front of each packet
// for a device's own header (the 10-byte virtio-net header of an offloading
// device), so that no packet needs moving. No device's Caps().WriteHeadroom
// exceeds it.
const Headroom = 16
