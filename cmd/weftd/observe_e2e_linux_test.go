package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/weft-dev/weft/control"
	"github.com/weft-dev/weft/netlab"
)

// TestObservability checks what an operator sees, end to end: two hosts in static
// mode, each weftd with its own control socket; weft status, routes and
// dump against them; every metric present, and moving where traffic moves
// it.
func TestObservability(t *testing.T) {
	needRoot(t)
	weft := buildWeft(t)
	topo := newTopology(t, "ob", 2)
	h1, h2 := topo.Hosts[0], topo.Hosts[1]
	dir := t.TempDir()
	sock1, sock2 := filepath.Join(dir, "h1.sock"), filepath.Join(dir, "h2.sock")
	d1 := startWeftd(t, topo, h1.NS, 19470, append(staticFlags(topo, h1, h2), "--control-socket", sock1)...)
	d2 := startWeftd(t, topo, h2.NS, 19470, append(staticFlags(topo, h2, h1), "--control-socket", sock2)...)
	eventually(t, 10*time.Second, "pod 1 reaches pod 2", func() error {
		_, err := ping(topo, h1.PodNS, h2.PodIP.String(), 1)
		return err
	})
	before1, err := d1.metricsOf()
	if err != nil {
		t.Fatal(err)
	}
	before2, err := d2.metricsOf()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := ping(topo, h1.PodNS, h2.PodIP.String(), 3); err != nil {
		t.Fatalf("ping: %v\n%s", err, out)
	}

	t.Run("status", func(t *testing.T) {
		out := runWeft(t, weft, sock1, "status", "--json", "--interval", "300ms")
		var got struct {
			Status control.Status `json:"status"`
			Rates  *struct {
				IntervalSeconds float64 `json:"interval_seconds"`
			} `json:"rates"`
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("weft status --json: %v\n%s", err, out)
		}
		s := got.Status
		if s.Subnet != h1.Subnet.String() || s.Network != topo.Network.String() || s.PublicIP != h1.UnderlayIP.String() ||
			s.Port != 8285 || s.TUN != "flannel0" || s.MTU != 1472 || s.Workers < 1 || s.Mode != "static" {
			t.Errorf("status %+v", s)
		}
		if s.Lease != nil || s.Etcd != nil {
			t.Errorf("static mode reports lease %+v, etcd %+v", s.Lease, s.Etcd)
		}
		if s.Routes != 1 || s.Peers != 1 || s.Counters.TxPackets < 4 || s.Counters.RxPackets < 4 {
			t.Errorf("routes %d, peers %d, tx %d, rx %d packets; want 1, 1, and the pings", s.Routes, s.Peers, s.Counters.TxPackets, s.Counters.RxPackets)
		}
		if got.Rates == nil || got.Rates.IntervalSeconds <= 0 {
			t.Errorf("no rates measured: %s", out)
		}
		t.Logf("weft status:\n%s", runWeft(t, weft, sock1, "status", "--interval", "300ms"))
	})

	t.Run("routes", func(t *testing.T) {
		out := runWeft(t, weft, sock1, "routes", "--json")
		var routes []control.Route
		if err := json.Unmarshal(out, &routes); err != nil {
			t.Fatalf("weft routes --json: %v\n%s", err, out)
		}
		if len(routes) != 1 {
			t.Fatalf("routes %+v, want one", routes)
		}
		r := routes[0]
		if r.Subnet != h2.Subnet.String() || r.Peer != h2.UnderlayIP.String()+":8285" || r.Since.IsZero() ||
			r.TxPackets < 4 || r.RxPackets < 4 || r.TxBytes < 4*84 || r.RxBytes < 4*84 {
			t.Errorf("route %+v; want %v via %v with the pings counted both ways", r, h2.Subnet, h2.UnderlayIP)
		}
		t.Logf("weft routes:\n%s", runWeft(t, weft, sock1, "routes"))
	})

	t.Run("a ping at all four stages", func(t *testing.T) {
		filter := fmt.Sprintf("icmp and host %s and host %s", h1.PodIP, h2.PodIP)
		stages := "tun-in,wire-out,wire-in,tun-out"
		f1, f2 := filepath.Join(dir, "h1.pcapng"), filepath.Join(dir, "h2.pcapng")
		w1 := startWeft(t, weft, sock1, "dump", "--stage", stages, "-c", "4", "--duration", "60s", "-w", f1, filter)
		w2 := startWeft(t, weft, sock2, "dump", "--stage", stages, "-c", "4", "--duration", "60s", "-w", f2, filter)
		waitDumps(t, sock1, 1)
		waitDumps(t, sock2, 1)
		if out, err := ping(topo, h1.PodNS, h2.PodIP.String(), 1); err != nil {
			t.Fatalf("ping: %v\n%s", err, out)
		}
		w1.wait(t)
		w2.wait(t)
		on1, on2 := readDump(t, f1), readDump(t, f2)
		if len(on1) != 4 || len(on2) != 4 {
			t.Fatalf("captured %d packets on h1 and %d on h2, want 4 each", len(on1), len(on2))
		}
		// The echo request: h1 tun-in, h1 wire-out, h2 wire-in, h2 tun-out;
		// the reply the other way round.
		req := []dumped{find(t, on1, "tun-in", true), find(t, on1, "wire-out", true), find(t, on2, "wire-in", true), find(t, on2, "tun-out", true)}
		rep := []dumped{find(t, on2, "tun-in", false), find(t, on2, "wire-out", false), find(t, on1, "wire-in", false), find(t, on1, "tun-out", false)}
		for _, c := range []struct {
			name           string
			seen           []dumped
			from, to       netlab.Host
			outSrc, outDst netip.Addr
		}{
			{"request", req, h1, h2, h1.UnderlayIP, h2.UnderlayIP},
			{"reply", rep, h2, h1, h2.UnderlayIP, h1.UnderlayIP},
		} {
			id, seq := c.seen[0].icmp.Id, c.seen[0].icmp.Seq
			for _, d := range c.seen {
				if d.icmp.Id != id || d.icmp.Seq != seq {
					t.Errorf("%s at %s: ICMP id %d seq %d, want %d %d: not the same packet", c.name, d.stage, d.icmp.Id, d.icmp.Seq, id, seq)
				}
				if d.inner.SrcIP.String() != c.from.PodIP.String() || d.inner.DstIP.String() != c.to.PodIP.String() {
					t.Errorf("%s at %s: %v -> %v", c.name, d.stage, d.inner.SrcIP, d.inner.DstIP)
				}
				if err := checkInner(d.innerBytes); err != nil {
					t.Errorf("%s at %s: %v", c.name, d.stage, err)
				}
			}
			// weftd takes one off the TTL on send and one on receive.
			ttls := []uint8{c.seen[0].inner.TTL, c.seen[1].inner.TTL, c.seen[2].inner.TTL, c.seen[3].inner.TTL}
			if ttls[1] != ttls[0]-1 || ttls[2] != ttls[1] || ttls[3] != ttls[2]-1 {
				t.Errorf("%s TTLs at the four stages %v: want one less on each weftd", c.name, ttls)
			}
			// The datagram on the wire, as both ends saw it.
			for _, d := range c.seen[1:3] {
				if d.outer == nil || d.outer.SrcIP.String() != c.outSrc.String() || d.outer.DstIP.String() != c.outDst.String() ||
					d.udp.SrcPort != 8285 || d.udp.DstPort != 8285 {
					t.Fatalf("%s at %s: outer headers %v %v, want %v:8285 -> %v:8285", c.name, d.stage, d.outer, d.udp, c.outSrc, c.outDst)
				}
				if err := checkOuter(d.data); err != nil {
					t.Errorf("%s at %s: %v", c.name, d.stage, err)
				}
			}
			if !bytes.Equal(c.seen[1].udp.Payload, c.seen[2].udp.Payload) {
				t.Errorf("%s: the payload received differs from the payload sent", c.name)
			}
		}
		for _, f := range []string{f1, f2} {
			readWithTools(t, f, 4)
		}
	})

	t.Run("a spoofed datagram at the drop stage", func(t *testing.T) {
		f := filepath.Join(dir, "drop.pcapng")
		w := startWeft(t, weft, sock2, "dump", "--stage", "drop", "-c", "1", "--duration", "60s", "-w", f)
		lines := startWeft(t, weft, sock2, "dump", "--stage", "drop", "-c", "1", "--duration", "60s")
		waitDumps(t, sock2, 2)
		spoofed := netip.MustParseAddr("100.96.9.9")
		sendDatagram(t, h1.NS, h1.UnderlayIP.String(), h2.UnderlayIP.String()+":8285", innerUDP(spoofed, h2.PodIP, probeUDPPort, []byte("spoofed")))
		w.wait(t)
		out := lines.wait(t)
		got := readDump(t, f)
		if len(got) != 1 {
			t.Fatalf("%d packets at the drop stage, want 1", len(got))
		}
		d := got[0]
		if d.comment != "stage=drop reason=spoofed-source" {
			t.Errorf("comment %q, want stage=drop reason=spoofed-source", d.comment)
		}
		if d.outer == nil || d.outer.SrcIP.String() != h1.UnderlayIP.String() || d.inner.SrcIP.String() != spoofed.String() {
			t.Errorf("dropped datagram %v carrying %v, want from %v carrying %v", d.outer, d.inner, h1.UnderlayIP, spoofed)
		}
		want := fmt.Sprintf("drop(spoofed-source) %s:", h1.UnderlayIP)
		if !strings.Contains(out, want) || !strings.Contains(out, fmt.Sprintf("%s > %s: UDP", spoofed, h2.PodIP)) {
			t.Errorf("line output %q, want it to show %q and the inner packet", out, want)
		}
		readWithTools(t, f, 1)
		t.Logf("weft dump --stage drop:\n%s", out)
	})

	t.Run("net unreachable answers", func(t *testing.T) {
		if out, _ := ping(topo, h1.PodNS, "100.96.7.7", 1); !strings.Contains(out, "Net Unreachable") {
			t.Errorf("no net unreachable:\n%s", out)
		}
	})

	t.Run("a malformed request is answered and harms nothing", func(t *testing.T) {
		c, err := net.Dial("unix", sock1)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("{\"op\":\"dump\",\"dump\":{\"filter\":\"host\"}}\n"))
		var resp control.Response
		if err := json.NewDecoder(c).Decode(&resp); err != nil || !strings.Contains(resp.Error, "host wants an IPv4 address") {
			t.Errorf("answer %+v, %v", resp, err)
		}
		if out, err := ping(topo, h1.PodNS, h2.PodIP.String(), 1); err != nil {
			t.Errorf("ping after a bad request: %v\n%s", err, out)
		}
	})

	var during map[string]float64
	t.Run("a reader that does not read loses packets, forwarding does not", func(t *testing.T) {
		stream, err := (&control.Client{Path: sock1}).Dump(context.Background(), control.DumpRequest{})
		if err != nil {
			t.Fatal(err)
		}
		defer stream.Close()
		// Nothing is read: the queue and the socket buffers fill, then the
		// tap drops. Bounded in rounds, not timed.
		for round := 0; ; round++ {
			if round == 20 {
				t.Fatal("no packet dropped for the slow reader after 20 bursts")
			}
			udpBurst(t, h1, h2, 2000)
			m, err := d1.metricsOf()
			if err != nil {
				t.Fatal(err)
			}
			if m["weft_dump_dropped_total"] > before1["weft_dump_dropped_total"] {
				during = m
				break
			}
		}
		if during["weft_dumps_active"] != 1 {
			t.Errorf("weft_dumps_active %v during the dump, want 1", during["weft_dumps_active"])
		}
		if out, err := ping(topo, h1.PodNS, h2.PodIP.String(), 1); err != nil {
			t.Errorf("ping while the reader stalls: %v\n%s", err, out)
		}
		stream.Stop()
		for {
			_, end, err := stream.Next()
			if err != nil {
				t.Fatal(err)
			}
			if end != nil {
				if end.Dropped == 0 || end.Reason != "client" {
					t.Errorf("end %+v: want the client's end with drops counted", end)
				}
				break
			}
		}
	})

	t.Run("every metric present and moving", func(t *testing.T) {
		after1, err := d1.metricsOf()
		if err != nil {
			t.Fatal(err)
		}
		after2, err := d2.metricsOf()
		if err != nil {
			t.Fatal(err)
		}
		checkMetrics(t, "h1", before1, after1, []string{
			`weft_packets_total{direction="tx"}`, `weft_packets_total{direction="rx"}`,
			`weft_bytes_total{direction="tx"}`, `weft_bytes_total{direction="rx"}`,
			`weft_batch_size_packets_count{direction="tx"}`, `weft_batch_size_packets_count{direction="rx"}`,
			`weft_batch_size_packets_sum{direction="tx"}`, `weft_batch_size_packets_sum{direction="rx"}`,
			`weft_batch_size_packets_bucket{direction="tx",le="+Inf"}`,
			`weft_drops_total{reason="no-route"}`, `weft_icmp_unreachable_sent_total`,
			`weft_dump_captured_total`, `weft_dump_dropped_total`,
			`process_cpu_seconds_total`,
		})
		checkMetrics(t, "h2", before2, after2, []string{
			`weft_drops_total{reason="spoofed-source"}`, `weft_dump_captured_total`,
			`weft_packets_total{direction="rx"}`,
		})
		if _, ok := after1[`weft_tun_kernel_dropped_total`]; !ok {
			t.Errorf("h1 does not export weft_tun_kernel_dropped_total, the TUN's own drops")
		}
		for key, want := range map[string]float64{
			`weft_routes`: 1, `weft_peers`: 1, `weft_dumps_active`: 0,
			fmt.Sprintf(`weft_info{network="%s",public_ip="%s",subnet="%s",tun="flannel0"}`, topo.Network, h1.UnderlayIP, h1.Subnet): 1,
		} {
			if v, ok := after1[key]; !ok || v != want {
				t.Errorf("h1 %s = %v (present %v), want %v", key, v, ok, want)
			}
		}
		if after1["weft_workers"] < 1 || during["weft_dumps_active"] != 1 {
			t.Errorf("weft_workers %v, weft_dumps_active during a dump %v", after1["weft_workers"], during["weft_dumps_active"])
		}
		for _, key := range []string{
			`weft_offload_enabled{offload="tun"}`, `weft_offload_enabled{offload="udp_gso"}`, `weft_offload_enabled{offload="udp_gro"}`,
			`weft_udp_gso_fallbacks_total`, `go_goroutines`, `process_resident_memory_bytes`,
		} {
			if _, ok := after1[key]; !ok {
				t.Errorf("h1: %s missing", key)
			}
		}
		for _, reason := range []string{"truncated", "not-ipv4", "bad-header-length", "bad-total-length", "bad-checksum",
			"ttl-expired", "no-route", "foreign-source", "unknown-peer", "wrong-peer-port", "spoofed-source", "not-local-destination", "send-error", "tun-write-error", "bad-gso"} {
			if _, ok := after1[`weft_drops_total{reason="`+reason+`"}`]; !ok {
				t.Errorf("h1: drop reason %s not exported", reason)
			}
		}
		// Static mode knows no lease and no etcd: those series are absent, not zero.
		for key := range after1 {
			if strings.HasPrefix(key, "weft_lease_") || strings.HasPrefix(key, "weft_etcd_") {
				t.Errorf("h1: %s exported in static mode", key)
			}
		}
	})
}

