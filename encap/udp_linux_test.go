package encap

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"
)

// TestBatchRoundTrip sends batches of datagrams of mixed sizes to two
// receivers and checks that each receives exactly its datagrams, in order,
// byte for byte, for every combination of GSO and GRO.
func TestBatchRoundTrip(t *testing.T) {
	for _, c := range []struct{ gso, gro, zeroCopy bool }{
		{false, false, false}, {true, false, false}, {false, true, false}, {true, true, false}, {true, true, true},
	} {
		t.Run(fmt.Sprintf("gso=%v,gro=%v,zerocopy=%v", c.gso, c.gro, c.zeroCopy), func(t *testing.T) {
			lo := netip.MustParseAddr("127.0.0.1")
			open := func(opts Options) *UDPConn {
				conn, err := ListenUDP(netip.AddrPortFrom(lo, 0), opts)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { conn.Close() })
				return conn
			}
			tx := open(Options{Batch: 32, GSO: c.gso})
			rxOpts := Options{Batch: 32, GRO: c.gro, ZeroCopy: c.zeroCopy}
			rx := []*UDPConn{open(rxOpts), open(rxOpts)}
			if gso, _ := tx.Offloads(); gso != c.gso {
				offloadMissing(t, "UDP_SEGMENT")
			}
			if _, gro := rx[0].Offloads(); gro != c.gro {
				offloadMissing(t, "UDP_GRO")
			}

			// Runs of equal sizes (GSO groups), a shorter last one, a
			// change of destination, a 1-byte and a maximal datagram.
			sizes := []int{1400, 1400, 1400, 900, 1400, 64, 64, 64, 64, 1, 1472, 1472, 200, 1472}
			var want [2][][]byte
			var msgs []Message
			for round := range 3 {
				for i, size := range sizes {
					dst := (i / 5) % 2
					b := bytes.Repeat([]byte{byte(round*len(sizes) + i)}, size)
					want[dst] = append(want[dst], b)
					m := Message{Buf: b, Addr: rx[dst].LocalAddr()}
					if round == 1 {
						// A segment's headers apart from its payload.
						h := min(40, len(b))
						m.Head, m.Buf = b[:h], b[h:]
					}
					msgs = append(msgs, m)
				}
			}
			n, err := tx.WriteBatch(msgs)
			if err != nil || n != len(msgs) {
				t.Fatalf("WriteBatch sent %d of %d: %v", n, len(msgs), err)
			}
			for dst, conn := range rx {
				got := receive(t, conn, len(want[dst]))
				for i := range want[dst] {
					if !bytes.Equal(got[i].data, want[dst][i]) {
						t.Fatalf("receiver %d datagram %d: %d bytes of %d, want %d bytes of %d",
							dst, i, len(got[i].data), first(got[i].data), len(want[dst][i]), first(want[dst][i]))
					}
					if got[i].from != tx.LocalAddr() {
						t.Fatalf("receiver %d datagram %d from %v, want %v", dst, i, got[i].from, tx.LocalAddr())
					}
				}
			}
		})
	}
}

// offloadMissing fails t under CI=true, where the kernel (Linux 5.0 or
// later) has UDP_SEGMENT and UDP_GRO and their absence is a fault, and
// otherwise skips it: what it would check is not there.
func offloadMissing(t *testing.T, what string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("the kernel refused %s, and CI=true forbids skipping what needs it", what)
	}
	t.Skipf("the kernel refused %s", what)
}

// sendRun sends n datagrams of size bytes to to from tx in one WriteBatch.
func sendRun(t *testing.T, tx *UDPConn, to netip.AddrPort, n, size int) [][]byte {
	t.Helper()
	var msgs []Message
	var sent [][]byte
	for i := range n {
		b := bytes.Repeat([]byte{byte(i)}, size)
		sent = append(sent, b)
		msgs = append(msgs, Message{Buf: b, Addr: to})
	}
	if k, err := tx.WriteBatch(msgs); err != nil || k != n {
		t.Fatalf("WriteBatch sent %d of %d: %v", k, n, err)
	}
	return sent
}

