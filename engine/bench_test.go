package engine

import (
	"errors"
	"fmt"
	"github.com/weft-dev/weft/encap/bindtest"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/weft-dev/weft/encap"
	"github.com/weft-dev/weft/tun"

	"github.com/weft-dev/weft/ipv4"
)

// Benchmarks of the per-packet paths against in-memory stand-ins for the TUN
// and the socket, and of the route table. Run with
//
//	go test -run '^$' -bench . -benchmem ./engine/
//
// Every per-packet benchmark must report 0 allocs/op: an allocation on the
// hot path is a bug (DESIGN.md).

var sinkRoute *Route

// subnetRoutes returns n /24 routes, the subnets of a flannel network with
// SubnetLen 24 (a /16 for 256, a /8 for 65,536), each leased by its own host.
func subnetRoutes(n int) []Route {
	base := uint32(100<<24 | 96<<16) // 100.96.0.0/16
	if n > 256 {
		base = 10 << 24 // 10.0.0.0/8
	}
	routes := make([]Route, n)
	for i := range routes {
		routes[i] = Route{
			Subnet: netip.PrefixFrom(addrOf(base|uint32(i)<<8), 24),
			Peer:   netip.AddrPortFrom(addrOf(0xac100000|uint32(i)), 8285), // 172.16.0.0/12
		}
	}
	return routes
}

func BenchmarkLookup(b *testing.B) {
	for _, n := range []int{256, 65536} {
		b.Run(fmt.Sprintf("prefixes=%d", n), func(b *testing.B) {
			routes := subnetRoutes(n)
			tbl, err := NewTable(routes)
			if err != nil {
				b.Fatal(err)
			}
			// Addresses in random leased subnets, one in 16 in none.
			rng := rand.New(rand.NewPCG(6, 6))
			addrs := make([]uint32, 4096)
			for i := range addrs {
				r := routes[rng.IntN(len(routes))]
				addrs[i] = u32(r.Subnet.Addr()) | rng.Uint32()&0xff
				if i%16 == 0 {
					addrs[i] = 0xc6336400 | rng.Uint32()&0xff // 198.51.100.0/24
				}
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				sinkRoute = tbl.Lookup(addrs[i&(len(addrs)-1)])
				i++
			}
		})
	}
}

// benchDevice is a TUN that hands over the same batch on every Read and
// takes every Write. The kernel's copy into the read buffers is not what is
// measured: a buffer that already holds its packet gets only its first 20
// bytes back (the TTL and checksum the engine changed).
type benchDevice struct {
	pkts    [][]byte
	filled  []*byte
	written int
}

func (d *benchDevice) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n := min(len(bufs), len(d.pkts))
	for i, p := range d.pkts[:n] {
		b := bufs[i][offset:]
		if d.filled[i] == &b[0] {
			copy(b[:ipv4.MinHeaderLen], p)
		} else {
			copy(b, p)
			d.filled[i] = &b[0]
		}
		sizes[i] = len(p)
	}
	return n, nil
}

func (d *benchDevice) Write(bufs [][]byte, offset int) (int, error) {
	d.written += len(bufs)
	return len(bufs), nil
}

func (d *benchDevice) ReadGSO(bufs [][]byte, sizes []int, gso []tun.GSO, offset int) (int, error) {
	n, err := d.Read(bufs, sizes, offset)
	clear(gso[:n])
	return n, err
}

func (d *benchDevice) Caps() tun.Caps                        { return tun.Caps{Batch: len(d.pkts)} }
func (d *benchDevice) SetReadDeadline(time.Time) error       { return nil }
func (d *benchDevice) SyscallConn() (syscall.RawConn, error) { return nil, errors.New("no descriptor") }
func (d *benchDevice) Close() error                          { return nil }

// benchConn is a socket that receives the same batch of datagrams on every
// ReadBatch (refreshing only the headers, as benchDevice does) and takes
// every WriteBatch.
type benchConn struct {
	dgrams []bindtest.Datagram
	filled []*byte
	sent   int
}

