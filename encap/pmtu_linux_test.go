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
	var msgs []Message
	var want [][]byte
	for i := range 20 {
		b := bytes.Repeat([]byte{byte(i)}, 1472)
		want = append(want, b)
		msgs = append(msgs, Message{Buf: b, Addr: rx.LocalAddr()})
	}
	n, err := tx.WriteBatch(msgs)
	if err != nil || n != len(msgs) {
		t.Fatalf("WriteBatch sent %d of %d: %v", n, len(msgs), err)
	}
	got := receive(t, rx, len(want))
	for i := range want {
		if !bytes.Equal(got[i].data, want[i]) {
			t.Fatalf("datagram %d: %d bytes, want %d of %#x", i, len(got[i].data), len(want[i]), want[i][0])
		}
	}
	t.Logf("%d datagrams of 1472 bytes over a 1200-byte path: all arrived; runs sent again one datagram each: %d", n, tx.GSOSplit())
	if tx.GSOSplit() == 0 {
		t.Errorf("no run was refused as one UDP_SEGMENT send: the path MTU did not bite")
	}
}
