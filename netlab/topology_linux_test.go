package netlab

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/weft-dev/weft/internal/roottest"
)

// testPrefix is unique per test process and per test, so parallel runs by
// other engineers never collide.
func testPrefix(tag string) string {
	return fmt.Sprintf("wt%d%s", os.Getpid(), tag)
}

// listNS returns the namespaces whose names start with prefix.
func listNS(t *testing.T, prefix string) []string {
	t.Helper()
	entries, err := os.ReadDir("/run/netns")
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix+"-") {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestNewHostAddresses(t *testing.T) {
	tests := []struct {
		n                              int
		ns, podNS, ul, subnet, pod, gw string
	}{
		{1, "x-h1", "x-p1", "192.0.2.1", "100.96.1.0/24", "100.96.1.2", "100.96.1.1"},
		{2, "x-h2", "x-p2", "192.0.2.2", "100.96.2.0/24", "100.96.2.2", "100.96.2.1"},
		{253, "x-h253", "x-p253", "192.0.2.253", "100.96.253.0/24", "100.96.253.2", "100.96.253.1"},
	}
	for _, tt := range tests {
		h := newHost("x", tt.n)
		got := []string{h.NS, h.PodNS, h.UnderlayIP.String(), h.Subnet.String(), h.PodIP.String(), h.PodGateway.String()}
		want := []string{tt.ns, tt.podNS, tt.ul, tt.subnet, tt.pod, tt.gw}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("host %d: got %v, want %v", tt.n, got, want)
				break
			}
		}
	}
}

func TestPlanRejectsBadConfig(t *testing.T) {
	tests := []Config{
		{Prefix: "", Hosts: 2},
		{Prefix: "a/b", Hosts: 2},
		{Prefix: "ok", Hosts: 1},
		{Prefix: "ok", Hosts: 254},
		{Prefix: "ok", Hosts: 2, UnderlayMTU: 100},
	}
	for _, cfg := range tests {
		if _, err := Plan(cfg); err == nil {
			t.Errorf("%+v: no error", cfg)
		}
	}
}

func TestCheckTools(t *testing.T) {
	err := CheckTools("sh", "weft-no-such-tool", "iperf3-surely-not-here")
	if err == nil {
		t.Fatal("no error for missing tools")
	}
	for _, want := range []string{"weft-no-such-tool", "apt-get install -y"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if err := CheckTools("sh"); err != nil {
		t.Errorf("sh: %v", err)
	}
	// Every tool the lab's users run has its package named.
	for tool, pkg := range map[string]string{"ip": "iproute2", "bridge": "iproute2",
		"ping": "iputils-ping", "iperf3": "iperf3", "ethtool": "ethtool"} {
		if got := debianPackage[tool]; got != pkg {
			t.Errorf("%s: package %q, want %q", tool, got, pkg)
		}
	}
}

func TestTopology(t *testing.T) {
	roottest.NeedRoot(t, "ip", "ping")
	for _, hosts := range []int{2, 3} {
		t.Run(fmt.Sprintf("hosts=%d", hosts), func(t *testing.T) {
			prefix := testPrefix(fmt.Sprintf("t%d", hosts))
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			topo, err := New(ctx, Config{Prefix: prefix, Hosts: hosts})
			if err != nil {
				t.Fatal(err)
			}
			defer topo.Close()

			wantNS := 2 * hosts
			if hosts > 2 {
				wantNS++ // the bridge
			}
			if got := listNS(t, prefix); len(got) != wantNS {
				t.Errorf("namespaces %v: want %d", got, wantNS)
			}
			for _, a := range topo.Hosts {
				for _, b := range topo.Hosts {
					if a.Name == b.Name {
						continue
					}
					if out, err := topo.Run(ctx, a.NS, "ping", "-c1", "-W2", b.UnderlayIP.String()); err != nil {
						t.Errorf("%s -> %s underlay: %v\n%s", a.Name, b.Name, err, out)
					}
				}
				if _, err := topo.Run(ctx, a.PodNS, "ping", "-c1", "-W2", a.PodGateway.String()); err != nil {
					t.Errorf("%s pod -> gateway: %v", a.Name, err)
				}
				// No overlay route yet: a pod cannot reach another subnet.
				other := topo.Hosts[0]
				if other.Name == a.Name {
					other = topo.Hosts[1]
				}
				if _, err := topo.Run(ctx, a.PodNS, "ping", "-c1", "-W1", other.PodIP.String()); err == nil {
					t.Errorf("%s pod reaches %s pod with no overlay", a.Name, other.Name)
				}
			}
			if err := topo.SetPodMTU(1450); err != nil {
				t.Fatal(err)
			}
			out, err := topo.Run(ctx, topo.Hosts[0].PodNS, "ip", "link", "show", "eth0")
			if err != nil || !strings.Contains(string(out), "mtu 1450") {
				t.Errorf("pod MTU not set: %v\n%s", err, out)
			}

			if err := topo.Close(); err != nil {
				t.Fatal(err)
			}
			if err := topo.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
			if got := listNS(t, prefix); len(got) != 0 {
				t.Errorf("left behind: %v", got)
			}
		})
	}
}

// TestTopologyCollision checks that a taken name fails the build and that the
// cleanup leaves the other owner's namespace alone.
func TestTopologyCollision(t *testing.T) {
	roottest.NeedRoot(t, "ip")
	prefix := testPrefix("c")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	theirs := prefix + "-p1"
	if _, err := runCmd(ctx, "ip", "netns", "add", theirs); err != nil {
		t.Fatal(err)
	}
	defer runCmd(context.Background(), "ip", "netns", "del", theirs)
	if _, err := New(ctx, Config{Prefix: prefix, Hosts: 2}); err == nil {
		t.Fatal("no error for a taken namespace name")
	}
	if got := listNS(t, prefix); len(got) != 1 || got[0] != theirs {
		t.Errorf("namespaces after failed build: %v, want only %s", got, theirs)
	}
}
