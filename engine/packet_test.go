package engine

import (
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/weft-dev/weft/ipv4"
)

// The hosts of the tests, as in the flannel recording (testdata/flannel at the top of the repo):
// this host is h1 with subnet 100.96.1.0/24; h2 and h3 are its peers.
var (
	localSubnet = netip.MustParsePrefix("100.96.1.0/24")
	h2          = netip.MustParseAddrPort("192.0.2.2:8285")
	h3          = netip.MustParseAddrPort("192.0.2.3:8285")
	stranger    = netip.MustParseAddrPort("203.0.113.9:8285") // leases nothing

	pod1    = netip.MustParseAddr("100.96.1.2") // on this host
	pod2    = netip.MustParseAddr("100.96.2.2") // on h2
	pod3    = netip.MustParseAddr("100.96.3.3") // on h3
	nowhere = netip.MustParseAddr("100.96.7.7") // in a subnet no host leases
)

// testRoutes is the table of h1: one route per peer's subnet.
func testRoutes() []Route {
	return []Route{
		{Subnet: netip.MustParsePrefix("100.96.2.0/24"), Peer: h2},
		{Subnet: netip.MustParsePrefix("100.96.3.0/24"), Peer: h3},
	}
}

// ipv4Spec describes a packet for ipv4Packet to build.
type ipv4Spec struct {
	src, dst netip.Addr
	proto    byte
	ttl      byte
	tos      byte
	id       uint16
	frag     uint16 // flags (top 3 bits) and fragment offset
	options  []byte // a multiple of 4 bytes, at most 40
	payload  []byte
}

// ipv4Packet builds a packet with a correct header checksum.
func ipv4Packet(s ipv4Spec) []byte {
	hlen := ipv4.MinHeaderLen + len(s.options)
	p := make([]byte, hlen+len(s.payload))
	p[0] = 0x40 | byte(hlen/4)
	p[1] = s.tos
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	binary.BigEndian.PutUint16(p[4:], s.id)
	binary.BigEndian.PutUint16(p[6:], s.frag)
	p[8] = s.ttl
	p[9] = s.proto
	src, dst := s.src.As4(), s.dst.As4()
	copy(p[12:16], src[:])
	copy(p[16:20], dst[:])
	copy(p[20:], s.options)
	copy(p[hlen:], s.payload)
	fixChecksum(p)
	return p
}

// udpPacket is a valid UDP packet from src to dst with TTL 64 and n bytes of
// UDP payload (the UDP header is not checked by the engine: zero is fine).
func udpPacket(src, dst netip.Addr, n int) []byte {
	payload := make([]byte, 8+n)
	for i := range payload[8:] {
		payload[8+i] = byte(i)
	}
	return ipv4Packet(ipv4Spec{src: src, dst: dst, proto: 17, ttl: 64, id: 0x1234, frag: 0x4000, payload: payload})
}

// icmpPacket is a valid ICMP packet of the given type and code with 8 bytes
// of data after the ICMP header.
func icmpPacket(src, dst netip.Addr, typ, code byte) []byte {
	m := make([]byte, 16)
	m[0], m[1] = typ, code
	binary.BigEndian.PutUint16(m[2:], refChecksum(m))
	return ipv4Packet(ipv4Spec{src: src, dst: dst, proto: ipv4.ProtoICMP, ttl: 64, payload: m})
}

// fixChecksum rewrites the header checksum of p from scratch.
func fixChecksum(p []byte) {
	hlen := int(p[0]&0x0f) * 4
	binary.BigEndian.PutUint16(p[ipv4.OffChecksum:], 0)
	binary.BigEndian.PutUint16(p[ipv4.OffChecksum:], refChecksum(p[:hlen]))
}

// with returns a copy of p changed by edit, for table entries derived from a
// valid packet.
func with(p []byte, edit func(p []byte)) []byte {
	q := append([]byte(nil), p...)
	edit(q)
	return q
}

// refChecksum is the Internet checksum computed another way than checksum
// does, as an oracle: the one's-complement sum of 16-bit words is their
// ordinary sum modulo 0xffff, except that a non-zero sum that is a multiple
// of 0xffff is 0xffff (one's-complement -0), never +0.
func refChecksum(b []byte) uint16 {
	var sum uint64
	for i := 0; i < len(b); i += 2 {
		w := uint64(b[i]) << 8
		if i+1 < len(b) {
			w |= uint64(b[i+1])
		}
		sum += w
	}
	ones := sum % 0xffff
	if ones == 0 && sum != 0 {
		ones = 0xffff
	}
	return ^uint16(ones)
}

// headerValid reports whether the IPv4 header at the start of p sums to zero.
func headerValid(p []byte) bool {
	hlen := int(p[0]&0x0f) * 4
	return refChecksum(p[:hlen]) == 0
}

