package engine

import (
	"github.com/weft-dev/weft/encap/bindtest"
	"net/netip"
	"testing"
)

// What the tap costs the forwarding loops. Idle, it is measured by
// BenchmarkOutbound and BenchmarkInbound themselves, built twice as
// `make bench-tap` does: as shipped, and with -tags weft_notap, which
// compiles the tap out of the loops (tapBuilt false). The benchmarks here
// add what a running dump costs: one whose filter matches nothing (the
// price a filtered `weft dump` puts on the other traffic), and one taking
// every packet at every stage, its reader keeping up.

func BenchmarkTapOutbound(b *testing.B) {
	e := benchEngine(b)
	dev := &benchDevice{filled: make([]*byte, benchBatch)}
	for i := range benchBatch {
		dst := []netip.Addr{pod2, pod3, netip.MustParseAddr("100.96.9.9")}[i%3]
		dev.pkts = append(dev.pkts, withID(udpPacket(pod1, dst, benchPacket-28), uint16(i)))
	}
	o := e.newOutbound(Queue{Dev: dev, Conn: &benchConn{}})
	benchDumps(b, e, o.step)
}

func BenchmarkTapInbound(b *testing.B) {
	e := benchEngine(b)
	conn := &benchConn{filled: make([]*byte, benchBatch)}
	for i := range benchBatch {
		conn.dgrams = append(conn.dgrams, bindtest.Datagram{Data: withID(udpPacket(pod2, pod1, benchPacket-28), uint16(i)), From: h2})
	}
	in := e.newInbound(Queue{Dev: &benchDevice{}, Conn: conn})
	benchDumps(b, e, in.step)
}

func benchDumps(b *testing.B, e *Engine, step func() error) {
	if !tapBuilt {
		b.Skip("the tap is compiled out (weft_notap)")
	}
	run := func(b *testing.B, d *Dump) {
		b.SetBytes(benchBatch * benchPacket)
		b.ReportAllocs()
		for b.Loop() {
			if err := step(); err != nil {
				b.Fatal(err)
			}
			for len(d.Packets()) > 0 {
				d.Release(<-d.Packets())
			}
		}
		reportPerPacket(b)
	}
	b.Run("dump=matching-nothing", func(b *testing.B) {
		d := e.StartDump(DumpConfig{Match: func([]byte, netip.AddrPort, netip.AddrPort) bool { return false }})
		defer d.Close()
		run(b, d)
	})
	b.Run("dump=everything", func(b *testing.B) {
		d := e.StartDump(DumpConfig{})
		defer d.Close()
		run(b, d)
		if d.Dropped() != 0 {
			b.Errorf("a reader keeping up lost %d packets", d.Dropped())
		}
	})
}