func staticFlags(topo *netlab.Topology, me, peer netlab.Host) []string {
	return []string{
		"--network", topo.Network.String(),
		"--subnet", me.Subnet.String(),
		"--peer", peer.Subnet.String() + "=" + peer.UnderlayIP.String(),
		"--public-ip", me.UnderlayIP.String(),
	}
}

// checkMetrics fails unless every key in moving went up between before and after.
func checkMetrics(t *testing.T, host string, before, after map[string]float64, moving []string) {
	t.Helper()
	for _, key := range moving {
		b, okb := before[key]
		a, oka := after[key]
		if !okb || !oka {
			t.Errorf("%s: %s missing (before %v, after %v)", host, key, okb, oka)
			continue
		}
		if a <= b {
			t.Errorf("%s: %s did not move: %v, then %v", host, key, b, a)
		}
	}
}

var (
	weftOnce sync.Once
	weftPath string
	weftErr  error
)

// buildWeft builds the weft CLI once per test run.
func buildWeft(t *testing.T) string {
	t.Helper()
	weftOnce.Do(func() {
		dir, err := os.MkdirTemp("", "weft-e2e-bin")
		if err != nil {
			weftErr = err
			return
		}
		weftPath = filepath.Join(dir, "weft")
		if out, err := exec.Command("go", "build", "-o", weftPath, "../weft").CombinedOutput(); err != nil {
			weftErr = fmt.Errorf("go build ../weft: %v\n%s", err, out)
		}
	})
	if weftErr != nil {
		t.Fatal(weftErr)
	}
	return weftPath
}

