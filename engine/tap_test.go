package engine

import (
	"bytes"
	"encoding/binary"
	"github.com/weft-dev/weft/encap/bindtest"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/weft-dev/weft/control"
	"github.com/weft-dev/weft/ipv4"
)

// tapLocal is the address the test sockets pretend to be bound to.
var tapLocal = netip.MustParseAddrPort("192.0.2.1:8285")

// boundConn is a fakeConn that says where it is bound, as encap.UDPConn does.
type boundConn struct{ *bindtest.Conn }

func (boundConn) LocalAddr() netip.AddrPort { return tapLocal }

// needTap skips tests of the tap in the benchmark-only build without it.
func needTap(t *testing.T) {
	if !tapBuilt {
		t.Skip("the tap is compiled out (weft_notap)")
	}
}

// drain takes every packet queued in d, giving each slot back.
func drain(d *Dump) []Captured {
	var out []Captured
	for {
		select {
		case c := <-d.Packets():
			cp := *c
			cp.buf = bytes.Clone(c.buf)
			out = append(out, cp)
			d.Release(c)
		default:
			return out
		}
	}
}

// stagesOf lists the stage (and reason, for drops) of each capture.
func stagesOf(cs []Captured) []string {
	var s []string
	for _, c := range cs {
		n := c.Stage.String()
		if c.Stage == StageDrop {
			n += "/" + c.Reason.String()
		}
		s = append(s, n)
	}
	return s
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestTapOutbound(t *testing.T) {
	needTap(t)
	e := newTestEngine(t, 8)
	dev, conn := newFakeDevice(64), boundConn{bindtest.NewConn()}
	o := e.newOutbound(Queue{Dev: dev, Conn: conn})
	d := e.StartDump(DumpConfig{})
	defer d.Close()

	fwd := udpPacket(pod1, pod2, 100)
	dev.Push(fwd, withTTL(fwd, 1), udpPacket(pod1, nowhere, 10))
	if err := o.step(); err != nil {
		t.Fatal(err)
	}
	got := drain(d)
	want := []string{"tun-in", "tun-in", "tun-in", "drop/ttl-expired", "drop/no-route", "wire-out", "tun-out"}
	if s := stagesOf(got); !equalStrings(s, want) {
		t.Fatalf("stages %v, want %v", s, want)
	}
	if !bytes.Equal(got[0].Inner(), fwd) || got[0].Wire() {
		t.Errorf("tun-in: not the packet as read, or seen as a bindtest.Datagram")
	}
	// wire-out: the forwarded packet (TTL one less) after outer headers.
	w := got[5]
	data, length := w.Data()
	if !w.Wire() || length != len(fwd)+28 || len(data) != length {
		t.Fatalf("wire-out: wire %v, %d of %d bytes; want a bindtest.Datagram of %d", w.Wire(), len(data), length, len(fwd)+28)
	}
	checkOuter(t, data, tapLocal, h2)
	sent := conn.Sent()
	if len(sent) != 1 || !bytes.Equal(data[28:], sent[0].Data) {
		t.Errorf("wire-out payload differs from what was sent")
	}
	// tun-out: the ICMP answer to the unroutable packet.
	p := gopacket.NewPacket(got[6].Inner(), layers.LayerTypeIPv4, gopacket.Default)
	if icmp, ok := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4); !ok || icmp.TypeCode.Type() != layers.ICMPv4TypeDestinationUnreachable {
		t.Errorf("tun-out is not the ICMP net unreachable: %v", p)
	}
	if d.Dropped() != 0 || d.Captured() != uint64(len(want)) {
		t.Errorf("dump captured %d, dropped %d; want %d, 0", d.Captured(), d.Dropped(), len(want))
	}
}

