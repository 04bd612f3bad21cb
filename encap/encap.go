// Package encap holds weft's wire format, flannel's udp backend, and the
// batched UDP transport that carries it.
//
// On the wire a datagram's payload is the bare inner IPv4 packet, nothing
// before it, one inner packet per datagram, sent to the peer's Backend.Port.
// A flanneld peer reads exactly that, so there is no header to build or parse:
// the payload is the packet.
package encap

import (
	"net/netip"

	"github.com/weft-dev/weft/ipv4"
)

// DefaultPort is flannel's udp backend port: Backend.Port when the network
// config names none, and weftd's --port unless told otherwise.
const DefaultPort = 8285

// Overhead is what the outer IPv4 and UDP headers add to an inner packet:
// the TUN's MTU is the underlay's MTU minus Overhead.
const Overhead = ipv4.MinHeaderLen + ipv4.UDPHeaderLen

// Message is one datagram of a batch.
type Message struct {
	// Head, when sending, goes on the wire before Buf: a segment's own
	// headers in front of a payload that stays where it was read.
	Head []byte
	// Buf is, when reading, the buffer to receive into (its whole length is
	// offered; with Options.ZeroCopy the connection may point it at its own
	// buffer instead) and, when writing, the payload to send.
	Buf []byte
	// N is the number of bytes received into Buf.
	N int
	// Addr is the source of a received datagram or the destination of one to send.
	Addr netip.AddrPort
	// Truncated is set when a received datagram did not fit in Buf.
	Truncated bool
}

// Conn is a UDP socket read and written in batches.
type Conn interface {
	// ReadBatch blocks until at least one datagram arrives, then receives up
	// to len(msgs) datagrams and returns how many.
	ReadBatch(msgs []Message) (int, error)
	// WriteBatch sends msgs and returns how many were sent. When the socket
	// refuses one, WriteBatch returns the count before it and the error.
	WriteBatch(msgs []Message) (int, error)
	// Close closes the socket; blocked calls return an error.
	Close() error
}
