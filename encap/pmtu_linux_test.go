package encap

import (
	"bytes"
	"net/netip"
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// TestWriteBatchPathMTUBelowSegments: the path to the peer carries less
// than a segment (here loopback at MTU 1200, in a network namespace of the
// test's own; 1472-byte datagrams). The kernel refuses the runs as
// UDP_SEGMENT sends; WriteBatch sends them again one datagram each, which
// the kernel fragments, and every datagram arrives whole.
func TestWriteBatchPathMTUBelowSegments(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root for a network namespace, and CI=true forbids skipping")
		}
		t.Skip("needs root for a network namespace")
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	ns, err := netns.New() // unnamed: it goes when its last socket closes
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	var tx, rx *UDPConn
	setup := func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		if err := netlink.LinkSetMTU(lo, 1200); err != nil {
			return err
		}
		if err := netlink.LinkSetUp(lo); err != nil {
			return err
		}
		local := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 0)
		if tx, err = ListenUDP(local, Options{Batch: 32, GSO: true}); err != nil {
			return err
		}
		rx, err = ListenUDP(local, Options{Batch: 32})
		return err
	}
	serr := setup()
	if err := netns.Set(orig); err != nil {
		t.Fatalf("back to the test's namespace: %v", err) // the thread stays locked and dies
	}
	runtime.UnlockOSThread()
	ns.Close()
	orig.Close()
	if serr != nil {
		t.Fatal(serr)
	}
	defer tx.Close()
	defer rx.Close()
	if gso, _ := tx.Offloads(); !gso {
		t.Fatal("the kernel has no UDP_SEGMENT: nothing to test")
	}
	// Several batches: the first run is refused and sent again; the
	// runs after it to the same peer go one datagram each at once.
	const batches = 5
	total := 0
	for b := range batches {
		var msgs []Message
		var want [][]byte
		for i := range 20 {
			buf := bytes.Repeat([]byte{byte(b*20 + i)}, 1472)
			want = append(want, buf)
			msgs = append(msgs, Message{Buf: buf, Addr: rx.LocalAddr()})
		}
		n, err := tx.WriteBatch(msgs)
		if err != nil || n != len(msgs) {
			t.Fatalf("batch %d: WriteBatch sent %d of %d: %v", b, n, len(msgs), err)
		}
		got := receive(t, rx, len(want))
		for i := range want {
			if !bytes.Equal(got[i].data, want[i]) {
				t.Fatalf("batch %d, datagram %d: %d bytes, want %d of %#x", b, i, len(got[i].data), len(want[i]), want[i][0])
			}
		}
		total += n
	}
	t.Logf("%d datagrams of 1472 bytes in %d batches over a 1200-byte path: all arrived; runs refused as one UDP_SEGMENT send: %d", total, batches, tx.GSOSplit())
	if tx.GSOSplit() != 1 {
		t.Errorf("%d runs refused, want 1: the first (the path MTU bites), and then none (the peer is known narrow)", tx.GSOSplit())
	}
}

// TestNarrowPaths: a peer marked narrow skips UDP_SEGMENT for its runs of
// segments at least as large as the refused ones, for narrowRuns runs;
// then it is tried again. Other peers, and smaller segments, are not held.
func TestNarrowPaths(t *testing.T) {
	c := &UDPConn{}
	p := func(i int) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), 8285)
	}
	if c.isNarrow(p(1), 1472) {
		t.Fatal("narrow before any refusal")
	}
	c.markNarrow(p(1), 1472)
	for _, tc := range []struct {
		to   netip.AddrPort
		seg  int
		want bool
	}{{p(1), 1472, true}, {p(1), 1500, true}, {p(1), 1000, false}, {p(2), 1472, false}} {
		if got := c.isNarrow(tc.to, tc.seg); got != tc.want {
			t.Errorf("isNarrow(%v, %d) = %v, want %v", tc.to, tc.seg, got, tc.want)
		}
	}
	n := 2 // runs counted above
	for c.isNarrow(p(1), 1472) {
		n++
	}
	if n != narrowRuns || c.narrowed != 0 {
		t.Errorf("narrow for %d runs (entries in use after: %d), want %d (0)", n, c.narrowed, narrowRuns)
	}
	// More narrow peers than slots: the newest are kept.
	for i := range len(c.narrow) + 2 {
		c.markNarrow(p(10+i), 1472)
	}
	if c.narrowed != len(c.narrow) || !c.isNarrow(p(10+len(c.narrow)+1), 1472) {
		t.Errorf("after %d peers: %d entries in use, newest narrow = false", len(c.narrow)+2, c.narrowed)
	}
	c.markNarrow(p(10+len(c.narrow)+1), 1400) // the same peer again: its entry, renewed
	if c.narrowed != len(c.narrow) || !c.isNarrow(p(10+len(c.narrow)+1), 1400) {
		t.Errorf("a peer marked twice took a second entry, or kept the old size")
	}
}