func TestTapInbound(t *testing.T) {
	needTap(t)
	e := newTestEngine(t, 8)
	dev, conn := newFakeDevice(64), boundConn{bindtest.NewConn()}
	in := e.newInbound(Queue{Dev: dev, Conn: conn})
	d := e.StartDump(DumpConfig{})
	defer d.Close()

	good := udpPacket(pod2, pod1, 50)
	spoofed := udpPacket(pod3, pod1, 50) // pod3 is h3's, not h2's
	conn.Push(bindtest.Datagram{Data: good, From: h2}, bindtest.Datagram{Data: spoofed, From: h2})
	if err := in.step(); err != nil {
		t.Fatal(err)
	}
	got := drain(d)
	want := []string{"wire-in", "wire-in", "drop/spoofed-source", "tun-out"}
	if s := stagesOf(got); !equalStrings(s, want) {
		t.Fatalf("stages %v, want %v", s, want)
	}
	data, _ := got[0].Data()
	checkOuter(t, data, h2, tapLocal)
	if !bytes.Equal(data[28:], good) {
		t.Errorf("wire-in payload is not the bindtest.Datagram received")
	}
	drop := got[2]
	if !drop.Wire() || drop.Src != h2 || drop.Dst != tapLocal || !bytes.Equal(drop.Inner(), spoofed) {
		t.Errorf("drop: wire %v from %v to %v; want the bindtest.Datagram from %v to %v", drop.Wire(), drop.Src, drop.Dst, h2, tapLocal)
	}
	if out := got[3].Inner(); len(out) != len(good) || out[ipv4.OffTTL] != good[ipv4.OffTTL]-1 {
		t.Errorf("tun-out: not the packet written, TTL one less")
	}
}

// TestTapInboundDrops: drops among forwarded datagrams are told apart and
// given their reasons, with and without zero copy.
func TestTapInboundDrops(t *testing.T) {
	needTap(t)
	for _, zeroCopy := range []bool{false, true} {
		e, err := New(Config{Subnet: localSubnet, BatchSize: 8, MaxPacket: 1500, ZeroCopyReceive: zeroCopy})
		if err != nil {
			t.Fatal(err)
		}
		tbl, err := NewTable(testRoutes())
		if err != nil {
			t.Fatal(err)
		}
		e.SetRoutes(tbl)
		dev, conn := newFakeDevice(64), boundConn{bindtest.NewConn()}
		in := e.newInbound(Queue{Dev: dev, Conn: conn})
		d := e.StartDump(DumpConfig{Stages: StagesOf(StageDrop, StageTUNOut)})
		good := udpPacket(pod2, pod1, 20)
		conn.Push(
			bindtest.Datagram{Data: good, From: h2},
			bindtest.Datagram{Data: udpPacket(pod3, pod1, 20), From: h2},
			bindtest.Datagram{Data: good, From: h2, Truncated: true},
			bindtest.Datagram{Data: good, From: stranger},
			bindtest.Datagram{Data: good, From: h2},
			bindtest.Datagram{Data: withTTL(good, 1), From: h2},
		)
		if err := in.step(); err != nil {
			t.Fatal(err)
		}
		want := []string{"drop/spoofed-source", "drop/truncated", "drop/unknown-peer", "drop/ttl-expired", "tun-out", "tun-out"}
		if got := stagesOf(drain(d)); !equalStrings(got, want) {
			t.Errorf("zero copy %v: stages %v, want %v", zeroCopy, got, want)
		}
		d.Close()
	}
}