// runWeft runs the CLI against a control socket and returns its stdout.
func runWeft(t *testing.T, bin, sock string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--control-socket", sock}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("weft %v: %v\n%s", args, err, stderr.Bytes())
	}
	return out
}

// weftRun is a weft command running in the background.
type weftRun struct {
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
	done           chan error
}

func startWeft(t *testing.T, bin, sock string, args ...string) *weftRun {
	t.Helper()
	w := &weftRun{done: make(chan error, 1)}
	w.cmd = exec.Command(bin, append([]string{"--control-socket", sock}, args...)...)
	w.cmd.Stdout, w.cmd.Stderr = &w.stdout, &w.stderr
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { w.done <- w.cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case <-w.done:
		default:
			w.cmd.Process.Kill()
			<-w.done
		}
	})
	return w
}

// wait waits for the command to end (its own --duration bounds it) and
// returns its stdout.
func (w *weftRun) wait(t *testing.T) string {
	t.Helper()
	select {
	case err := <-w.done:
		w.done <- err // for the cleanup
		if err != nil {
			t.Fatalf("weft %v: %v\n%s", w.cmd.Args[1:], err, w.stderr.Bytes())
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("weft %v did not end\n%s", w.cmd.Args[1:], w.stderr.Bytes())
	}
	return w.stdout.String()
}

// waitDumps waits until n dumps run on the daemon behind sock.
func waitDumps(t *testing.T, sock string, n int) {
	t.Helper()
	eventually(t, 10*time.Second, "dumps started", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := (&control.Client{Path: sock}).Status(ctx)
		if err != nil {
			return err
		}
		if st.Dumps.Active != n {
			return fmt.Errorf("%d dumps running, want %d", st.Dumps.Active, n)
		}
		return nil
	})
}