func (c *benchConn) ReadBatch(msgs []encap.Message) (int, error) {
	n := min(len(msgs), len(c.dgrams))
	for i, d := range c.dgrams[:n] {
		m := &msgs[i]
		if c.filled[i] == &m.Buf[0] {
			copy(m.Buf[:ipv4.MinHeaderLen], d.Data)
		} else {
			copy(m.Buf, d.Data)
			c.filled[i] = &m.Buf[0]
		}
		m.N, m.Addr, m.Truncated = len(d.Data), d.From, false
	}
	return n, nil
}

func (c *benchConn) WriteBatch(msgs []encap.Message) (int, error) {
	c.sent += len(msgs)
	return len(msgs), nil
}

func (c *benchConn) Close() error { return nil }

var (
	_ tun.Device = (*benchDevice)(nil)
	_ encap.Conn = (*benchConn)(nil)
)

const (
	benchBatch  = DefaultBatchSize // 64
	benchPacket = 1400
)

// benchEngine is h1 with 256 routes (a /16 network of /24 subnets), the
// peers h2 and h3 among them.
func benchEngine(tb testing.TB) *Engine {
	e, err := New(Config{Subnet: localSubnet, BatchSize: benchBatch, MaxPacket: 1500})
	if err != nil {
		tb.Fatal(err)
	}
	routes := subnetRoutes(256)
	routes[2].Peer, routes[3].Peer = h2, h3
	tbl, err := NewTable(routes)
	if err != nil {
		tb.Fatal(err)
	}
	e.SetRoutes(tbl)
	return e
}

func reportPerPacket(b *testing.B) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchBatch), "ns/packet")
}

// BenchmarkOutbound: one op is one step, a full batch of 64 packets of 1400
// bytes from the TUN to three peers.
func BenchmarkOutbound(b *testing.B) {
	e := benchEngine(b)
	dev := &benchDevice{filled: make([]*byte, benchBatch)}
	for i := range benchBatch {
		dst := []netip.Addr{pod2, pod3, netip.MustParseAddr("100.96.9.9")}[i%3]
		dev.pkts = append(dev.pkts, withID(udpPacket(pod1, dst, benchPacket-28), uint16(i)))
	}
	conn := &benchConn{}
	o := e.newOutbound(Queue{Dev: dev, Conn: conn})
	b.SetBytes(benchBatch * benchPacket)
	b.ReportAllocs()
	for b.Loop() {
		if err := o.step(); err != nil {
			b.Fatal(err)
		}
	}
	reportPerPacket(b)
	if s := e.Stats(); conn.sent != b.N*benchBatch || s.TxPackets != uint64(b.N*benchBatch) {
		b.Fatalf("sent %d of %d packets (stats: %+v)", conn.sent, b.N*benchBatch, s)
	}
}

// BenchmarkInbound: one op is one step, a full batch of 64 datagrams of
// 1400 bytes from two peers into the TUN.
func BenchmarkInbound(b *testing.B) {
	e := benchEngine(b)
	conn := &benchConn{filled: make([]*byte, benchBatch)}
	for i := range benchBatch {
		from, src := h2, pod2
		if i%2 == 1 {
			from, src = h3, pod3
		}
		conn.dgrams = append(conn.dgrams, bindtest.Datagram{Data: withID(udpPacket(src, pod1, benchPacket-28), uint16(i)), From: from})
	}
	dev := &benchDevice{}
	in := e.newInbound(Queue{Dev: dev, Conn: conn})
	b.SetBytes(benchBatch * benchPacket)
	b.ReportAllocs()
	for b.Loop() {
		if err := in.step(); err != nil {
			b.Fatal(err)
		}
	}
	reportPerPacket(b)
	if s := e.Stats(); dev.written != b.N*benchBatch || s.RxPackets != uint64(b.N*benchBatch) {
		b.Fatalf("wrote %d of %d packets (stats: %+v)", dev.written, b.N*benchBatch, s)
	}
}

