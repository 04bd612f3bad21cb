package tun

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weft-dev/weft/internal/roottest"
)

func TestConfigCheck(t *testing.T) {
	good := Config{
		Name: "flannel0", Queues: 2, MTU: 1472, Batch: 64, Kind: Plain,
		Addr: netip.MustParseAddr("100.96.1.0"), Network: netip.MustParsePrefix("100.96.0.0/16"),
	}
	if err := good.check(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	tests := []struct {
		name string
		mod  func(c *Config)
		want string
	}{
		{"no name", func(c *Config) { c.Name = "" }, "bad device name"},
		{"name of 16 bytes", func(c *Config) { c.Name = "flannel0flannel0" }, "bad device name"},
		{"no queue", func(c *Config) { c.Queues = 0 }, "queues"},
		{"MTU 67", func(c *Config) { c.MTU = 67 }, "MTU"},
		{"MTU 65536", func(c *Config) { c.MTU = 65536 }, "MTU"},
		{"IPv6 address", func(c *Config) { c.Addr = netip.MustParseAddr("2001:db8::1") }, "not IPv4"},
		{"no address", func(c *Config) { c.Addr = netip.Addr{} }, "not IPv4"},
		{"unmasked network", func(c *Config) { c.Network = netip.MustParsePrefix("100.96.1.0/16") }, "masked IPv4"},
		{"IPv6 network", func(c *Config) { c.Network = netip.MustParsePrefix("2001:db8::/32") }, "masked IPv4"},
		{"batch 0", func(c *Config) { c.Batch = 0 }, "batch"},
		{"no kind", func(c *Config) { c.Kind = 0 }, "kind"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.mod(&c)
			if err := c.check(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("check() = %v, want an error with %q", err, tt.want)
			}
			if _, err := Create(c); err == nil {
				t.Fatal("Create accepted it")
			}
		})
	}
}

// newNetns creates a network namespace named after this process and tag,
// removed when the test ends, pass or fail, with loopback up, forwarding on,
// no reverse-path filter and no IPv6 (no stray router solicitations).
func newNetns(t testing.TB, tag string) string {
	t.Helper()
	sweepOnce.Do(sweepStaleNetns)
	name := fmt.Sprintf("wtun%d-%s", os.Getpid(), tag)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up in %s: %v: %s", name, err, out)
	}
	err := inNS(name, func() error {
		for _, s := range []string{
			"ipv4/ip_forward", "ipv4/conf/all/rp_filter=0", "ipv4/conf/default/rp_filter=0",
			"ipv6/conf/all/disable_ipv6", "ipv6/conf/default/disable_ipv6",
		} {
			key, val, ok := strings.Cut(s, "=")
			if !ok {
				val = "1"
			}
			if err := os.WriteFile(filepath.Join("/proc/sys/net", key), []byte(val), 0); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return name
}

var sweepOnce sync.Once

// sweepStaleNetns deletes the namespaces that test processes of this package
// made and did not live to remove: those named wtun<pid>- whose process is
// gone. A fuzz worker that the fuzzing engine kills at its deadline never
// runs its cleanups. A pid taken again by another process keeps its
// namespace: only a dead one's is deleted.
func sweepStaleNetns() {
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), "wtun")
		digits, _, dash := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(digits)
		if !ok || !dash || err != nil || pid <= 0 {
			continue
		}
		if unix.Kill(pid, 0) == unix.ESRCH {
			exec.Command("ip", "netns", "del", e.Name()).Run()
		}
	}
}

