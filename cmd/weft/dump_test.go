package main

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/weft-dev/weft/control"
)

func TestParseDumpFlags(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		stages []string
		filter string
		count  int
		ms     int64
		want   string // "" accepts; else a part of the error
	}{
		{args: nil},
		{args: []string{"-c", "10", "icmp", "and", "host", "100.96.2.2"}, count: 10, filter: "icmp and host 100.96.2.2"},
		{args: []string{"--stage", "drop", "--stage", "tun-in,wire-out", "--stage", "drop"}, stages: []string{"drop", "tun-in", "wire-out"}},
		{args: []string{"--duration", "1.5s", "-w", "-", "port 53"}, ms: 1500, filter: "port 53"},
		{args: []string{"--stage", "egress"}, want: `--stage "egress": want one of tun-in, wire-out, wire-in, tun-out, drop`},
		{args: []string{"-c", "-1"}, want: "-c -1: must not be negative"},
		{args: []string{"--duration", "-1s"}, want: "--duration -1s: must not be negative"},
		{args: []string{"--duration", "10us"}, want: "shorter than a millisecond"},
		{args: []string{"-s", "70000"}, want: "-s 70000: out of range"},
		{args: []string{"host", "100.96.2"}, want: `filter: column 6: host wants an IPv4 address, got "100.96.2"`},
		{args: []string{"icmp", "udp"}, want: `unexpected "udp"`},
	} {
		f, err := parseDumpFlags(tc.args, io.Discard)
		if tc.want != "" {
			if err == nil || !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%q: %v, want a usage error with %q", tc.args, err, tc.want)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.args, err)
			continue
		}
		r := f.req
		if strings.Join(r.Stages, ",") != strings.Join(tc.stages, ",") || r.Filter != tc.filter || r.Count != tc.count || r.DurationMS != tc.ms {
			t.Errorf("%q: %+v", tc.args, r)
		}
	}
}

// ping is an ICMP echo request from 100.96.1.2 to 100.96.2.2, TTL 63.
func ping() []byte {
	ip := &layers.IPv4{Version: 4, TTL: 63, Protocol: layers.IPProtocolICMPv4, SrcIP: []byte{100, 96, 1, 2}, DstIP: []byte{100, 96, 2, 2}}
	icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 7, Seq: 1}
	buf := gopacket.NewSerializeBuffer()
	gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, icmp, gopacket.Payload("weft"))
	return buf.Bytes()
}

// datagram wraps inner in outer IPv4/UDP headers from 192.0.2.1 to 192.0.2.2.
func datagram(inner []byte) []byte {
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: []byte{192, 0, 2, 1}, DstIP: []byte{192, 0, 2, 2}}
	udp := &layers.UDP{SrcPort: 8285, DstPort: 8285}
	udp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, udp, gopacket.Payload(inner))
	return buf.Bytes()
}

func TestDescribePacket(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.Local)
	p := ping()
	for _, tc := range []struct {
		pkt  control.Packet
		want string
	}{
		{control.Packet{Stage: "tun-in", Time: at, Data: p, Length: len(p)},
			"03:04:05.000006 tun-in   100.96.1.2 > 100.96.2.2: ICMP EchoRequest id 7 seq 1, ttl 63, ip length 32"},
		{control.Packet{Stage: "wire-out", Time: at, Wire: true, Data: datagram(p), Length: len(p) + 28},
			"03:04:05.000006 wire-out 192.0.2.1:8285 > 192.0.2.2:8285: 100.96.1.2 > 100.96.2.2: ICMP EchoRequest id 7 seq 1, ttl 63, ip length 32"},
		{control.Packet{Stage: "drop", Reason: "no-route", Time: at, Data: p, Length: len(p)},
			"03:04:05.000006 drop(no-route) 100.96.1.2 > 100.96.2.2: ICMP EchoRequest"},
		{control.Packet{Stage: "drop", Reason: "not-ipv4", Time: at, Data: []byte{0x60, 0}, Length: 40},
			"drop(not-ipv4) not IPv4: 40 bytes"},
	} {
		if got := describePacket(&tc.pkt); !strings.Contains(got, tc.want) {
			t.Errorf("describePacket:\n got %q\nwant %q", got, tc.want)
		}
	}
}

// TestPcapSink: what weft dump -w writes reads back with pcapgo, each
// packet with its stage (and reason) in its comment.
func TestPcapSink(t *testing.T) {
	var buf bytes.Buffer
	s, err := newPcapSink(&buf)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1700000000, 5)
	p := ping()
	sent := []control.Packet{
		{Stage: "tun-in", Time: at, Data: p, Length: len(p)},
		{Stage: "wire-out", Time: at, Wire: true, Data: datagram(p)[:40], Length: len(p) + 28},
		{Stage: "drop", Reason: "ttl-expired", Time: at, Data: p, Length: len(p)},
	}
	for i := range sent {
		if err := s.write(&sent[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	r, err := pcapgo.NewNgReader(&buf, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	if r.LinkType() != layers.LinkTypeRaw {
		t.Errorf("link type %v", r.LinkType())
	}
	for i, want := range []string{"stage=tun-in", "stage=wire-out", "stage=drop reason=ttl-expired"} {
		data, ci, opts, err := r.ReadPacketDataWithOptions()
		if err != nil {
			t.Fatal(err)
		}
		if len(opts.Comments) != 1 || opts.Comments[0] != want {
			t.Errorf("packet %d: comments %q, want %q", i, opts.Comments, want)
		}
		if !bytes.Equal(data, sent[i].Data) || ci.Length != sent[i].Length || !ci.Timestamp.Equal(at) {
			t.Errorf("packet %d: %d of %d bytes at %v", i, ci.CaptureLength, ci.Length, ci.Timestamp)
		}
	}
}
