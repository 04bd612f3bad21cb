package engine

// Drop is why the engine discarded a packet. Every drop is counted under its
// reason; the names are the label values of weft_drops_total{reason}.
type Drop uint8

// The drop reasons. DropNone means the packet goes on.
const (
	DropNone          Drop = iota
	DropTruncated          // shorter than an IPv4 header, or cut short by the receive buffer
	DropNotIPv4            // IP version is not 4 (IPv6 the kernel sends to the TUN lands here too)
	DropBadHeaderLen       // IHL below 5 words or beyond the bytes read
	DropBadTotalLen        // total length below the header length or beyond the bytes read
	DropBadChecksum        // header checksum wrong (checked on packets from the wire)
	DropTTLExpired         // TTL would reach 0
	DropNoRoute            // no lease covers the destination; ICMP net unreachable sent back
	DropForeignSource      // a packet from the TUN whose source is not in this host's subnet: no peer would take it as ours
	DropUnknownPeer        // outer source address of a datagram is no peer of ours
	DropWrongPeerPort      // outer source address is a peer's, its port is not that peer's port (flanneld and weftd send from the port they listen on)
	DropSpoofedSource      // inner source is not in the subnet of the peer that sent it
	DropNotLocal           // inner destination of a datagram is not in our subnet
	DropSendError          // the UDP socket refused the datagram
	DropTUNWriteError      // the TUN device refused the packet
	DropBadGSO             // a packet the TUN device could not hand over whole: a super-packet that cannot be cut, a virtio-net header it does not know
	numDrops
)

var dropNames = [numDrops]string{
	DropNone:          "none",
	DropTruncated:     "truncated",
	DropNotIPv4:       "not-ipv4",
	DropBadHeaderLen:  "bad-header-length",
	DropBadTotalLen:   "bad-total-length",
	DropBadChecksum:   "bad-checksum",
	DropTTLExpired:    "ttl-expired",
	DropNoRoute:       "no-route",
	DropForeignSource: "foreign-source",
	DropUnknownPeer:   "unknown-peer",
	DropWrongPeerPort: "wrong-peer-port",
	DropSpoofedSource: "spoofed-source",
	DropNotLocal:      "not-local-destination",
	DropSendError:     "send-error",
	DropTUNWriteError: "tun-write-error",
	DropBadGSO:        "bad-gso",
}

func (d Drop) String() string {
	if d < numDrops {
		return dropNames[d]
	}
	return "unknown"
}

// DropReasons lists every reason a packet can be dropped for, so that
// metrics can export each one, zero or not.
func DropReasons() []Drop {
	r := make([]Drop, 0, numDrops-1)
	for d := DropNone + 1; d < numDrops; d++ {
		r = append(r, d)
	}
	return r
}
