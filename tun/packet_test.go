package tun

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// The addresses of the tests, as in the flannel recording
// (../testdata/flannel): a pod on h2 talking to a pod on h1.
var (
	pod1 = netip.MustParseAddr("100.96.1.2")
	pod2 = netip.MustParseAddr("100.96.2.2")
	pod3 = netip.MustParseAddr("100.96.3.3")
)

// TCP flag bits, as in the header's byte 13.
const (
	flagFIN = 0x01
	flagSYN = 0x02
	flagRST = 0x04
	flagPSH = 0x08
	flagACK = 0x10
	flagURG = 0x20
	flagECE = 0x40
	flagCWR = 0x80
)

// tcpSpec describes a TCP/IPv4 packet for build. Zero fields are left zero
// in the packet, except the addresses, ports and TTL, which default to a
// flow from pod2:40000 to pod1:5201 with TTL 63.
type tcpSpec struct {
	src, dst     netip.Addr
	sport, dport uint16
	seq, ack     uint32
	flags        byte
	window       uint16
	urgent       uint16
	ttl, tos     byte
	id           uint16
	ipFlags      layers.IPv4Flag
	fragOffset   uint16
	ipOptions    []layers.IPv4Option
	tcpOptions   []layers.TCPOption
	payload      []byte
}

func (s tcpSpec) withDefaults() tcpSpec {
	if !s.src.IsValid() {
		s.src = pod2
	}
	if !s.dst.IsValid() {
		s.dst = pod1
	}
	if s.sport == 0 {
		s.sport = 40000
	}
	if s.dport == 0 {
		s.dport = 5201
	}
	if s.ttl == 0 {
		s.ttl = 63
	}
	return s
}

// build serializes the packet with gopacket, lengths and checksums right.
func (s tcpSpec) build() []byte {
	s = s.withDefaults()
	ip := &layers.IPv4{
		Version: 4, TOS: s.tos, Id: s.id, Flags: s.ipFlags, FragOffset: s.fragOffset,
		TTL: s.ttl, Protocol: layers.IPProtocolTCP,
		SrcIP: s.src.AsSlice(), DstIP: s.dst.AsSlice(), Options: s.ipOptions,
	}
	tcp := &layers.TCP{
		SrcPort: layers.TCPPort(s.sport), DstPort: layers.TCPPort(s.dport),
		Seq: s.seq, Ack: s.ack, Window: s.window, Urgent: s.urgent,
		FIN: s.flags&flagFIN != 0, SYN: s.flags&flagSYN != 0, RST: s.flags&flagRST != 0,
		PSH: s.flags&flagPSH != 0, ACK: s.flags&flagACK != 0, URG: s.flags&flagURG != 0,
		ECE: s.flags&flagECE != 0, CWR: s.flags&flagCWR != 0,
		Options: s.tcpOptions,
	}
	if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
		panic(err)
	}
	return serialize(ip, tcp, gopacket.Payload(s.payload))
}

// udpSpec describes a UDP/IPv4 packet for build, with the same defaults as
// tcpSpec.
type udpSpec struct {
	src, dst     netip.Addr
	sport, dport uint16
	ttl, tos     byte
	id           uint16
	ipFlags      layers.IPv4Flag
	ipOptions    []layers.IPv4Option
	payload      []byte
}

func (s udpSpec) build() []byte {
	t := tcpSpec{src: s.src, dst: s.dst, sport: s.sport, dport: s.dport, ttl: s.ttl}.withDefaults()
	ip := &layers.IPv4{
		Version: 4, TOS: s.tos, Id: s.id, Flags: s.ipFlags, TTL: t.ttl,
		Protocol: layers.IPProtocolUDP,
		SrcIP:    t.src.AsSlice(), DstIP: t.dst.AsSlice(), Options: s.ipOptions,
	}
	udp := &layers.UDP{SrcPort: layers.UDPPort(t.sport), DstPort: layers.UDPPort(t.dport)}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		panic(err)
	}
	p := serialize(ip, udp, gopacket.Payload(s.payload))
	// gopacket leaves a computed 0 as 0, which on the wire means "no
	// checksum"; RFC 768 sends it as all ones.
	if at := len(p) - len(s.payload) - 2; p[at] == 0 && p[at+1] == 0 {
		p[at], p[at+1] = 0xff, 0xff
	}
	return p
}

