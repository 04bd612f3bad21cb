package netlab

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/weft-dev/weft/internal/roottest"
)

// TestResidue checks that leftovers are found and scrubbed, and that the
// bare topology has none.
func TestResidue(t *testing.T) {
	roottest.NeedRoot(t, "ip", "ping")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	topo, err := New(ctx, Config{Prefix: testPrefix("r"), Hosts: 2})
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

// TestResidueWhileNamespacesComeAndGo lists the residue of a bare topology
// while namespaces are added and deleted next to it, as other tests and
// topologies on a shared machine do. While ip lists a veth it looks up every
// named namespace to name the peer's, and one half made or half removed makes
// it print an error on stderr; read as part of the listing, that was a link
// called "Peer" left behind by a mode that had left nothing.
func TestResidueWhileNamespacesComeAndGo(t *testing.T) {
	roottest.NeedRoot(t, "ip")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	topo, err := New(ctx, Config{Prefix: testPrefix("rc"), Hosts: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer topo.Close()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		// A bounded churn: at most 500 namespaces, each removed at once.
		for i := 0; i < 500; i++ {
			select {
			case <-stop:
				return
			default:
			}
			ns := fmt.Sprintf("%s-x%d", testPrefix("rc"), i)
			if _, err := runCmd(ctx, "ip", "netns", "add", ns); err != nil {
				t.Error(err)
				return
			}
			if _, err := runCmd(context.Background(), "ip", "netns", "del", ns); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	for i := 0; i < 100; i++ {
		left, err := topo.Residue(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(left) > 0 {
			t.Fatalf("listing %d of a bare topology: %v", i, left)
		}
	}
}