// dumped is one packet of a dump file, decoded.
type dumped struct {
	stage, comment string
	data           []byte
	outer          *layers.IPv4 // nil unless seen as a datagram
	udp            *layers.UDP
	inner          *layers.IPv4
	innerBytes     []byte
	icmp           *layers.ICMPv4
}

func readDump(t *testing.T, file string) []dumped {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	var out []dumped
	for {
		data, ci, opts, err := r.ReadPacketDataWithOptions()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		intf, err := r.Interface(ci.InterfaceIndex)
		if err != nil {
			t.Fatal(err)
		}
		if intf.LinkType != layers.LinkTypeRaw {
			t.Fatalf("link type %v, want raw IPv4", intf.LinkType)
		}
		d := dumped{data: append([]byte(nil), data...)}
		if len(opts.Comments) == 1 {
			d.comment = opts.Comments[0]
			d.stage, _, _ = strings.Cut(strings.TrimPrefix(d.comment, "stage="), " ")
		}
		p := gopacket.NewPacket(d.data, layers.LayerTypeIPv4, gopacket.Default)
		ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if ip == nil {
			t.Fatalf("%s: not IPv4", d.comment)
		}
		d.inner, d.innerBytes = ip, d.data
		if d.stage == "wire-out" || d.stage == "wire-in" || (d.stage == "drop" && ip.Protocol == layers.IPProtocolUDP && len(ip.Payload) > 8 && ip.Payload[8]>>4 == 4) {
			d.outer = ip
			d.udp, _ = p.Layer(layers.LayerTypeUDP).(*layers.UDP)
			if d.udp == nil {
				t.Fatalf("%s: no outer UDP", d.comment)
			}
			d.innerBytes = d.udp.Payload
			ip2 := &layers.IPv4{}
			if err := ip2.DecodeFromBytes(d.innerBytes, gopacket.NilDecodeFeedback); err != nil {
				t.Fatalf("%s: inner packet: %v", d.comment, err)
			}
			d.inner = ip2
		}
		ip2 := gopacket.NewPacket(d.innerBytes, layers.LayerTypeIPv4, gopacket.Default)
		d.icmp, _ = ip2.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
		out = append(out, d)
	}
}