// checkOuter decodes a synthesised bindtest.Datagram and checks its addresses,
// lengths and checksums.
func checkOuter(t *testing.T, data []byte, src, dst netip.AddrPort) {
	t.Helper()
	p := gopacket.NewPacket(data, layers.LayerTypeIPv4, gopacket.Default)
	ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	udp, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if ip == nil || udp == nil {
		t.Fatalf("no outer IPv4/UDP: %v", p)
	}
	if ip.SrcIP.String() != src.Addr().String() || ip.DstIP.String() != dst.Addr().String() ||
		uint16(udp.SrcPort) != src.Port() || uint16(udp.DstPort) != dst.Port() {
		t.Errorf("outer %v:%d -> %v:%d, want %v -> %v", ip.SrcIP, udp.SrcPort, ip.DstIP, udp.DstPort, src, dst)
	}
	if int(ip.Length) != len(data) || int(udp.Length) != len(data)-20 {
		t.Errorf("outer lengths IP %d, UDP %d for %d bytes", ip.Length, udp.Length, len(data))
	}
	if refChecksum(data[:20]) != 0 {
		t.Errorf("outer IPv4 checksum wrong")
	}
	// Recompute the UDP checksum with gopacket and compare.
	want := udp.Checksum
	re := &layers.UDP{SrcPort: udp.SrcPort, DstPort: udp.DstPort}
	re.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, re, gopacket.Payload(data[28:])); err != nil {
		t.Fatal(err)
	}
	if got := binary.BigEndian.Uint16(buf.Bytes()[6:]); got != want {
		t.Errorf("outer UDP checksum %#04x, want %#04x", want, got)
	}
}

func TestTapStagesAndMatch(t *testing.T) {
	needTap(t)
	e := newTestEngine(t, 8)
	dev, conn := newFakeDevice(64), boundConn{bindtest.NewConn()}
	o := e.newOutbound(Queue{Dev: dev, Conn: conn})
	toH3 := func(pkt []byte, _, _ netip.AddrPort) bool { return ipv4.Dst(pkt) == u32(pod3) }
	onlyWire := e.StartDump(DumpConfig{Stages: StagesOf(StageWireOut), Match: toH3})
	defer onlyWire.Close()
	everything := e.StartDump(DumpConfig{})
	defer everything.Close()

	dev.Push(udpPacket(pod1, pod2, 10), udpPacket(pod1, pod3, 10))
	if err := o.step(); err != nil {
		t.Fatal(err)
	}
	got := drain(onlyWire)
	if len(got) != 1 || got[0].Stage != StageWireOut || got[0].Dst != h3 {
		t.Errorf("wire-out dump matching pod3 got %v", stagesOf(got))
	}
	if n := len(drain(everything)); n != 4 {
		t.Errorf("the other dump got %d packets, want 4 (2 tun-in, 2 wire-out)", n)
	}
}

// TestTapSlowReader: a reader that takes nothing makes the tap drop and
// count, and forwarding goes on untouched.
func TestTapSlowReader(t *testing.T) {
	needTap(t)
	e := newTestEngine(t, 64)
	dev, conn := newFakeDevice(64), boundConn{bindtest.NewConn()}
	o := e.newOutbound(Queue{Dev: dev, Conn: conn})
	d := e.StartDump(DumpConfig{Stages: StagesOf(StageTUNIn), Queue: 3})
	defer d.Close()
	var batch [][]byte
	for range 10 {
		batch = append(batch, udpPacket(pod1, pod2, 10))
	}
	dev.Push(batch...)
	if err := o.step(); err != nil {
		t.Fatal(err)
	}
	if len(conn.Sent()) != 10 {
		t.Errorf("sent %d datagrams, want 10", len(conn.Sent()))
	}
	if d.Captured() != 3 || d.Dropped() != 7 {
		t.Errorf("captured %d, dropped %d; want 3, 7", d.Captured(), d.Dropped())
	}
	if s := e.DumpStats(); s.Active != 1 || s.Dropped != 7 || s.Captured != 3 {
		t.Errorf("DumpStats %+v, want 1 active, 3 captured, 7 dropped", s)
	}
	// Slots given back are used again.
	drain(d)
	dev.Push(batch[:2]...)
	if err := o.step(); err != nil {
		t.Fatal(err)
	}
	if d.Captured() != 5 {
		t.Errorf("captured %d after the reader caught up, want 5", d.Captured())
	}
}

func TestTapCloseIdles(t *testing.T) {
	needTap(t)
	e := newTestEngine(t, 8)
	a, b := e.StartDump(DumpConfig{}), e.StartDump(DumpConfig{})
	a.Close()
	if e.activeTap() == nil {
		t.Fatal("closing one of two dumps idled the tap")
	}
	b.Close()
	b.Close() // twice is fine
	if e.activeTap() != nil || e.DumpStats().Active != 0 {
		t.Fatal("tap not idle after every dump closed")
	}
}

