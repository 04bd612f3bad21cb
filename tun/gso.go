package tun

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/weft-dev/weft/ipv4"
)

// GSOKind is what a packet read from an offloading TUN is.
type GSOKind uint8

const (
	GSONone  GSOKind = iota // one packet
	GSOTCPv4                // a TCP/IPv4 super-packet, to be cut into SegmentSize payloads
	GSOUDPv4                // a UDP/IPv4 super-packet (USO), likewise
	// GSOInvalid marks a packet the device read but cannot hand over (a
	// virtio-net header it does not know, a checksum it cannot finish):
	// the caller drops and counts it.
	GSOInvalid
)

// GSO describes a packet as the kernel handed it over (the virtio-net header).
type GSO struct {
	Kind GSOKind
	// SegmentSize is the payload bytes of every segment but the last.
	SegmentSize int
	// NeedsCsum says the transport checksum is not done: its field holds
	// the pseudo-header sum, the rest is the receiver's to add (CHECKSUM_PARTIAL).
	NeedsCsum  bool
	CsumStart  int // where the checksummed bytes start (the transport header)
	CsumOffset int // where, after CsumStart, the checksum field is
}

// Segment is one packet cut from a super-packet without copying its
// payload: on the wire it is Head followed by Payload.
type Segment struct {
	Head    []byte // IPv4 and transport headers, fixed up for this segment
	Payload []byte // a slice of the super-packet
}

// MaxHeader is the most header bytes a segment can have: 60 of IPv4, 60 of TCP.
const MaxHeader = ipv4.MaxHeaderLen + ipv4.TCPMaxHeaderLen

// MaxSegments is the most segments Split makes of one super-packet; the
// kernel's TUN never exceeds 64 KiB of payload and an MSS below 1000 is rare,
// and UDP_SEGMENT takes at most 64 per send.
const MaxSegments = 64

var errTooManySegments = errors.New("gso: more segments than buffers")

// Split cuts the IPv4 super-packet pkt into segments as the kernel's GSO
// would, writing each segment's headers into heads (MaxHeader bytes a
// segment) and returning the segments in out. Payloads are not copied: each
// is a slice of pkt. Every segment gets a complete IPv4 header checksum and
// a complete TCP or UDP checksum; the payload of each is summed once.
func Split(pkt []byte, g GSO, heads []byte, out []Segment) (int, error) {
	n, total, err := SplitFrom(pkt, g, 0, heads, out)
	if err == nil && n < total {
		return 0, errTooManySegments
	}
	return n, err
}

