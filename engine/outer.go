package engine

import (
	"encoding/binary"
	"net/netip"

	"github.com/weft-dev/weft/encap"

	"github.com/weft-dev/weft/ipv4"
)

// outerLen is what the outer IPv4 and UDP headers of a datagram take.
const outerLen = encap.Overhead

// Fields of the outer headers the socket does not tell: what Linux puts on
// an unconnected UDP socket's datagrams by default.
const (
	outerTTL   = 64          // net.ipv4.ip_default_ttl
	outerFlags = ipv4.FlagDF // path MTU discovery is on (IP_PMTUDISC_WANT)
)

// writeOuter writes into hdr (outerLen bytes) the IPv4 and UDP headers of a
// datagram from src to dst carrying an inner packet of length total, of
// which kept holds the first bytes. Lengths are the real ones and the IPv4
// checksum is valid; so is the UDP checksum when kept is the whole payload,
// else it is 0 ("none", RFC 768), since the rest cannot be summed. The IP
// ID is 0: the kernel's choice is not visible to the socket.
func writeOuter(hdr []byte, src, dst netip.AddrPort, total int, kept []byte) {
	ip, udp := hdr[:ipv4.MinHeaderLen], hdr[ipv4.MinHeaderLen:outerLen]
	clear(hdr)
	ip[ipv4.OffVersionIHL] = ipv4.VersionIHL5
	binary.BigEndian.PutUint16(ip[ipv4.OffTotalLen:], uint16(min(outerLen+total, ipv4.MaxPacketLen)))
	binary.BigEndian.PutUint16(ip[ipv4.OffFlagsFrag:], outerFlags)
	ip[ipv4.OffTTL] = outerTTL
	ip[ipv4.OffProto] = ipv4.ProtoUDP
	s, d := src.Addr().Unmap(), dst.Addr().Unmap()
	if s.Is4() {
		a := s.As4()
		copy(ip[ipv4.OffSrc:], a[:])
	}
	if d.Is4() {
		a := d.As4()
		copy(ip[ipv4.OffDst:], a[:])
	}
	binary.BigEndian.PutUint16(ip[ipv4.OffChecksum:], ipv4.Checksum(ip))

	udpLen := uint16(min(ipv4.UDPHeaderLen+total, ipv4.MaxPacketLen))
	binary.BigEndian.PutUint16(udp[ipv4.UDPOffSrcPort:], src.Port())
	binary.BigEndian.PutUint16(udp[ipv4.UDPOffDstPort:], dst.Port())
	binary.BigEndian.PutUint16(udp[ipv4.UDPOffLen:], udpLen)
	if len(kept) != total {
		return
	}
	// hdr is followed by kept in the caller's buffer, but sum them apart so
	// that writeOuter does not depend on it; the 8-byte header keeps kept's
	// words aligned.
	sum := ipv4.Sum(udp, ipv4.PseudoHeaderSum(ip, ipv4.ProtoUDP, int(udpLen)))
	c := ^ipv4.Fold(ipv4.Sum(kept, sum))
	if c == 0 {
		c = 0xffff // a computed 0 is sent as all ones (RFC 768)
	}
	binary.BigEndian.PutUint16(udp[ipv4.UDPOffChecksum:], c)
}