func TestTapSnaplen(t *testing.T) {
	needTap(t)
	e := newTestEngine(t, 8)
	dev, conn := newFakeDevice(64), boundConn{bindtest.NewConn()}
	o := e.newOutbound(Queue{Dev: dev, Conn: conn})
	d := e.StartDump(DumpConfig{Stages: StagesOf(StageWireOut), Snaplen: 40})
	defer d.Close()
	pkt := udpPacket(pod1, pod2, 100)
	dev.Push(pkt)
	if err := o.step(); err != nil {
		t.Fatal(err)
	}
	got := drain(d)
	if len(got) != 1 {
		t.Fatalf("%d captures, want 1", len(got))
	}
	data, length := got[0].Data()
	if len(data) != 28+40 || length != 28+len(pkt) {
		t.Errorf("kept %d of %d bytes, want %d of %d", len(data), length, 28+40, 28+len(pkt))
	}
	if binary.BigEndian.Uint16(data[26:]) != 0 {
		t.Errorf("UDP checksum of a cut bindtest.Datagram is not 0 (none)")
	}
	if refChecksum(data[:20]) != 0 {
		t.Errorf("IPv4 checksum of a cut bindtest.Datagram wrong")
	}
}

func TestBatchSizes(t *testing.T) {
	var b batchSizes
	for _, n := range []int{1, 2, 3, 4, 5, 64, 65, 1024, 5000} {
		b.observe(n)
	}
	var h BatchSizes
	h.add(&b)
	want := [numBatchBuckets]uint64{0: 1, 1: 1, 2: 2, 3: 1, 6: 1, 7: 1, 10: 1, 11: 1}
	if h.Buckets != want {
		t.Errorf("buckets %v, want %v", h.Buckets, want)
	}
	if h.Batches() != 9 || h.Packets != 1+2+3+4+5+64+65+1024+5000 {
		t.Errorf("%d batches, %d packets", h.Batches(), h.Packets)
	}
	if bounds := BatchBounds(); len(bounds) != numBatchBuckets-1 || bounds[0] != 1 || bounds[10] != 1024 {
		t.Errorf("bounds %v", bounds)
	}
}

// TestTapLongPacket: a packet longer than a slot's first buffer is kept
// whole (the slot grows), and a segment's own headers come before its payload.
func TestTapLongPacket(t *testing.T) {
	needTap(t)
	e := newTestEngine(t, 8)
	d := e.StartDump(DumpConfig{})
	defer d.Close()
	head := []byte{1, 2, 3}
	body := bytes.Repeat([]byte{7}, 3*slotStart)
	e.activeTap().capture(StageWireOut, DropNone, head, body, tapLocal, h2, time.Now())
	got := drain(d)
	if len(got) != 1 || got[0].Len != len(head)+len(body) || !bytes.Equal(got[0].Inner(), append(head, body...)) {
		t.Fatalf("captured %d packets; want the whole segment, headers first", len(got))
	}
}

// TestStageNames: every stage has the control protocol's name for it, and
// the protocol names no stage the engine lacks, so that a dump's --stage
// reaches the tap and every captured packet's stage reaches the client.
func TestStageNames(t *testing.T) {
	if len(control.StageNames) != int(numStages) {
		t.Fatalf("control names %d stages, the engine has %d", len(control.StageNames), numStages)
	}
	for st := range numStages {
		name := st.String()
		if name != control.StageNames[st] {
			t.Errorf("stage %d is %q, the protocol's %q", st, name, control.StageNames[st])
		}
		if got, ok := ParseStage(name); !ok || got != st {
			t.Errorf("ParseStage(%q) = %v, %v; want %v", name, got, ok, st)
		}
	}
	if _, ok := ParseStage("nowhere"); ok || numStages.String() != "unknown" {
		t.Error("an unknown stage parsed or named")
	}
}