// TestHotPathAllocs keeps the per-packet paths free of allocations outside
// benchmark runs too.
func TestHotPathAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	e := benchEngine(t)
	dev := &benchDevice{filled: make([]*byte, benchBatch)}
	conn := &benchConn{filled: make([]*byte, benchBatch)}
	for i := range benchBatch {
		dev.pkts = append(dev.pkts, withID(udpPacket(pod1, pod2, benchPacket-28), uint16(i)))
		conn.dgrams = append(conn.dgrams, bindtest.Datagram{Data: withID(udpPacket(pod2, pod1, benchPacket-28), uint16(i)), From: h2})
	}
	o := e.newOutbound(Queue{Dev: dev, Conn: conn})
	in := e.newInbound(Queue{Dev: dev, Conn: conn})
	tbl := e.Routes()
	for _, tc := range []struct {
		name string
		f    func()
	}{
		{"outbound step", func() { _ = o.step() }},
		{"inbound step", func() { _ = in.step() }},
		{"lookup", func() { sinkRoute = tbl.Lookup(u32(pod2)) }},
	} {
		if n := testing.AllocsPerRun(100, tc.f); n != 0 {
			t.Errorf("%s: %v allocations per run, want 0", tc.name, n)
		}
	}
}

// BenchmarkApply10k builds a table of 10,000 routes (10,000 hosts with a
// /24 each) from empty: in one batch, as a full listing of the leases
// arrives, and in batches of 100, as a watch's events may. (One at a time,
// it takes some 10 s: every Apply copies the peer counts, O(peers); see
// BenchmarkApplyEvent for the cost of one event.)
func BenchmarkApply10k(b *testing.B) {
	const n = 10000
	routes := subnetRoutes(n)
	rng := rand.New(rand.NewPCG(7, 7))
	rng.Shuffle(len(routes), func(i, j int) { routes[i], routes[j] = routes[j], routes[i] })
	changes := make([]Change, n)
	for i, r := range routes {
		changes[i] = Change{Route: r}
	}
	for _, batch := range []int{n, 100} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			b.ReportAllocs()
			var tbl *Table
			for b.Loop() {
				tbl = &Table{}
				for start := 0; start < n; start += batch {
					var err error
					if tbl, err = tbl.Apply(changes[start:min(start+batch, n)]); err != nil {
						b.Fatal(err)
					}
				}
			}
			runtime.ReadMemStats(&after)
			if tbl.Len() != n {
				b.Fatalf("%d routes, want %d", tbl.Len(), n)
			}
			routesDone := float64(b.N * n)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/routesDone, "ns/route")
			b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/routesDone, "bytes/route")
			// What the final table keeps on the heap.
			runtime.GC()
			runtime.ReadMemStats(&before)
			runtime.KeepAlive(tbl)
			tbl = nil
			runtime.GC()
			runtime.ReadMemStats(&after)
			if before.HeapAlloc > after.HeapAlloc {
				b.ReportMetric(float64(before.HeapAlloc-after.HeapAlloc)/n, "live-bytes/route")
			}
		})
	}
}

// BenchmarkApplyEvent applies one watch event, a lease added or removed, to
// a table of 10,000 routes.
func BenchmarkApplyEvent(b *testing.B) {
	const n = 10000
	tbl, err := NewTable(subnetRoutes(n))
	if err != nil {
		b.Fatal(err)
	}
	extra := Route{Subnet: netip.MustParsePrefix("10.200.0.0/24"), Peer: netip.MustParseAddrPort("172.31.0.1:8285")}
	events := [][]Change{{{Route: extra}}, {{Route: extra, Remove: true}}}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if tbl, err = tbl.Apply(events[i&1]); err != nil {
			b.Fatal(err)
		}
		i++
	}
	if tbl.Len() != n && tbl.Len() != n+1 {
		b.Fatalf("%d routes", tbl.Len())
	}
}
