package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/vishvananda/netlink"

	"github.com/weft-dev/weft/netlab"
)

// TestStaticTwoHosts checks static mode end to end: two hosts on an underlay
// veth, a pod behind each, weftd in static mode on both.
func TestStaticTwoHosts(t *testing.T) {
	needRoot(t)
	topo := newTopology(t, "st", 2)
	h1, h2 := topo.Hosts[0], topo.Hosts[1]
	static := func(me, peer netlab.Host) []string {
		return []string{
			"--network", topo.Network.String(),
			"--subnet", me.Subnet.String(),
			"--peer", peer.Subnet.String() + "=" + peer.UnderlayIP.String(),
			"--public-ip", me.UnderlayIP.String(),
		}
	}
	d1 := startWeftd(t, topo, h1.NS, 19465, static(h1, h2)...)
	d2 := startWeftd(t, topo, h2.NS, 19465, static(h2, h1)...)
	eventually(t, 10*time.Second, "pod 1 reaches pod 2", func() error {
		_, err := ping(topo, h1.PodNS, h2.PodIP.String(), 1)
		return err
	})

	t.Run("tun device as flanneld makes it", func(t *testing.T) {
		var link netlink.Link
		var addrs []netlink.Addr
		var routes []netlink.Route
		err := inNS(h1.NS, func() (err error) {
			if link, err = netlink.LinkByName("flannel0"); err != nil {
				return err
			}
			if addrs, err = netlink.AddrList(link, netlink.FAMILY_V4); err != nil {
				return err
			}
			routes, err = netlink.RouteList(link, netlink.FAMILY_V4)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if mtu := link.Attrs().MTU; mtu != 1472 {
			t.Errorf("flannel0 MTU %d, want 1472 (underlay 1500 - 28)", mtu)
		}
		if len(addrs) != 1 || addrs[0].IPNet.String() != "100.96.1.0/32" {
			t.Errorf("flannel0 addresses %v, want 100.96.1.0/32", addrs)
		}
		found := false
		for _, r := range routes {
			found = found || r.Dst != nil && r.Dst.String() == "100.96.0.0/16"
		}
		if !found {
			t.Errorf("no route 100.96.0.0/16 via flannel0 in %v", routes)
		}
	})

	t.Run("ping both ways", func(t *testing.T) {
		for _, c := range []struct{ from, to netlab.Host }{{h1, h2}, {h2, h1}} {
			out, err := ping(topo, c.from.PodNS, c.to.PodIP.String(), 3)
			if err != nil || !strings.Contains(out, " 0% packet loss") {
				t.Errorf("ping %v -> %v: %v\n%s", c.from.PodIP, c.to.PodIP, err, out)
			}
		}
	})

	t.Run("net unreachable for an unleased subnet", func(t *testing.T) {
		out, _ := ping(topo, h1.PodNS, "100.96.7.7", 1)
		if !strings.Contains(out, "Net Unreachable") {
			t.Errorf("ping to an unleased subnet got no net unreachable:\n%s", out)
		}
		var err error
		inNS(h1.PodNS, func() error {
			_, err = net.DialTimeout("tcp", "100.96.7.7:80", 5*time.Second)
			return nil
		})
		if err == nil || !strings.Contains(err.Error(), "network is unreachable") {
			t.Errorf("connect to an unleased subnet: %v, want network is unreachable", err)
		}
	})

	t.Run("64 MiB over TCP with a matching SHA-256, every datagram one valid packet", func(t *testing.T) {
		// With UDP segmentation offload on the veth, a capture would see
		// weftd's super-datagrams before the kernel cuts them: turn it off
		// on both ends, as on a NIC that cannot segment UDP, so the capture
		// shows what a wire would carry.
		for _, h := range []netlab.Host{h1, h2} {
			if out, err := topo.Run(context.Background(), h.NS, "ethtool", "-K", h.UnderlayDev, "tx-udp-segmentation", "off"); err != nil {
				t.Fatalf("ethtool: %v\n%s", err, out)
			}
		}
		capture := startCapture(t, h2.NS, h2.UnderlayDev)
		sent, got := tcpTransfer(t, h1, h2, 64<<20)
		if sent != got {
			t.Fatalf("SHA-256 sent %x, received %x", sent, got)
		}
		checked, err := capture.stop()
		if err != nil {
			t.Fatal(err)
		}
		if checked < 1000 {
			t.Fatalf("only %d datagrams to or from port 8285 captured during a 64 MiB transfer", checked)
		}
		t.Logf("SHA-256 %x matches; %d captured datagrams each carried one valid IPv4 packet", got, checked)
	})

	t.Run("datagrams from a non-peer or with a spoofed inner source are dropped", func(t *testing.T) {
		// A second address on h1's underlay that is no peer of h2.
		if _, err := topo.Run(context.Background(), h1.NS, "ip", "addr", "add", "192.0.2.99/24", "dev", h1.UnderlayDev); err != nil {
			t.Fatal(err)
		}
		probe := newUDPProbe(t, h2)
		before, err := d2.metricsOf()
		if err != nil {
			t.Fatal(err)
		}
		cases := []struct {
			name     string
			outerSrc string
			innerSrc netip.Addr
			deliver  bool
			reason   string
		}{
			{"real peer, real source (control)", h1.UnderlayIP.String(), h1.PodIP, true, ""},
			{"not a peer", "192.0.2.99", h1.PodIP, false, "unknown-peer"},
			{"inner source outside the sender's subnet", h1.UnderlayIP.String(), netip.MustParseAddr("100.96.9.9"), false, "spoofed-source"},
			{"inner source in the receiver's own subnet", h1.UnderlayIP.String(), netip.MustParseAddr("100.96.2.77"), false, "spoofed-source"},
		}
		for i, c := range cases {
			payload := fmt.Sprintf("probe %d", i)
			pkt := innerUDP(c.innerSrc, h2.PodIP, probeUDPPort, []byte(payload))
			sendDatagram(t, h1.NS, c.outerSrc, h2.UnderlayIP.String()+":8285", pkt)
			got := probe.wait(payload, 2*time.Second)
			if got != c.deliver {
				t.Errorf("%s: delivered=%v, want %v", c.name, got, c.deliver)
			}
		}
		after, err := d2.metricsOf()
		if err != nil {
			t.Fatal(err)
		}
		for _, reason := range []string{"unknown-peer", "spoofed-source"} {
			key := `weft_drops_total{reason="` + reason + `"}`
			want := 0
			for _, c := range cases {
				if c.reason == reason {
					want++
				}
			}
			if d := after[key] - before[key]; d != float64(want) {
				t.Errorf("%s went up by %v, want %d", key, d, want)
			}
		}
	})

	t.Run("TUN deleted from outside: weftd exits non-zero, saying why", func(t *testing.T) {
		if _, err := topo.Run(context.Background(), h2.NS, "ip", "link", "del", "flannel0"); err != nil {
			t.Fatal(err)
		}
		select {
		case <-d2.done:
		case <-time.After(10 * time.Second):
			t.Fatal("weftd still running 10 s after its TUN device was deleted")
		}
		log, _ := os.ReadFile(d2.log)
		if d2.err == nil || !strings.Contains(string(log), "was deleted from outside") {
			t.Errorf("exit %v, log:\n%s", d2.err, log)
		}
	})

	t.Run("SIGTERM removes the device and the route", func(t *testing.T) {
		if err := d1.stop(10 * time.Second); err != nil {
			t.Fatalf("weftd exit: %v", err)
		}
		err := inNS(h1.NS, func() error {
			if _, err := netlink.LinkByName("flannel0"); err == nil {
				return errors.New("flannel0 still exists")
			}
			routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
			if err != nil {
				return err
			}
			for _, r := range routes {
				if r.Dst != nil && r.Dst.String() == "100.96.0.0/16" {
					return fmt.Errorf("route %v still there", r)
				}
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	})

	t.Run("--keep-device and --log-file: SIGHUP reopens the log, SIGTERM keeps the device, the next run adopts it", func(t *testing.T) {
		logPath := filepath.Join(t.TempDir(), "weftd.log")
		k1 := startWeftd(t, topo, h1.NS, 19465, append(static(h1, h2), "--keep-device", "--log-file", logPath)...)
		k2 := startWeftd(t, topo, h2.NS, 19465, static(h2, h1)...)
		eventually(t, 10*time.Second, "pod 1 reaches pod 2", func() error {
			_, err := ping(topo, h1.PodNS, h2.PodIP.String(), 1)
			return err
		})
		eventually(t, 10*time.Second, "weftd logging to --log-file", func() error {
			b, err := os.ReadFile(logPath)
			if err == nil && !strings.Contains(string(b), "msg=forwarding") {
				err = fmt.Errorf("it says %q", b)
			}
			return err
		})
		// As logrotate does: move the file away, then SIGHUP.
		if err := os.Rename(logPath, logPath+".1"); err != nil {
			t.Fatal(err)
		}
		k1.cmd.Process.Signal(syscall.SIGHUP)
		eventually(t, 10*time.Second, "a new log file", func() error {
			b, err := os.ReadFile(logPath)
			if err == nil && !strings.Contains(string(b), "log file reopened") {
				err = fmt.Errorf("it says %q", b)
			}
			return err
		})
		if old, _ := os.ReadFile(logPath + ".1"); !strings.Contains(string(old), "forwarding") {
			t.Errorf("the moved log lacks the start-up lines:\n%s", old)
		}
		if err := k1.stop(10 * time.Second); err != nil {
			t.Fatalf("weftd exit: %v", err)
		}
		if b, _ := os.ReadFile(logPath); !strings.Contains(string(b), "TUN device kept") {
			t.Errorf("the log does not say the device was kept:\n%s", b)
		}
		err := inNS(h1.NS, func() error {
			link, err := netlink.LinkByName("flannel0")
			if err != nil {
				return fmt.Errorf("flannel0 gone despite --keep-device: %w", err)
			}
			if tt, ok := link.(*netlink.Tuntap); !ok || tt.NonPersist {
				return fmt.Errorf("flannel0 is not a persistent TUN device: %#v", link)
			}
			routes, err := netlink.RouteList(link, netlink.FAMILY_V4)
			if err != nil {
				return err
			}
			for _, r := range routes {
				if r.Dst != nil && r.Dst.String() == "100.96.0.0/16" {
					return nil
				}
			}
			return fmt.Errorf("no route 100.96.0.0/16 via the kept flannel0 in %v", routes)
		})
		if err != nil {
			t.Fatal(err)
		}
		out, _ := ping(topo, h1.PodNS, h2.PodIP.String(), 1)
		t.Logf("weftd stopped, device kept; a ping from pod 1 dies in it:\n%s", out)
		if !strings.Contains(out, "100% packet loss") {
			t.Errorf("a ping went through with no weftd running:\n%s", out)
		}
		k3 := startWeftd(t, topo, h1.NS, 19465, static(h1, h2)...)
		eventually(t, 10*time.Second, "pod 1 reaches pod 2 through the adopted device", func() error {
			_, err := ping(topo, h1.PodNS, h2.PodIP.String(), 1)
			return err
		})
		if err := k3.stop(10 * time.Second); err != nil {
			t.Fatalf("weftd exit: %v", err)
		}
		if err := inNS(h1.NS, func() error {
			if _, err := netlink.LinkByName("flannel0"); err == nil {
				return errors.New("flannel0 still exists after a stop without --keep-device")
			}
			return nil
		}); err != nil {
			t.Error(err)
		}
		k2.stop(10 * time.Second)
	})
}

// tcpTransfer sends n pseudo-random bytes from the first pod to the second
// over TCP and returns the SHA-256 of what was sent and of what arrived.
func tcpTransfer(t *testing.T, from, to netlab.Host, n int64) (sent, got [32]byte) {
	t.Helper()
	var ln net.Listener
	if err := inNS(to.PodNS, func() (err error) {
		ln, err = net.Listen("tcp", to.PodIP.String()+":5001")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		sum [32]byte
		err error
	}
	rx := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			rx <- result{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(90 * time.Second))
		h := sha256.New()
		_, err = io.Copy(h, c)
		var r result
		copy(r.sum[:], h.Sum(nil))
		r.err = err
		rx <- r
	}()
	var c net.Conn
	if err := inNS(from.PodNS, func() (err error) {
		c, err = net.DialTimeout("tcp", to.PodIP.String()+":5001", 5*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(90 * time.Second))
	h := sha256.New()
	src := io.LimitReader(rand.NewChaCha8([32]byte{'w', 'e', 'f', 't'}), n)
	if _, err := io.Copy(io.MultiWriter(c, h), src); err != nil {
		t.Fatalf("send: %v", err)
	}
	c.Close()
	copy(sent[:], h.Sum(nil))
	r := <-rx
	if r.err != nil {
		t.Fatalf("receive: %v", r.err)
	}
	return sent, r.sum
}

// capture reads the underlay of a host and checks every UDP datagram to or
// from port 8285: its payload must be exactly one IPv4 packet with valid
// header and transport checksums.
type capture struct {
	h       *pcapgo.EthernetHandle
	wg      sync.WaitGroup
	checked atomic.Int64
	mu      sync.Mutex
	err     error
	stopped atomic.Bool
}

func startCapture(t *testing.T, ns, dev string) *capture {
	t.Helper()
	c := &capture{}
	if err := inNS(ns, func() (err error) {
		c.h, err = pcapgo.NewEthernetHandle(dev)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for !c.stopped.Load() {
			data, _, err := c.h.ReadPacketData()
			if err != nil {
				if !c.stopped.Load() {
					c.fail(err)
				}
				return
			}
			is8285, err := checkFrame(data)
			if err != nil {
				c.fail(err)
				continue
			}
			if is8285 {
				c.checked.Add(1)
			}
		}
	}()
	t.Cleanup(func() { c.stop() })
	return c
}

func (c *capture) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
}

func (c *capture) stop() (int64, error) {
	if c.stopped.Swap(true) {
		return c.checked.Load(), nil
	}
	// The read blocks until the next frame: a closed handle ends it.
	c.h.Close()
	c.wg.Wait()
	return c.checked.Load(), c.err
}

// checkFrame verifies one captured frame if it is a datagram of port 8285,
// and says whether it was.
func checkFrame(data []byte) (bool, error) {
	p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
	udp, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if !ok || (udp.DstPort != 8285 && udp.SrcPort != 8285) {
		return false, nil
	}
	return true, checkInner(udp.Payload)
}

// checkInner checks that payload is one whole IPv4 packet, nothing more,
// with a valid header checksum and a valid TCP, UDP or ICMP checksum.
func checkInner(payload []byte) error {
	ip := &layers.IPv4{}
	if err := ip.DecodeFromBytes(payload, gopacket.NilDecodeFeedback); err != nil {
		return fmt.Errorf("payload is no IPv4 packet: %v", err)
	}
	if int(ip.Length) != len(payload) {
		return fmt.Errorf("IPv4 length %d but payload %d bytes: not exactly one packet", ip.Length, len(payload))
	}
	hlen := int(ip.IHL) * 4
	if sum := onesSum(payload[:hlen], 0); sum != 0xffff {
		return fmt.Errorf("inner IPv4 header checksum wrong (%v -> %v)", ip.SrcIP, ip.DstIP)
	}
	body := payload[hlen:]
	if ip.Flags&layers.IPv4MoreFragments != 0 || ip.FragOffset != 0 {
		return nil // a fragment's transport checksum covers the whole datagram
	}
	var pseudo uint32
	switch ip.Protocol {
	case layers.IPProtocolTCP, layers.IPProtocolUDP:
		pseudo = onesAdd(payload[12:20], 0) + uint32(ip.Protocol) + uint32(len(body))
		if ip.Protocol == layers.IPProtocolUDP && len(body) >= 8 && binary.BigEndian.Uint16(body[6:]) == 0 {
			return nil // UDP checksum not used
		}
	case layers.IPProtocolICMPv4:
	default:
		return nil
	}
	if sum := onesSum(body, pseudo); sum != 0xffff {
		return fmt.Errorf("inner %v checksum wrong (%v -> %v)", ip.Protocol, ip.SrcIP, ip.DstIP)
	}
	return nil
}

func onesAdd(b []byte, sum uint32) uint32 {
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}

func onesSum(b []byte, initial uint32) uint16 {
	sum := onesAdd(b, initial)
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return uint16(sum)
}

const probeUDPPort = 9999

// udpProbe listens in a pod for crafted datagrams.
type udpProbe struct {
	conn net.PacketConn
	got  chan string
}

func newUDPProbe(t *testing.T, h netlab.Host) *udpProbe {
	t.Helper()
	p := &udpProbe{got: make(chan string, 16)}
	if err := inNS(h.PodNS, func() (err error) {
		p.conn, err = net.ListenPacket("udp4", fmt.Sprintf("%s:%d", h.PodIP, probeUDPPort))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.conn.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, _, err := p.conn.ReadFrom(buf)
			if err != nil {
				return
			}
			p.got <- string(buf[:n])
		}
	}()
	return p
}

// wait reports whether payload arrives within d. Only a missing delivery
// waits the whole d; nothing here measures speed.
func (p *udpProbe) wait(payload string, d time.Duration) bool {
	timeout := time.After(d)
	for {
		select {
		case s := <-p.got:
			if s == payload {
				return true
			}
		case <-timeout:
			return false
		}
	}
}

// innerUDP builds an IPv4/UDP packet with valid checksums.
func innerUDP(src, dst netip.Addr, port uint16, payload []byte) []byte {
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	udp := &layers.UDP{SrcPort: 40000, DstPort: layers.UDPPort(port)}
	udp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, udp, gopacket.Payload(payload)); err != nil {
		panic(err)
	}
	return bytes.Clone(buf.Bytes())
}

// sendDatagram sends payload from src (an address in ns) to dst, as a peer
// would: from port 8285, the port its weftd (or flanneld) listens and sends on.
func sendDatagram(t *testing.T, ns, src, dst string, payload []byte) {
	t.Helper()
	err := inNS(ns, func() error {
		a, err := netip.ParseAddr(src)
		if err != nil {
			return err
		}
		return sendReusePort(netip.AddrPortFrom(a, 8285), dst, payload)
	})
	if err != nil {
		t.Fatal(err)
	}
}