// inNS runs fn on a thread switched into the named namespace. Sockets and
// TUN queues fn opens stay in that namespace after it returns.
func inNS(ns string, fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	h, err := netns.GetFromName(ns)
	if err != nil {
		return fmt.Errorf("netns %s: %w", ns, err)
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		return fmt.Errorf("enter netns %s: %w", ns, err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		// The thread is left in the wrong namespace: keep it locked so
		// that it dies with this goroutine instead of being reused.
		runtime.LockOSThread()
		return fmt.Errorf("leave netns %s: %w", ns, err)
	}
	return ferr
}

// createIn creates the device in ns, closed (inside ns, where its route is)
// when the test ends.
func createIn(t testing.TB, ns string, cfg Config) *Link {
	t.Helper()
	var l *Link
	if err := inNS(ns, func() (err error) { l, err = Create(cfg); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := inNS(ns, l.Close); err != nil {
			t.Errorf("close %s: %v", cfg.Name, err)
		}
	})
	return l
}

// read is what one read of a device handed over.
type read struct {
	pkt []byte
	gso GSO
}

// readMatching reads q (with ReadGSO if gso is set) until n packets match,
// in at most 200 reads and 10 seconds: a bound, so that a packet that
// never comes fails the test instead of hanging it.
func readMatching(t *testing.T, q Device, gso bool, n int, match func([]byte) bool) []read {
	t.Helper()
	type result struct {
		got []read
		err error
	}
	done := make(chan result, 1)
	go func() {
		bufs := newBufs(q.Caps().Batch)
		sizes := make([]int, len(bufs))
		gsos := make([]GSO, len(bufs))
		var got []read
		for range 200 {
			var k int
			var err error
			if gso {
				k, err = q.ReadGSO(bufs, sizes, gsos, Headroom)
			} else {
				k, err = q.Read(bufs, sizes, Headroom)
			}
			if err != nil {
				done <- result{got, err}
				return
			}
			for i := range k {
				p := bytes.Clone(bufs[i][Headroom : Headroom+sizes[i]])
				if match(p) {
					got = append(got, read{p, gsos[i]})
				}
			}
			if len(got) >= n {
				break
			}
		}
		done <- result{got, nil}
	}()
	select {
	case r := <-done:
		if r.err != nil || len(r.got) != n {
			t.Fatalf("read %d matching packets (%v), want %d", len(r.got), r.err, n)
		}
		return r.got
	case <-time.After(10 * time.Second):
		t.Fatalf("no %d matching packets within 10 s", n)
		return nil
	}
}

// toAddr matches IPv4 packets to dst of protocol proto.
func toAddr(dst netip.Addr, proto byte) func([]byte) bool {
	return func(p []byte) bool {
		return len(p) >= 20 && p[0]>>4 == 4 && p[9] == proto && netip.AddrFrom4([4]byte(p[16:20])) == dst
	}
}

var (
	dutAddr  = netip.MustParseAddr("100.96.1.0")
	dutNet   = netip.MustParsePrefix("100.96.0.0/17")
	peerAddr = netip.MustParseAddr("100.96.128.0")
	peerNet  = netip.MustParsePrefix("100.96.128.0/17")
	farPod   = netip.MustParseAddr("100.96.130.2") // routed into the peer device
)

// farFlow is n segments of 1400 bytes from pod2 to farPod, PSH on the last,
// as weft's inbound path writes them into the TUN.
func farFlow(n int) [][]byte {
	var pkts [][]byte
	for i := range n {
		s := flowSeg(i)
		s.dst = farPod
		s.payload = bytes.Repeat([]byte{byte(i)}, 1400)
		s.seq = 1 + uint32(i*1400)
		if i == n-1 {
			s.flags |= flagPSH
		}
		pkts = append(pkts, s.build())
	}
	return pkts
}

// sameForwarded checks that got is want forwarded once: TTL one less, IP
// ID want's or id, checksums recomputed and valid, all else equal.
func sameForwarded(got, want []byte, id uint16) error {
	if err := checkIPv4(got); err != nil {
		return err
	}
	if len(got) != len(want) {
		return fmt.Errorf("%d bytes, sent %d", len(got), len(want))
	}
	if got[8] != want[8]-1 {
		return fmt.Errorf("TTL %d, sent %d", got[8], want[8])
	}
	if gid := binary.BigEndian.Uint16(got[4:]); gid != binary.BigEndian.Uint16(want[4:]) && gid != id {
		return fmt.Errorf("IP ID %d, sent %d", gid, binary.BigEndian.Uint16(want[4:]))
	}
	g := bytes.Clone(got)
	ihl := int(want[0]&0x0f) * 4
	for _, c := range [][2]int{{4, 6}, {8, 9}, {10, 12}, {ihl + 16, ihl + 18}} {
		copy(g[c[0]:c[1]], want[c[0]:c[1]])
	}
	if want[9] == 17 {
		copy(g[ihl+6:ihl+8], want[ihl+6:ihl+8])
	}
	if !bytes.Equal(g, want) {
		return fmt.Errorf("differs from what was sent")
	}
	return nil
}

// TestLinkInNetns opens each kind of device in a namespace of its own,
// writes a TCP flow (coalesced by the offloading devices) and a UDP datagram
// into it, and reads back, from a plain device the kernel routes them to,
// the packets forwarded; then reads from the device a datagram, and a UDP
// super-packet (UDP_SEGMENT), that a socket sends through it.
func TestLinkInNetns(t *testing.T) {
	roottest.NeedRoot(t, "ip")
	modes := []struct {
		name  string
		kind  Kind
		queue string
	}{
		{"plain", Plain, "*tun.queue"},
		{"wireguard", CopyingOffload, "*tun.offloadQueue"},
		{"zerocopy", Offload, "*tun.vnetQueue"},
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			ns := newNetns(t, m.name)
			dut := createIn(t, ns, Config{Name: "wdut", Queues: 1, MTU: 1500, Addr: dutAddr, Network: dutNet,
				Batch: 16, Kind: m.kind})
			peer := createIn(t, ns, Config{Name: "wpeer", Queues: 1, MTU: 1500, Addr: peerAddr, Network: peerNet, Batch: 64, Kind: Plain})
			q := dut.Queues[0]
			if got := fmt.Sprintf("%T", q); got != m.queue {
				t.Fatalf("queue is a %s, want %s", got, m.queue)
			}

			t.Run("write", func(t *testing.T) {
				flow := farFlow(10)
				udp := udpSpec{dst: farPod, dport: 9, payload: []byte("one datagram")}.build()
				// A run of datagrams of one flow: weft's device writes
				// them as one USO super-packet, which the kernel cuts
				// again for the plain device.
				var udpRun [][]byte
				for k := range 8 {
					udpRun = append(udpRun, udpSpec{dst: farPod, dport: 10, id: 100 + uint16(k),
						payload: bytes.Repeat([]byte{byte(k)}, 1000-200*(k/7))}.build())
				}
				pkts := append(append(flow, udp), udpRun...)
				n, err := q.Write(bufsOf(pkts), Headroom)
				if err != nil || n != len(pkts) {
					t.Fatalf("Write = %d, %v; want %d", n, err, len(pkts))
				}
				if vq, ok := q.(*vnetQueue); ok && vq.uso {
					if !slices.ContainsFunc(vq.runs, func(r run) bool { return r.udp && r.end-r.start == len(udpRun) }) {
						t.Errorf("the datagrams were not written as one USO super-packet: runs %v", runLengths(vq.runs))
					}
				}
				toFar := func(p []byte) bool { return toAddr(farPod, 6)(p) || toAddr(farPod, 17)(p) }
				var segs, dgrams [][]byte
				for _, r := range readMatching(t, peer.Queues[0], false, len(pkts), toFar) {
					switch {
					case r.pkt[9] == 17 && r.pkt[23] == 9:
						if err := sameForwarded(r.pkt, udp, 0); err != nil {
							t.Errorf("datagram: %v", err)
						}
					case r.pkt[9] == 17:
						dgrams = append(dgrams, r.pkt)
					default:
						segs = append(segs, r.pkt)
					}
				}
				if len(dgrams) != len(udpRun) {
					t.Fatalf("%d datagrams of the run came out, %d went in", len(dgrams), len(udpRun))
				}
				for k, p := range dgrams {
					if err := sameForwarded(p, udpRun[k], 100+uint16(k)); err != nil {
						t.Errorf("datagram %d of the run: %v", k, err)
					}
				}
				if len(segs) != len(flow) {
					t.Fatalf("%d segments came out, %d went in", len(segs), len(flow))
				}
				id0 := binary.BigEndian.Uint16(flow[0][4:])
				for i, p := range segs {
					if err := sameForwarded(p, flow[i], id0+uint16(i)); err != nil {
						t.Errorf("segment %d: %v", i, err)
					}
				}
			})

			t.Run("write refused", func(t *testing.T) {
				// A TUN without packet information refuses a packet that
				// is neither IPv4 nor IPv6 (EINVAL); the rest still go.
				bad := make([]byte, 40)
				udp := udpSpec{dst: farPod, dport: 7, payload: []byte("after a refused one")}.build()
				n, err := q.Write(bufsOf([][]byte{bad, udp}), Headroom)
				if err == nil {
					t.Fatalf("Write of a packet the kernel refuses = %d, no error", n)
				}
				if want := map[bool]int{true: 0, false: 1}[m.name == "wireguard"]; n != want {
					t.Errorf("Write = %d, %v; want %d known written", n, err, want)
				}
				got := readMatching(t, peer.Queues[0], false, 1, toAddr(farPod, 17))
				if err := sameForwarded(got[0].pkt, udp, 0); err != nil {
					t.Error(err)
				}
			})

			t.Run("more queues", func(t *testing.T) {
				cfg := Config{Name: "wmq", Queues: 3, MTU: 1400, Batch: 8, Kind: m.kind,
					Addr: netip.MustParseAddr("100.96.200.1"), Network: netip.MustParsePrefix("100.96.192.0/18")}
				l := createIn(t, ns, cfg)
				if len(l.Queues) != 3 || l.Name() != "wmq" {
					t.Fatalf("%s has %d queues", l.Name(), len(l.Queues))
				}
				for i, q := range l.Queues {
					if got := fmt.Sprintf("%T", q); got != m.queue {
						t.Errorf("queue %d is a %s", i, got)
					}
				}
				err := inNS(ns, func() error { _, err := Create(cfg); return err })
				if err == nil || !strings.Contains(err.Error(), "already exists") {
					t.Fatalf("Create of a second wmq: %v", err)
				}
				if err := inNS(ns, l.Close); err != nil {
					t.Fatal(err)
				}
				if err := inNS(ns, l.Close); err != nil {
					t.Fatalf("second Close: %v", err)
				}
				// The device goes with its last queue: the name is free again.
				l2 := createIn(t, ns, cfg)
				if len(l2.Queues) != 3 {
					t.Fatalf("%d queues", len(l2.Queues))
				}
			})

			t.Run("keep", func(t *testing.T) {
				cfg := Config{Name: "wkeep", Queues: 2, MTU: 1400, Batch: 8, Kind: m.kind,
					Addr: netip.MustParseAddr("100.96.201.1"), Network: netip.MustParsePrefix("100.96.192.0/18"), Keep: true}
				l := createIn(t, ns, cfg)
				if err := inNS(ns, l.Close); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { inNS(ns, func() error { return delLink("wkeep") }) })
				if err := inNS(ns, func() error { return checkLink("wkeep", true, "100.96.201.1/32", "100.96.192.0/18") }); err != nil {
					t.Fatalf("after Close with Keep: %v", err)
				}
				// The next run adopts it, for another subnet and network,
				// and without Keep removes it when done.
				cfg.Keep, cfg.Addr, cfg.Network = false, netip.MustParseAddr("100.96.202.1"), netip.MustParsePrefix("100.96.128.0/18")
				l2 := createIn(t, ns, cfg)
				if err := inNS(ns, func() error { return checkLink("wkeep", false, "100.96.202.1/32", "100.96.128.0/18") }); err != nil {
					t.Fatalf("adopted: %v", err)
				}
				// While its queues are open it is in use: not adopted again.
				err := inNS(ns, func() error { _, err := Create(cfg); return err })
				if err == nil || !strings.Contains(err.Error(), "already exists") {
					t.Fatalf("Create of a kept device in use: %v", err)
				}
				if err := inNS(ns, l2.Close); err != nil {
					t.Fatal(err)
				}
				if err := inNS(ns, func() error { _, err := netlink.LinkByName("wkeep"); return err }); err == nil {
					t.Fatal("the adopted device outlived Close without Keep")
				}
			})

			t.Run("read", func(t *testing.T) {
				var conn *net.UDPConn
				err := inNS(ns, func() (err error) {
					conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: dutAddr.AsSlice()})
					return err
				})
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				msg := []byte("from a socket, through the TUN")
				if _, err := conn.WriteToUDP(msg, &net.UDPAddr{IP: pod2.AsSlice(), Port: 9999}); err != nil {
					t.Fatal(err)
				}
				got := readMatching(t, q, m.kind == Offload, 1, toAddr(pod2, 17))[0]
				if got.gso != (GSO{}) && (got.gso.Kind != GSONone || got.gso.NeedsCsum) {
					t.Errorf("GSO %+v, want a complete packet", got.gso)
				}
				if err := checkIPv4(got.pkt); err != nil {
					t.Fatal(err)
				}
				ip, pk, err := decode(got.pkt)
				if err != nil {
					t.Fatal(err)
				}
				if !ip.SrcIP.Equal(dutAddr.AsSlice()) || pk.TransportLayer() == nil ||
					!bytes.Equal(pk.TransportLayer().LayerPayload(), msg) {
					t.Fatalf("read %x", got.pkt)
				}
			})

			t.Run("read UDP_SEGMENT", func(t *testing.T) {
				var conn *net.UDPConn
				err := inNS(ns, func() (err error) {
					conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: dutAddr.AsSlice()})
					return err
				})
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				rc, err := conn.SyscallConn()
				if err != nil {
					t.Fatal(err)
				}
				var serr error
				rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT, 500) })
				if serr != nil {
					t.Fatal("UDP_SEGMENT:", serr)
				}
				msg := make([]byte, 1400)
				for i := range msg {
					msg[i] = byte(i * 3)
				}
				if _, err := conn.WriteToUDP(msg, &net.UDPAddr{IP: pod2.AsSlice(), Port: 9998}); err != nil {
					t.Fatal(err)
				}
				var segs [][]byte
				if m.kind == Offload {
					got := readMatching(t, q, true, 1, toAddr(pod2, 17))[0]
					if got.gso.Kind != GSOUDPv4 || got.gso.SegmentSize != 500 {
						t.Fatalf("GSO %+v, want a UDP super-packet of 500-byte segments (USO, Linux 6.2)", got.gso)
					}
					heads := make([]byte, MaxSegments*MaxHeader)
					out := make([]Segment, MaxSegments)
					n, err := Split(got.pkt, got.gso, heads, out)
					if err != nil {
						t.Fatal(err)
					}
					for _, s := range out[:n] {
						segs = append(segs, flatten(s))
					}
				} else {
					for _, r := range readMatching(t, q, false, 3, toAddr(pod2, 17)) {
						segs = append(segs, r.pkt)
					}
				}
				if len(segs) != 3 {
					t.Fatalf("%d segments, want 3", len(segs))
				}
				var joined []byte
				for i, s := range segs {
					if m.name == "wireguard" && s[26] == 0 && s[27] == 0 {
						// wireguard-go's gsoSplit writes a computed 0 as is.
						t.Logf("segment %d: UDP checksum 0 from wireguard-go", i)
						s[26], s[27] = 0xff, 0xff
					}
					if err := checkIPv4(s); err != nil {
						t.Fatalf("segment %d: %v", i, err)
					}
					joined = append(joined, s[28:]...)
				}
				if !bytes.Equal(joined, msg) {
					t.Fatal("the segments' payloads do not join into the datagram sent")
				}
				// What the kernel (or wireguard-go) cut, Split cuts the same,
				// IP IDs and checksums included.
				super := append(bytes.Clone(segs[0][:28]), msg...)
				binary.BigEndian.PutUint16(super[2:], uint16(len(super)))
				heads := make([]byte, MaxSegments*MaxHeader)
				out := make([]Segment, MaxSegments)
				n, err := Split(super, GSO{Kind: GSOUDPv4, SegmentSize: 500}, heads, out)
				if err != nil || n != 3 {
					t.Fatalf("Split = %d, %v", n, err)
				}
				for i, s := range out[:n] {
					if got := flatten(s); !bytes.Equal(got, segs[i]) {
						t.Errorf("segment %d: Split makes\n %x\nthe device read\n %x", i, got[:28], segs[i][:28])
					}
				}
			})
		})
	}

	// Two zero-copy devices: a run written into one comes out of the other
	// as one TCP super-packet (the kernel forwards it whole, both devices
	// having TSO), which Split cuts back into the segments written.
	t.Run("zerocopy TSO round trip", func(t *testing.T) {
		ns := newNetns(t, "tso")
		dut := createIn(t, ns, Config{Name: "wdut", Queues: 1, MTU: 1500, Addr: dutAddr, Network: dutNet,
			Batch: 16, Kind: Offload})
		peer := createIn(t, ns, Config{Name: "wpeer", Queues: 1, MTU: 1500, Addr: peerAddr, Network: peerNet,
			Batch: 16, Kind: Offload})
		flow := farFlow(10)
		if n, err := dut.Queues[0].Write(bufsOf(flow), Headroom); err != nil || n != len(flow) {
			t.Fatalf("Write = %d, %v", n, err)
		}
		got := readMatching(t, peer.Queues[0], true, 1, toAddr(farPod, 6))[0]
		if got.gso.Kind != GSOTCPv4 || got.gso.SegmentSize != 1400 {
			t.Fatalf("GSO %+v, want a TCP super-packet of 1400-byte segments", got.gso)
		}
		heads := make([]byte, MaxSegments*MaxHeader)
		out := make([]Segment, MaxSegments)
		n, err := Split(got.pkt, got.gso, heads, out)
		if err != nil || n != len(flow) {
			t.Fatalf("Split = %d, %v; want %d", n, err, len(flow))
		}
		id0 := binary.BigEndian.Uint16(flow[0][4:])
		for i, s := range out[:n] {
			if err := sameForwarded(flatten(s), flow[i], id0+uint16(i)); err != nil {
				t.Errorf("segment %d: %v", i, err)
			}
		}
	})
}

