package bench

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"
)

// TestKernelModes sets up each kernel mode, checks that traffic flows and
// that Close leaves the topology as bare as it was.
func TestKernelModes(t *testing.T) {
	needRoot(t)
	if err := CheckTools("ip", "ping", "bridge"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, hosts := range []int{2, 3} {
		topo, err := NewTopology(ctx, TopologyConfig{Prefix: testPrefix("k" + strconv.Itoa(hosts)), Hosts: hosts})
		if err != nil {
			t.Fatal(err)
		}
		defer topo.Close()
		env := &Env{Topo: topo, Dir: t.TempDir()}
		for _, m := range []Mode{underlayMode, hostGWMode, vxlanMode} {
			if m.PodMTU > 0 {
				if err := topo.SetPodMTU(m.PodMTU); err != nil {
					t.Fatal(err)
				}
			}
			dp := &Dataplane{}
			err := m.Setup(ctx, env, dp)
			if err == nil {
				err = waitReady(ctx, topo, dp)
			}
			if err != nil {
				t.Errorf("%d hosts, %s: %v", hosts, m.Name, err)
			}
			// Every pod reaches every other pod, not just the measured pair.
			if m.PodMTU > 0 && err == nil {
				for _, a := range topo.Hosts {
					for _, b := range topo.Hosts {
						if a.Name != b.Name {
							if out, err := topo.Run(ctx, a.PodNS, "ping", "-c1", "-W2", "-M", "do",
								"-s", strconv.Itoa(m.PodMTU-28), b.PodIP.String()); err != nil {
								t.Errorf("%s: %s -> %s at full MTU: %v\n%s", m.Name, a.Name, b.Name, err, out)
							}
						}
					}
				}
			}
			if err := dp.Close(ctx); err != nil {
				t.Errorf("%s: close: %v", m.Name, err)
			}
			if left, err := topo.Residue(ctx); err != nil || len(left) > 0 {
				t.Errorf("%s left %v (%v)", m.Name, left, err)
			}
		}
	}
}

// TestResidue checks that leftovers are found and scrubbed, and that the
// bare topology has none.
func TestResidue(t *testing.T) {
	needRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	topo, err := NewTopology(ctx, TopologyConfig{Prefix: testPrefix("r"), Hosts: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer topo.Close()
	if left, err := topo.Residue(ctx); err != nil || len(left) != 0 {
		t.Fatalf("bare topology: %v, %v", left, err)
	}
	h := topo.Hosts[0]
	for _, cmd := range [][]string{
		{"ip", "-n", h.NS, "link", "add", "br9", "type", "bridge"},
		{"ip", "-n", h.NS, "route", "add", "100.96.2.0/24", "via", "192.0.2.2"},
		{"ip", "-n", h.PodNS, "route", "add", "198.51.100.0/24", "via", h.PodGateway.String()},
	} {
		if _, err := runCmd(ctx, cmd[0], cmd[1:]...); err != nil {
			t.Fatal(err)
		}
	}
	left, err := topo.Residue(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range left {
		got = append(got, l.String())
	}
	want := []string{
		h.NS + ": link br9",
		h.NS + ": route 100.96.2.0/24 via 192.0.2.2 dev ul0",
		h.PodNS + ": route 198.51.100.0/24 via 100.96.1.1 dev eth0",
	}
	if !slices.Equal(got, want) {
		t.Errorf("residue\n got %q\nwant %q", got, want)
	}
	if err := topo.Scrub(ctx, left); err != nil {
		t.Fatal(err)
	}
	if left, err := topo.Residue(ctx); err != nil || len(left) != 0 {
		t.Errorf("after scrub: %v, %v", left, err)
	}
	// The pod's own default route survived the scrub.
	if _, err := topo.Run(ctx, h.PodNS, "ping", "-c1", "-W2", h.PodGateway.String()); err != nil {
		t.Errorf("pod lost its gateway: %v", err)
	}
}

// TestSetUnderlayGSO turns the underlay's UDP segmentation off and on again
// on a real veth, reading the state back as the harness does.
func TestSetUnderlayGSO(t *testing.T) {
	needRoot(t)
	if err := CheckTools("ip", "ethtool"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	topo, err := NewTopology(ctx, TopologyConfig{Prefix: testPrefix("g"), Hosts: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer topo.Close()
	state := func() []bool {
		var out []bool
		for _, h := range topo.Hosts {
			b, err := topo.Run(ctx, h.NS, "ethtool", "-k", h.UnderlayDev)
			if err != nil {
				t.Fatal(err)
			}
			on, err := ethtoolFeature(b, udpSegFeature)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, on)
		}
		return out
	}
	if got := state(); !slices.Equal(got, []bool{true, true}) {
		t.Fatalf("a new veth's %s: %v, want on (the --underlay-gso on rows rely on it)", udpSegFeature, got)
	}
	for _, on := range []bool{false, true} {
		if err := topo.SetUnderlayGSO(ctx, on); err != nil {
			t.Fatal(err)
		}
		if got := state(); !slices.Equal(got, []bool{on, on}) {
			t.Errorf("after SetUnderlayGSO(%v): %v", on, got)
		}
	}
}
