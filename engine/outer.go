package engine

import (
	"encoding/binary"
	"net/netip"

	"github.com/weft-dev/weft/encap"
)

// outerLen is what the outer IPv4 and UDP headers of a datagram take.
const outerLen = encap.Overhead

// Fields of the outer headers the socket does not tell: what Linux puts on
// an unconnected UDP socket's datagrams by default.
const (
	outerTTL   = 64     // net.ipv4.ip_default_ttl
	outerFlags = 0x4000 // DF: path MTU discovery is on (IP_PMTUDISC_WANT)
	udpProto   = 17
)

// writeOuter writes into hdr (outerLen bytes) the IPv4 and UDP headers of a
// datagram from src to dst carrying an inner packet of length total, of
// which kept holds the first bytes. Lengths are the real ones and the IPv4
// checksum is valid; so is the UDP checksum when kept is the whole payload,
// else it is 0 ("none", RFC 768), since the rest cannot be summed. The IP
// ID is 0: the kernel's choice is not visible to the socket.
func writeOuter(hdr []byte, src, dst netip.AddrPort, total int, kept []byte) {
	ip, udp := hdr[:20], hdr[20:outerLen]
	clear(hdr)
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(min(outerLen+total, 65535)))
	binary.BigEndian.PutUint16(ip[6:], outerFlags)
	ip[offTTL] = outerTTL
	ip[offProto] = udpProto
	s, d := src.Addr().Unmap(), dst.Addr().Unmap()
	if s.Is4() {
		a := s.As4()
		copy(ip[offSrc:], a[:])
	}
	if d.Is4() {
		a := d.As4()
		copy(ip[offDst:], a[:])
	}
	binary.BigEndian.PutUint16(ip[offChecksum:], checksum(ip, 0))

	udpLen := uint16(min(8+total, 65535))
	binary.BigEndian.PutUint16(udp[0:], src.Port())
	binary.BigEndian.PutUint16(udp[2:], dst.Port())
	binary.BigEndian.PutUint16(udp[4:], udpLen)
	if len(kept) != total {
		return
	}
	// The pseudo-header: addresses, protocol, UDP length (RFC 768).
	pseudo := uint32(binary.BigEndian.Uint16(ip[12:])) + uint32(binary.BigEndian.Uint16(ip[14:])) +
		uint32(binary.BigEndian.Uint16(ip[16:])) + uint32(binary.BigEndian.Uint16(ip[18:])) +
		udpProto + uint32(udpLen)
	// hdr is followed by kept in the caller's buffer, but sum them apart so
	// that writeOuter does not depend on it.
	partial := ^checksum(udp, pseudo) // the 8-byte header keeps kept's words aligned
	sum := checksum(kept, uint32(partial))
	if sum == 0 {
		sum = 0xffff // a computed 0 is sent as all ones (RFC 768)
	}
	binary.BigEndian.PutUint16(udp[6:], sum)
}
