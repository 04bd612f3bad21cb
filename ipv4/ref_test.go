package ipv4

import "encoding/binary"

// refSum is the one's-complement sum of b added to init, 16 bits at a time
// as RFC 1071 describes it, folded: the slow, obviously right reference.
func refSum(b []byte, init uint64) uint16 {
	s := init
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	for i := 0; i+1 < len(b); i += 2 {
		s += uint64(b[i])<<8 | uint64(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint64(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// refPseudo is the IPv4 pseudo-header sum of a transport segment of length
// l, 16 bits at a time.
func refPseudo(ip []byte, proto byte, l int) uint64 {
	var s uint64
	for i := 12; i < 20; i += 2 {
		s += uint64(binary.BigEndian.Uint16(ip[i:]))
	}
	return s + uint64(proto) + uint64(l)
}