// find returns the echo request (or reply) captured at stage.
func find(t *testing.T, ds []dumped, stage string, request bool) dumped {
	t.Helper()
	typ := uint8(layers.ICMPv4TypeEchoReply)
	if request {
		typ = layers.ICMPv4TypeEchoRequest
	}
	for _, d := range ds {
		if d.stage == stage && d.icmp != nil && d.icmp.TypeCode.Type() == typ {
			return d
		}
	}
	t.Fatalf("no ICMP %v at %s among %d packets", typ, stage, len(ds))
	return dumped{}
}

// checkOuter checks the rebuilt outer headers of a datagram: lengths and
// both checksums.
func checkOuter(data []byte) error {
	if len(data) < 28 {
		return errors.New("shorter than outer headers")
	}
	if onesSum(data[:20], 0) != 0xffff {
		return errors.New("outer IPv4 header checksum wrong")
	}
	if tl := int(data[2])<<8 | int(data[3]); tl != len(data) {
		return fmt.Errorf("outer total length %d, %d bytes", tl, len(data))
	}
	if ul := int(data[24])<<8 | int(data[25]); ul != len(data)-20 {
		return fmt.Errorf("UDP length %d, %d bytes", ul, len(data)-20)
	}
	pseudo := onesAdd(data[12:20], 0) + 17 + uint32(len(data)-20)
	if onesSum(data[20:], pseudo) != 0xffff {
		return errors.New("outer UDP checksum wrong")
	}
	return nil
}

