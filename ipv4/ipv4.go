// Package ipv4 is the data path's one vocabulary for the headers it reads
// and writes: where the fields of an IPv4, UDP and TCP header sit (RFC 791,
// RFC 768, RFC 9293), the protocol numbers, and the Internet checksum
// (RFC 1071). The data path reads header bytes at these fixed offsets, with
// no decoding library and no allocation; this package imports nothing of
// weft, so every other package may use it.
package ipv4

import "encoding/binary"

// IPv4 header (RFC 791, 3.1): lengths and the offsets of its fields.
const (
	MinHeaderLen = 20    // a header without options
	MaxHeaderLen = 60    // IHL is 4 bits of 32-bit words
	MaxPacketLen = 65535 // the total length field is 16 bits

	// VersionIHL5 is the first byte of a header without options: version
	// 4, IHL 5.
	VersionIHL5 = 0x45

	OffVersionIHL = 0  // version (high 4 bits), header length in 32-bit words (low 4)
	OffTOS        = 1  // type of service: DSCP and ECN
	OffTotalLen   = 2  // the whole packet's length, header included
	OffID         = 4  // identification, for reassembly
	OffFlagsFrag  = 6  // flags (3 bits) and fragment offset (13 bits), one big-endian word
	OffTTL        = 8  // time to live
	OffProto      = 9  // the protocol of the payload
	OffChecksum   = 10 // the header checksum
	OffSrc        = 12 // source address
	OffDst        = 16 // destination address
)

// Flags and fragment offset, as bits of the big-endian word at OffFlagsFrag.
const (
	FlagReserved   = 0x8000 // the evil bit: must be 0
	FlagDF         = 0x4000 // don't fragment
	FlagMF         = 0x2000 // more fragments follow
	FragOffsetMask = 0x1fff // where a fragment's data goes, in 8-byte units
)

// Protocol numbers (IANA) weft meets in the OffProto byte.
const (
	ProtoICMP = 1
	ProtoTCP  = 6
	ProtoUDP  = 17
)

// UDP header (RFC 768): offsets from the start of the UDP header.
const (
	UDPHeaderLen   = 8
	UDPOffSrcPort  = 0
	UDPOffDstPort  = 2
	UDPOffLen      = 4 // header and payload
	UDPOffChecksum = 6 // 0: the sender computed none
)

// TCP header (RFC 9293, 3.1): offsets from the start of the TCP header.
const (
	TCPMinHeaderLen  = 20
	TCPMaxHeaderLen  = 60 // the data offset is 4 bits of 32-bit words
	TCPOffSrcPort    = 0
	TCPOffDstPort    = 2
	TCPOffSeq        = 4
	TCPOffAck        = 8
	TCPOffDataOffset = 12 // header length in 32-bit words (high 4 bits)
	TCPOffFlags      = 13
	TCPOffWindow     = 14
	TCPOffChecksum   = 16
	TCPOffUrgent     = 18
)

// TCP flags, the bits of the byte at TCPOffFlags.
const (
	TCPFlagFIN = 0x01
	TCPFlagSYN = 0x02
	TCPFlagRST = 0x04
	TCPFlagPSH = 0x08
	TCPFlagACK = 0x10
	TCPFlagURG = 0x20
	TCPFlagECE = 0x40
	TCPFlagCWR = 0x80
)

// HeaderLen is the length in bytes of the IPv4 header p starts with, as its
// IHL field says. p must hold at least one byte.
func HeaderLen(p []byte) int { return int(p[OffVersionIHL]&0x0f) * 4 }

// TCPHeaderLen is the length in bytes of the TCP header t starts with, as
// its data offset says. t must hold at least TCPOffDataOffset+1 bytes.
func TCPHeaderLen(t []byte) int { return int(t[TCPOffDataOffset]>>4) * 4 }

// Src and Dst return the addresses of the header p as big-endian uint32s.
func Src(p []byte) uint32 { return binary.BigEndian.Uint32(p[OffSrc:]) }
func Dst(p []byte) uint32 { return binary.BigEndian.Uint32(p[OffDst:]) }
