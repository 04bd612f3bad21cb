package bench

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/weft-dev/weft/internal/roottest"
	"github.com/weft-dev/weft/netlab"
)

// TestKernelModes sets up each kernel mode, checks that traffic flows and
// that Close leaves the topology as bare as it was.
func TestKernelModes(t *testing.T) {
	roottest.NeedRoot(t, "ip", "ping", "bridge")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, hosts := range []int{2, 3} {
		topo, err := netlab.New(ctx, netlab.Config{Prefix: testPrefix("k" + strconv.Itoa(hosts)), Hosts: hosts})
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

// TestSetUnderlayGSO turns the underlay's UDP segmentation off and on again
// on a real veth, reading the state back as the harness does.
func TestSetUnderlayGSO(t *testing.T) {
	roottest.NeedRoot(t, "ip", "ethtool")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	topo, err := netlab.New(ctx, netlab.Config{Prefix: testPrefix("g"), Hosts: 2})
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
		if err := setUnderlayGSO(ctx, topo, on); err != nil {
			t.Fatal(err)
		}
		if got := state(); !slices.Equal(got, []bool{on, on}) {
			t.Errorf("after setUnderlayGSO(%v): %v", on, got)
		}
	}
}

// testPrefix is unique per test process and per test, so parallel runs by
// other engineers never collide.
func testPrefix(tag string) string {
	return fmt.Sprintf("wt%d%s", os.Getpid(), tag)
}
