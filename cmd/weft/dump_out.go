package main

import (
	"bufio"
	"fmt"
	"io"
	"strings"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/weft-dev/weft/control"
)

// pcapSink writes pcapng: raw IPv4 packets (LINKTYPE_RAW), inner packets as
// the pods see them and datagrams with their outer headers, each with a
// comment naming its stage, and for a drop the reason:
// "stage=drop reason=no-route" (Wireshark: frame.comment contains "drop").
// One interface for every stage: libpcap (tcpdump 4.99) refuses a file
// whose LINKTYPE_RAW interfaces are more than one.
type pcapSink struct {
	w *pcapgo.NgWriter
}

func newPcapSink(out io.Writer) (*pcapSink, error) {
	w, err := pcapgo.NewNgWriterInterface(out, pcapgo.NgInterface{
		Name:        "weft",
		Description: "weftd's data path; each packet's comment names its stage: " + strings.Join(control.StageNames, ", "),
		LinkType:    layers.LinkTypeRaw,
		SnapLength:  65535 + 28,
	}, pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{Application: "weft dump"}})
	if err != nil {
		return nil, fmt.Errorf("pcapng: %w", err)
	}
	// The header goes out at once: a reader on a pipe (tcpdump -r -)
	// starts before the first packet.
	return &pcapSink{w: w}, w.Flush()
}

func (s *pcapSink) write(p *control.Packet) error {
	ci := gopacket.CaptureInfo{Timestamp: p.Time, CaptureLength: len(p.Data), Length: p.Length}
	if err := s.w.WritePacketWithOptions(ci, p.Data, pcapgo.NgPacketOptions{Comments: []string{packetComment(p)}}); err != nil {
		return fmt.Errorf("pcapng: %w", err)
	}
	return s.w.Flush() // live: each packet reaches a pipe as it comes
}

func (s *pcapSink) close() error { return s.w.Flush() }

// packetComment is the comment of a packet in the capture file.
func packetComment(p *control.Packet) string {
	if p.Reason != "" {
		return "stage=" + p.Stage + " reason=" + p.Reason
	}
	return "stage=" + p.Stage
}

// lineSink prints one decoded line per packet.
type lineSink struct{ w *bufio.Writer }

func newLineSink(out io.Writer) *lineSink { return &lineSink{w: bufio.NewWriter(out)} }

func (s *lineSink) write(p *control.Packet) error {
	s.w.WriteString(describePacket(p))
	s.w.WriteByte('\n')
	return s.w.Flush()
}

func (s *lineSink) close() error { return s.w.Flush() }

// describePacket is one line, tcpdump-like: time, stage (and drop reason),
// then the outer datagram if any and the inner packet.
func describePacket(p *control.Packet) string {
	var b strings.Builder
	stage := p.Stage
	if p.Reason != "" {
		stage += "(" + p.Reason + ")"
	}
	fmt.Fprintf(&b, "%s %-8s ", p.Time.Local().Format("15:04:05.000000"), stage)
	pkt := gopacket.NewPacket(p.Data, layers.LayerTypeIPv4, gopacket.DecodeOptions{NoCopy: true, Lazy: true})
	ip, _ := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if ip == nil || !isIPv4(p.Data) {
		fmt.Fprintf(&b, "not IPv4: %d bytes", p.Length)
		return b.String()
	}
	if p.Wire {
		udp, _ := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if udp == nil {
			fmt.Fprintf(&b, "%s > %s: datagram cut short", ip.SrcIP, ip.DstIP)
			return b.String()
		}
		fmt.Fprintf(&b, "%s:%d > %s:%d: ", ip.SrcIP, udp.SrcPort, ip.DstIP, udp.DstPort)
		inner := gopacket.NewPacket(udp.Payload, layers.LayerTypeIPv4, gopacket.DecodeOptions{NoCopy: true, Lazy: true})
		ip, _ = inner.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if ip == nil || !isIPv4(udp.Payload) {
			fmt.Fprintf(&b, "payload not IPv4 (%d bytes)", len(udp.Payload))
			return b.String()
		}
		pkt = inner
	}
	describeInner(&b, pkt, ip)
	return b.String()
}

// isIPv4 tells an IPv4 header from what gopacket would decode as one anyway.
func isIPv4(b []byte) bool { return len(b) >= 20 && b[0]>>4 == 4 }

func describeInner(b *strings.Builder, pkt gopacket.Packet, ip *layers.IPv4) {
	fmt.Fprintf(b, "%s > %s: ", ip.SrcIP, ip.DstIP)
	switch l := pkt.TransportLayer().(type) {
	case *layers.TCP:
		fmt.Fprintf(b, "TCP %d > %d [%s] seq %d", l.SrcPort, l.DstPort, tcpFlags(l), l.Seq)
		if l.ACK {
			fmt.Fprintf(b, " ack %d", l.Ack)
		}
		fmt.Fprintf(b, " win %d, length %d", l.Window, len(l.Payload))
	case *layers.UDP:
		fmt.Fprintf(b, "UDP %d > %d, length %d", l.SrcPort, l.DstPort, len(l.Payload))
	default:
		if icmp, ok := pkt.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4); ok {
			fmt.Fprintf(b, "ICMP %s", icmp.TypeCode)
			if t := icmp.TypeCode.Type(); t == layers.ICMPv4TypeEchoRequest || t == layers.ICMPv4TypeEchoReply {
				fmt.Fprintf(b, " id %d seq %d", icmp.Id, icmp.Seq)
			}
		} else {
			fmt.Fprintf(b, "proto %s", ip.Protocol)
		}
	}
	fmt.Fprintf(b, ", ttl %d, ip length %d", ip.TTL, ip.Length)
}

func tcpFlags(t *layers.TCP) string {
	var f []byte
	for _, x := range []struct {
		on bool
		c  byte
	}{{t.SYN, 'S'}, {t.FIN, 'F'}, {t.RST, 'R'}, {t.PSH, 'P'}, {t.ACK, '.'}, {t.URG, 'U'}} {
		if x.on {
			f = append(f, x.c)
		}
	}
	if len(f) == 0 {
		return "none"
	}
	return string(f)
}