// SplitFrom is Split for a window of the segments: it makes segments first,
// first+1, ... as far as out and heads hold them, and returns how many it
// made and how many the super-packet has in all. A super-packet of more
// segments than one send may carry (a small MSS) is cut window by window.
func SplitFrom(pkt []byte, g GSO, first int, heads []byte, out []Segment) (n, total int, err error) {
	if len(pkt) < ipv4.MinHeaderLen || pkt[ipv4.OffVersionIHL]>>4 != 4 {
		return 0, 0, errors.New("gso: not an IPv4 packet")
	}
	ihl := ipv4.HeaderLen(pkt)
	if ihl < ipv4.MinHeaderLen || ihl > len(pkt) {
		return 0, 0, errors.New("gso: bad IPv4 header length")
	}
	var thl int
	var proto byte
	switch g.Kind {
	case GSOTCPv4:
		if len(pkt) < ihl+ipv4.TCPMinHeaderLen {
			return 0, 0, errors.New("gso: short TCP header")
		}
		thl = ipv4.TCPHeaderLen(pkt[ihl:])
		proto = ipv4.ProtoTCP
	case GSOUDPv4:
		thl = ipv4.UDPHeaderLen
		proto = ipv4.ProtoUDP
	default:
		return 0, 0, fmt.Errorf("gso: kind %d cannot be split", g.Kind)
	}
	if pkt[ipv4.OffProto] != proto {
		return 0, 0, fmt.Errorf("gso: protocol %d does not match GSO kind %d", pkt[ipv4.OffProto], g.Kind)
	}
	hlen := ihl + thl
	// A TCP data offset below 5 would put the flags and checksum written
	// below past the header.
	if thl < ipv4.UDPHeaderLen || (proto == ipv4.ProtoTCP && thl < ipv4.TCPMinHeaderLen) || hlen > len(pkt) || hlen > MaxHeader {
		return 0, 0, errors.New("gso: bad transport header length")
	}
	if g.SegmentSize < 1 {
		return 0, 0, errors.New("gso: segment size 0")
	}
	payload := pkt[hlen:]
	if hlen+min(g.SegmentSize, len(payload)) > ipv4.MaxPacketLen {
		return 0, 0, errors.New("gso: segment larger than an IPv4 packet")
	}
	// Rounded up without adding, which overflows for a huge SegmentSize.
	total = len(payload) / g.SegmentSize
	if len(payload)%g.SegmentSize != 0 || total == 0 {
		total++
	}
	if first < 0 || first >= total {
		return 0, total, errors.New("gso: first segment out of range")
	}
	n = min(total-first, len(out), len(heads)/MaxHeader)
	if n == 0 {
		return 0, total, errTooManySegments
	}
	id := binary.BigEndian.Uint16(pkt[ipv4.OffID:])
	seq := uint32(0)
	if proto == ipv4.ProtoTCP {
		seq = binary.BigEndian.Uint32(pkt[ihl+ipv4.TCPOffSeq:])
	}
	for i := range n {
		k := first + i // the segment's number in the super-packet
		p := payload[min(k*g.SegmentSize, len(payload)):min((k+1)*g.SegmentSize, len(payload))]
		h := heads[i*MaxHeader : i*MaxHeader+hlen]
		copy(h, pkt[:hlen])
		binary.BigEndian.PutUint16(h[ipv4.OffTotalLen:], uint16(hlen+len(p)))
		binary.BigEndian.PutUint16(h[ipv4.OffID:], id+uint16(k))
		ipv4.SetHeaderChecksum(h[:ihl])
		t := h[ihl:]
		var csumAt int
		if proto == ipv4.ProtoTCP {
			binary.BigEndian.PutUint32(t[ipv4.TCPOffSeq:], seq+uint32(k*g.SegmentSize))
			if k < total-1 {
				t[ipv4.TCPOffFlags] &^= ipv4.TCPFlagFIN | ipv4.TCPFlagPSH // only on the last segment
			}
			if k > 0 {
				t[ipv4.TCPOffFlags] &^= ipv4.TCPFlagCWR // only on the first
			}
			csumAt = ipv4.TCPOffChecksum
		} else {
			binary.BigEndian.PutUint16(t[ipv4.UDPOffLen:], uint16(thl+len(p)))
			csumAt = ipv4.UDPOffChecksum
		}
		t[csumAt], t[csumAt+1] = 0, 0
		c := ^ipv4.Fold(ipv4.Sum(p, ipv4.Sum(t, ipv4.PseudoHeaderSum(h, proto, thl+len(p)))))
		if proto == ipv4.ProtoUDP && c == 0 {
			c = 0xffff // a UDP checksum of 0 means none
		}
		binary.BigEndian.PutUint16(t[csumAt:], c)
		out[i] = Segment{Head: h, Payload: p}
	}
	return n, total, nil
}

// Checksum completes the transport checksum of a packet the kernel left
// partial (GSO.NeedsCsum): the field holds the pseudo-header sum, to which
// the sum of the bytes from CsumStart is added.
func Checksum(pkt []byte, g GSO) error {
	if g.CsumStart < 0 || g.CsumOffset < 0 || g.CsumStart > len(pkt) ||
		g.CsumOffset > len(pkt)-g.CsumStart-2 { // no sum that can overflow
		return errors.New("gso: checksum offset beyond the packet")
	}
	at := g.CsumStart + g.CsumOffset
	// The field's current value (the pseudo-header sum) is part of the sum.
	c := ipv4.Checksum(pkt[g.CsumStart:])
	if c == 0 {
		// As the kernel's skb_checksum_help (CSUM_MANGLED_0): for UDP a
		// zero would mean "no checksum"; for TCP ffff is the same number.
		c = 0xffff
	}
	binary.BigEndian.PutUint16(pkt[at:], c)
	return nil
}