func serialize(ls ...gopacket.SerializableLayer) []byte {
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		panic(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// Options the tests put on packets.
var (
	// Timestamps, as Linux sends on every segment: NOP, NOP, TS (12 bytes).
	tsOptions = func(val, ecr uint32) []layers.TCPOption {
		d := make([]byte, 8)
		binary.BigEndian.PutUint32(d, val)
		binary.BigEndian.PutUint32(d[4:], ecr)
		return []layers.TCPOption{
			{OptionType: layers.TCPOptionKindNop},
			{OptionType: layers.TCPOptionKindNop},
			{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: d},
		}
	}
	// Router Alert (RFC 2113): 4 bytes of IP options that change no address.
	raOption = []layers.IPv4Option{{OptionType: 148, OptionLength: 4, OptionData: []byte{0, 0}}}
)

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

// checkIPv4 checks, byte by byte and without the code under test, that p is
// a whole IPv4 packet carrying TCP or UDP with a correct header checksum,
// total length and transport checksum (a UDP one not zero).
func checkIPv4(p []byte) error { return checkIPv4Sums(p, true) }

// checkIPv4Sums is checkIPv4, leaving out the header checksum if not
// headerSum.
func checkIPv4Sums(p []byte, headerSum bool) error {
	if len(p) < 20 || p[0]>>4 != 4 {
		return fmt.Errorf("not IPv4")
	}
	ihl := int(p[0]&0x0f) * 4
	if ihl < 20 || ihl > len(p) {
		return fmt.Errorf("IHL %d of a %d-byte packet", ihl, len(p))
	}
	if got := int(binary.BigEndian.Uint16(p[2:])); got != len(p) {
		return fmt.Errorf("total length %d, packet has %d bytes", got, len(p))
	}
	if s := refSum(p[:ihl], 0); headerSum && s != 0xffff {
		return fmt.Errorf("IPv4 header checksum %#04x wrong (sum %#04x)", binary.BigEndian.Uint16(p[10:]), s)
	}
	t := p[ihl:]
	switch p[9] {
	case 6:
		if len(t) < 20 || int(t[12]>>4)*4 < 20 || int(t[12]>>4)*4 > len(t) {
			return fmt.Errorf("bad TCP header")
		}
	case 17:
		if len(t) < 8 {
			return fmt.Errorf("short UDP header")
		}
		if got := int(binary.BigEndian.Uint16(t[4:])); got != len(t) {
			return fmt.Errorf("UDP length %d, datagram has %d bytes", got, len(t))
		}
		if t[6] == 0 && t[7] == 0 {
			return fmt.Errorf("UDP checksum 0 (none)")
		}
	default:
		return fmt.Errorf("protocol %d", p[9])
	}
	if s := refSum(t, refPseudo(p, p[9], len(t))); s != 0xffff {
		return fmt.Errorf("protocol %d checksum wrong (sum %#04x)", p[9], s)
	}
	return nil
}

// decode parses p with gopacket and fails on any decoding error.
func decode(p []byte) (*layers.IPv4, gopacket.Packet, error) {
	pk := gopacket.NewPacket(p, layers.LayerTypeIPv4, gopacket.Default)
	if e := pk.ErrorLayer(); e != nil {
		return nil, nil, fmt.Errorf("gopacket: %v", e.Error())
	}
	ip, ok := pk.NetworkLayer().(*layers.IPv4)
	if !ok {
		return nil, nil, fmt.Errorf("gopacket: no IPv4 layer")
	}
	return ip, pk, nil
}

// flatten joins a segment's head and payload into one packet.
func flatten(s Segment) []byte {
	return append(append([]byte(nil), s.Head...), s.Payload...)
}

// withHeadroom copies p behind off bytes of headroom, as the engine holds
// packets, with room to grow to 64 KiB past the headroom.
func withHeadroom(p []byte, off int) []byte {
	b := make([]byte, off+len(p), off+65536)
	copy(b[off:], p)
	return b
}
