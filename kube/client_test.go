package kube

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/weft-dev/weft/lease"
)

// These tests hold the client's logic to its contract against client-go's
// in-memory clientset; the end-to-end tests (cmd/weftd) run it against a
// real API server.

func testClient(t *testing.T, nodes ...*corev1.Node) (*Client, *fake.Clientset) {
	t.Helper()
	cs := fake.NewClientset()
	for _, n := range nodes {
		if _, err := cs.CoreV1().Nodes().Create(context.Background(), n, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := newClient(context.Background(), cs, testAnn, Options{Getenv: func(k string) string {
		if k == "NODE_NAME" {
			return "me"
		}
		return ""
	}})
	if err != nil {
		t.Fatal(err)
	}
	return c, cs
}

func TestPublish(t *testing.T) {
	detected := netip.MustParseAddr("192.0.2.1")
	tests := []struct {
		name string
		ann  map[string]string
		want string
		err  string
	}{
		{name: "no annotations at all", ann: nil, want: "192.0.2.1"},
		{name: "as flanneld left them", ann: map[string]string{testAnn.BackendData: "null", testAnn.BackendType: "", testAnn.SubnetKubeManaged: "true", testAnn.PublicIP: "192.0.2.1"}, want: "192.0.2.1"},
		{name: "another address before", ann: map[string]string{testAnn.PublicIP: "192.0.2.9"}, want: "192.0.2.1"},
		{name: "public-ip-overwrite", ann: map[string]string{testAnn.PublicIPOverwrite: "203.0.113.5"}, want: "203.0.113.5"},
		{name: "node-public-ip", ann: map[string]string{testAnn.NodePublicIP: "203.0.113.6"}, want: "203.0.113.6"},
		{name: "overwrite wins", ann: map[string]string{testAnn.NodePublicIP: "203.0.113.6", testAnn.PublicIPOverwrite: "203.0.113.5"}, want: "203.0.113.5"},
		{name: "malformed overwrite", ann: map[string]string{testAnn.PublicIPOverwrite: "nope"}, err: "public-ip-overwrite"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, cs := testClient(t, node("me", tt.ann, "100.96.1.0/24"))
			ip, err := c.Publish(context.Background(), detected)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ip.String() != tt.want {
				t.Errorf("published %v, want %s", ip, tt.want)
			}
			n, _ := cs.CoreV1().Nodes().Get(context.Background(), "me", metav1.GetOptions{})
			want := map[string]string{testAnn.BackendData: "null", testAnn.BackendType: "", testAnn.SubnetKubeManaged: "true", testAnn.PublicIP: tt.want}
			for k, v := range want {
				if got, ok := n.Annotations[k]; !ok || got != v {
					t.Errorf("annotation %s = %q (set %v), want %q", k, got, ok, v)
				}
			}
		})
	}
}

func TestWaitSubnet(t *testing.T) {
	network := netip.MustParsePrefix("100.96.0.0/16")
	c, _ := testClient(t, node("me", nil, "100.96.1.0/24"))
	if s, err := c.WaitSubnet(context.Background(), network); err != nil || s != netip.MustParsePrefix("100.96.1.0/24") {
		t.Errorf("WaitSubnet = %v, %v", s, err)
	}
	c, _ = testClient(t, node("me", nil, "10.0.1.0/24"))
	if _, err := c.WaitSubnet(context.Background(), network); err == nil || !strings.Contains(err.Error(), "not inside") {
		t.Errorf("a podCIDR outside Network: err = %v", err)
	}
	c, _ = testClient(t, node("me", nil, "fd00::/64"))
	if _, err := c.WaitSubnet(context.Background(), network); err == nil || !strings.Contains(err.Error(), "no IPv4") {
		t.Errorf("an IPv6-only podCIDR: err = %v", err)
	}
	// No podCIDR yet: it waits until one is assigned.
	c, cs := testClient(t, node("me", nil))
	go func() {
		time.Sleep(100 * time.Millisecond)
		n, _ := cs.CoreV1().Nodes().Get(context.Background(), "me", metav1.GetOptions{})
		n.Spec.PodCIDR, n.Spec.PodCIDRs = "100.96.3.0/24", []string{"100.96.3.0/24"}
		cs.CoreV1().Nodes().Update(context.Background(), n, metav1.UpdateOptions{})
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if s, err := c.WaitSubnet(ctx, network); err != nil || s != netip.MustParsePrefix("100.96.3.0/24") {
		t.Errorf("WaitSubnet after assignment = %v, %v", s, err)
	}
}

func TestWatchRoutes(t *testing.T) {
	c, cs := testClient(t,
		node("me", managed("192.0.2.1"), "100.96.1.0/24"),
		node("a", managed("192.0.2.2"), "100.96.2.0/24"),
		node("plain", nil, "100.96.9.0/24"),
		node("bad", managed("192.0.2"), "100.96.8.0/24"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := c.WatchRoutes(ctx)
	next := func() lease.Batch {
		t.Helper()
		select {
		case b := <-ch:
			return b
		case <-time.After(20 * time.Second):
			t.Fatal("no batch")
		}
		return lease.Batch{}
	}
	route := func(op lease.Op, subnet, ip string) lease.Route {
		return lease.Route{Op: op, Subnet: netip.MustParsePrefix(subnet), PublicIP: netip.MustParseAddr(ip)}
	}
	first := next()
	if len(first.Routes) != 1 || first.Routes[0] != route(lease.Add, "100.96.2.0/24", "192.0.2.2") {
		t.Fatalf("first batch %+v, want only a's route", first.Routes)
	}
	if c.Malformed() != 1 {
		t.Errorf("Malformed = %d, want 1 (bad)", c.Malformed())
	}
	nodes := cs.CoreV1().Nodes()
	bg := context.Background()
	nodes.Create(bg, node("b", managed("192.0.2.3"), "100.96.3.0/24"), metav1.CreateOptions{})
	if b := next(); len(b.Routes) != 1 || b.Routes[0] != route(lease.Add, "100.96.3.0/24", "192.0.2.3") {
		t.Fatalf("added node: %+v", b.Routes)
	}
	n, _ := nodes.Get(bg, "b", metav1.GetOptions{})
	n.Annotations[testAnn.PublicIP] = "192.0.2.33"
	nodes.Update(bg, n, metav1.UpdateOptions{})
	if b := next(); len(b.Routes) != 1 || b.Routes[0] != route(lease.Add, "100.96.3.0/24", "192.0.2.33") {
		t.Fatalf("moved node: %+v", b.Routes)
	}
	nodes.Delete(bg, "b", metav1.DeleteOptions{})
	if b := next(); len(b.Routes) != 1 || b.Routes[0].Op != lease.Remove || b.Routes[0].Subnet != netip.MustParsePrefix("100.96.3.0/24") {
		t.Fatalf("deleted node: %+v", b.Routes)
	}
	n, _ = nodes.Get(bg, "a", metav1.GetOptions{})
	n.Annotations[testAnn.PublicIP] = "garbage"
	nodes.Update(bg, n, metav1.UpdateOptions{})
	if b := next(); len(b.Routes) != 1 || b.Routes[0].Op != lease.Remove {
		t.Fatalf("node turned bad: %+v", b.Routes)
	}
}