// flannelDir holds what a real flanneld (udp backend) put on the wire.
const flannelDir = "../testdata/flannel"

// capturedDatagram is one datagram of the flannel underlay recording.
type capturedDatagram struct {
	outer []byte         // the outer IPv4 packet
	inner []byte         // its UDP payload: the inner IPv4 packet
	from  netip.AddrPort // the outer source
}

// readPcap returns the link-layer frames of a pcap file and its link type.
func readPcap(name string) ([]gopacket.Packet, error) {
	f, err := os.Open(filepath.Join(flannelDir, name))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		return nil, err
	}
	var out []gopacket.Packet
	for {
		data, _, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, gopacket.NewPacket(data, r.LinkType(), gopacket.Default))
	}
}

// underlayDatagrams decodes the flannel udp backend's datagrams (port 8285)
// from the underlay recording.
func underlayDatagrams() ([]capturedDatagram, error) {
	pkts, err := readPcap("flannel-udp-underlay.pcap")
	if err != nil {
		return nil, err
	}
	var out []capturedDatagram
	for _, p := range pkts {
		ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		udp, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if ip == nil || udp == nil || udp.DstPort != 8285 {
			continue
		}
		src, _ := netip.AddrFromSlice(ip.SrcIP)
		outer := append(append([]byte(nil), ip.Contents...), ip.Payload...)
		out = append(out, capturedDatagram{
			outer: outer,
			inner: append([]byte(nil), udp.Payload...),
			from:  netip.AddrPortFrom(src.Unmap(), uint16(udp.SrcPort)),
		})
	}
	return out, nil
}

// podPackets returns the IPv4 packets seen on pod 1's interface: what the
// kernel hands the TUN, including traffic to 100.96.7.7, which no host leases.
func podPackets() ([][]byte, error) {
	pkts, err := readPcap("flannel-udp-pod1.pcap")
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for _, p := range pkts {
		if ip, ok := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
			out = append(out, append(append([]byte(nil), ip.Contents...), ip.Payload...))
		}
	}
	return out, nil
}

// needUnderlay returns the underlay recording's datagrams.
func needUnderlay(tb testing.TB) []capturedDatagram {
	tb.Helper()
	d, err := underlayDatagrams()
	if err != nil {
		tb.Fatal(err)
	}
	if len(d) == 0 {
		tb.Fatal("no flannel datagrams in the underlay recording")
	}
	return d
}

// needPod returns pod 1's packets.
func needPod(tb testing.TB) [][]byte {
	tb.Helper()
	p, err := podPackets()
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// checkNetUnreachable checks that answer is a valid IPv4 ICMP destination
// unreachable, code net unreachable, answering orig, decoding it with
// gopacket, and returns a description of the first problem or "".
func checkNetUnreachable(answer, orig []byte) string {
	p := gopacket.NewPacket(answer, layers.LayerTypeIPv4, gopacket.Default)
	if el := p.ErrorLayer(); el != nil {
		return "gopacket cannot decode the answer: " + el.Error().Error()
	}
	ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	icmp, _ := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	switch {
	case ip == nil || icmp == nil:
		return "answer is not IPv4 + ICMPv4"
	case ip.Version != 4 || ip.IHL != 5:
		return "answer header is not a plain IPv4 header"
	case int(ip.Length) != len(answer):
		return "answer total length is not its length"
	case len(answer) > icmpMaxLen:
		return "answer longer than 576 bytes"
	case refChecksum(answer[:20]) != 0:
		return "answer IPv4 header checksum wrong"
	case ip.TTL == 0:
		return "answer TTL 0"
	case ip.Flags&layers.IPv4MoreFragments != 0 || ip.FragOffset != 0:
		return "answer is a fragment"
	case !ip.SrcIP.Equal(orig[ipv4.OffDst : ipv4.OffDst+4]):
		return "answer source is not the original destination"
	case !ip.DstIP.Equal(orig[ipv4.OffSrc : ipv4.OffSrc+4]):
		return "answer destination is not the original source"
	case icmp.TypeCode != layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodeNet):
		return "answer is " + icmp.TypeCode.String() + ", not net unreachable"
	case refChecksum(answer[20:]) != 0:
		return "answer ICMP checksum wrong"
	case icmp.Id != 0 || icmp.Seq != 0:
		return "answer ICMP unused word not zero"
	}
	// RFC 1812 4.3.2.3: quote as much of the packet as fits in 576 bytes.
	quoted := answer[28:]
	if len(quoted) != min(len(orig), icmpMaxLen-28) {
		return "answer does not quote as much of the original as fits"
	}
	if string(quoted) != string(orig[:len(quoted)]) {
		return "answer does not quote the original packet"
	}
	return ""
}