// checkLink checks that name is a TUN device, persistent or not as said,
// holding only the address addr and the route dst of its own.
func checkLink(name string, persistent bool, addr, dst string) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	t, ok := link.(*netlink.Tuntap)
	if !ok || t.NonPersist == persistent {
		return fmt.Errorf("%s is a %T, persistent %v, want %v", name, link, ok && !t.NonPersist, persistent)
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return err
	}
	if len(addrs) != 1 || addrs[0].IPNet.String() != addr {
		return fmt.Errorf("%s has addresses %v, want only %s", name, addrs, addr)
	}
	routes, err := netlink.RouteList(link, netlink.FAMILY_V4)
	if err != nil {
		return err
	}
	var dsts []string
	for _, r := range routes {
		if r.Dst != nil {
			dsts = append(dsts, r.Dst.String())
		}
	}
	if len(dsts) != 1 || dsts[0] != dst {
		return fmt.Errorf("%s has routes to %v, want only %s", name, dsts, dst)
	}
	return nil
}

// delLink deletes the device name if it is there.
func delLink(name string) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return nil
	}
	return netlink.LinkDel(link)
}

// TestSweepStaleNetns: the namespace of a test process that is gone is
// deleted; one of a live process is kept.
func TestSweepStaleNetns(t *testing.T) {
	roottest.NeedRoot(t, "ip")
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	stale := fmt.Sprintf("wtun%d-sweep", dead.Process.Pid)
	if out, err := exec.Command("ip", "netns", "add", stale).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", stale, err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", stale).Run() })
	live := newNetns(t, "keep")

	sweepStaleNetns()
	if _, err := os.Stat(filepath.Join("/run/netns", stale)); !os.IsNotExist(err) {
		t.Errorf("%s, of a process that is gone, still there: %v", stale, err)
	}
	if _, err := os.Stat(filepath.Join("/run/netns", live)); err != nil {
		t.Errorf("%s, of this live process, removed: %v", live, err)
	}
}