// TestGSOSegments: with GSO, a run of equal datagrams to one peer goes as
// one send with a UDP_SEGMENT control message, which the kernel cuts: a
// receiver without GRO gets each datagram on its own.
func TestGSOSegments(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	tx, err := ListenUDP(netip.AddrPortFrom(lo, 0), Options{Batch: 32, GSO: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	if gso, _ := tx.Offloads(); !gso {
		offloadMissing(t, "UDP_SEGMENT")
	}
	rx, err := ListenUDP(netip.AddrPortFrom(lo, 0), Options{Batch: 32})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	const n, size = 10, 1000
	sent := sendRun(t, tx, rx.LocalAddr(), n, size)
	if tx.groupLen[0] != n || tx.wmsgs[0].OOB == nil {
		t.Fatalf("the run went as a send of %d datagrams (control message %v), want one UDP_SEGMENT send of %d",
			tx.groupLen[0], tx.wmsgs[0].OOB != nil, n)
	}
	if gso, _ := tx.Offloads(); !gso || tx.GSORefused() != 0 {
		t.Fatalf("the kernel refused the segmented send (gso %v, refused %d)", gso, tx.GSORefused())
	}
	got := receive(t, rx, n)
	for i := range sent {
		if !bytes.Equal(got[i].data, sent[i]) {
			t.Fatalf("datagram %d: %d bytes of %d, want %d of %d", i, len(got[i].data), first(got[i].data), size, i)
		}
	}
}

// TestGROCoalesces: with GRO, the datagrams of one segmented send arrive in
// one buffer with the UDP_GRO control message giving their size, and
// ReadBatch hands them out one by one.
func TestGROCoalesces(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	tx, err := ListenUDP(netip.AddrPortFrom(lo, 0), Options{Batch: 32, GSO: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	rx, err := ListenUDP(netip.AddrPortFrom(lo, 0), Options{Batch: 32, GRO: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	if gso, _ := tx.Offloads(); !gso {
		offloadMissing(t, "UDP_SEGMENT")
	}
	if _, gro := rx.Offloads(); !gro {
		offloadMissing(t, "UDP_GRO")
	}
	const n, size = 10, 1000
	sent := sendRun(t, tx, rx.LocalAddr(), n, size)
	got := receive(t, rx, n)
	slot := &rx.rbatch.slots[0]
	if seg := groSegmentSize(slot.oob[:slot.nn]); slot.n != n*size || seg != size {
		t.Fatalf("the first receive held %d bytes in segments of %d, want %d datagrams of %d coalesced", slot.n, seg, n, size)
	}
	for i := range sent {
		if !bytes.Equal(got[i].data, sent[i]) {
			t.Fatalf("datagram %d: %d bytes of %d, want %d of %d", i, len(got[i].data), first(got[i].data), size, i)
		}
	}
}

func first(b []byte) int {
	if len(b) == 0 {
		return -1
	}
	return int(b[0])
}

type datagram struct {
	data []byte
	from netip.AddrPort
}

// receive reads until count datagrams arrived, with a generous deadline.
func receive(t *testing.T, c *UDPConn, count int) []datagram {
	t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	msgs := make([]Message, 8) // fewer than a GRO run holds: exercises pending
	for i := range msgs {
		msgs[i].Buf = make([]byte, 2048)
	}
	var got []datagram
	for len(got) < count {
		n, err := c.ReadBatch(msgs)
		if err != nil {
			t.Fatalf("after %d of %d datagrams: %v", len(got), count, err)
		}
		for _, m := range msgs[:n] {
			if m.Truncated {
				t.Fatalf("datagram %d truncated", len(got))
			}
			got = append(got, datagram{bytes.Clone(m.Buf[:m.N]), m.Addr})
		}
	}
	return got
}

func TestGroupEnd(t *testing.T) {
	a := netip.MustParseAddrPort("192.0.2.1:8285")
	b := netip.MustParseAddrPort("192.0.2.2:8285")
	mk := func(spec ...any) []Message {
		var m []Message
		for i := 0; i < len(spec); i += 2 {
			m = append(m, Message{Buf: make([]byte, spec[i].(int)), Addr: spec[i+1].(netip.AddrPort)})
		}
		return m
	}
	many := func(n, size int) []Message {
		m := make([]Message, n)
		for i := range m {
			m[i] = Message{Buf: make([]byte, size), Addr: a}
		}
		return m
	}
	cases := []struct {
		name string
		msgs []Message
		want int
	}{
		{"one", mk(100, a), 1},
		{"equal run", mk(100, a, 100, a, 100, a), 3},
		{"shorter last ends it", mk(100, a, 50, a, 50, a), 2},
		{"longer never joins", mk(100, a, 200, a), 1},
		{"other peer ends it", mk(100, a, 100, b), 1},
		{"segment limit", many(100, 10), maxGSOSegments},
		{"byte limit", many(64, 1472), maxGSOBytes / 1472},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := groupEnd(c.msgs, 0); got != c.want {
				t.Errorf("groupEnd = %d, want %d", got, c.want)
			}
		})
	}
}

// TestReadBatchAllocs: receiving allocates nothing, with GRO or without
// (golang.org/x/net's ReadBatch allocated each datagram's source address).
func TestReadBatchAllocs(t *testing.T) {
	for _, gro := range []bool{false, true} {
		t.Run(fmt.Sprintf("gro=%v", gro), func(t *testing.T) {
			lo := netip.MustParseAddr("127.0.0.1")
			tx, err := ListenUDP(netip.AddrPortFrom(lo, 0), Options{Batch: 8})
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Close()
			rx, err := ListenUDP(netip.AddrPortFrom(lo, 0), Options{Batch: 8, GRO: gro})
			if err != nil {
				t.Fatal(err)
			}
			defer rx.Close()
			const runs, per = 50, 8
			out := make([]Message, per)
			for i := range out {
				out[i] = Message{Buf: bytes.Repeat([]byte{byte(i)}, 1000), Addr: rx.LocalAddr()}
			}
			for range runs + 1 { // AllocsPerRun runs once more to warm up
				if n, err := tx.WriteBatch(out); err != nil || n != per {
					t.Fatalf("WriteBatch: %d, %v", n, err)
				}
			}
			rx.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			in := make([]Message, per)
			for i := range in {
				in[i].Buf = make([]byte, 2048)
			}
			var readErr error
			allocs := testing.AllocsPerRun(runs, func() {
				for got := 0; got < per && readErr == nil; {
					var n int
					n, readErr = rx.ReadBatch(in[:per-got])
					got += n
				}
			})
			if readErr != nil {
				t.Fatal(readErr)
			}
			if allocs != 0 {
				t.Errorf("%.1f allocations per batch of %d datagrams received, want 0", allocs, per)
			}
		})
	}
}

// TestReadBatchPolls: with a busy-poll window, a receive that finds nothing
// after traffic keeps polling and takes the next datagram when it comes, and
// a read deadline still ends it once the window has closed, as SIGTERM needs.
func TestReadBatchPolls(t *testing.T) {
	for _, gro := range []bool{false, true} {
		t.Run(fmt.Sprintf("gro=%v", gro), func(t *testing.T) {
			lo := netip.MustParseAddr("127.0.0.1")
			rx, err := ListenUDP(netip.AddrPortFrom(lo, 0), Options{Batch: 8, GRO: gro, BusyPoll: 20 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer rx.Close()
			tx, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(rx.LocalAddr()))
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Close()

			tx.Write([]byte("first"))
			receive(t, rx, 1)
			// The window is open: this receive polls until the datagram comes.
			go tx.Write([]byte("second"))
			if got := receive(t, rx, 1); string(got[0].data) != "second" {
				t.Fatalf("polling receive got %q, want %q", got[0].data, "second")
			}

			rx.SetReadDeadline(time.Now())
			msgs := []Message{{Buf: make([]byte, 2048)}}
			if _, err := rx.ReadBatch(msgs); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("ReadBatch past its deadline with the window open: %v, want a deadline error", err)
			}
		})
	}
}