// readWithTools reads a dump file with tcpdump and tshark, those that are
// installed, as users will.
func readWithTools(t *testing.T, file string, packets int) {
	t.Helper()
	if _, err := exec.LookPath("tcpdump"); err == nil {
		out, err := exec.Command("tcpdump", "-nn", "-r", file).CombinedOutput()
		if err != nil {
			t.Errorf("tcpdump -r %s: %v\n%s", file, err, out)
		} else if n := strings.Count(strings.TrimSpace(stripReading(string(out))), "\n") + 1; n != packets {
			t.Errorf("tcpdump read %d packets, want %d:\n%s", n, packets, out)
		}
	} else {
		t.Logf("tcpdump not installed: %s read with gopacket only", filepath.Base(file))
	}
	if _, err := exec.LookPath("tshark"); err == nil {
		out, err := exec.Command("tshark", "-r", file, "-T", "fields", "-e", "frame.comment").CombinedOutput()
		if err != nil {
			t.Errorf("tshark -r %s: %v\n%s", file, err, out)
		} else if strings.Count(string(out), "stage=") != packets {
			t.Errorf("tshark shows %d stage comments, want %d:\n%s", strings.Count(string(out), "stage="), packets, out)
		}
	}
}

// stripReading drops tcpdump's "reading from file" line.
func stripReading(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if l != "" && !strings.HasPrefix(l, "reading from file") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// udpBurst sends n datagrams of 1400 bytes from the first pod to the
// second's discard port; they need not arrive.
func udpBurst(t *testing.T, from, to netlab.Host, n int) {
	t.Helper()
	err := inNS(from.PodNS, func() error {
		c, err := net.Dial("udp4", to.PodIP.String()+":9")
		if err != nil {
			return err
		}
		defer c.Close()
		buf := make([]byte, 1400)
		for range n {
			c.Write(buf) // an ICMP port unreachable may fail a later write: no matter
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
