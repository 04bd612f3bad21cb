package kube

import (
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var testAnn, _ = NewAnnotations(DefaultAnnotationPrefix)

func node(name string, ann map[string]string, cidrs ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: ann}}
	n.Spec.PodCIDRs = cidrs
	if len(cidrs) > 0 {
		n.Spec.PodCIDR = cidrs[0]
	}
	return n
}

func managed(ip string) map[string]string {
	return map[string]string{testAnn.SubnetKubeManaged: "true", testAnn.PublicIP: ip}
}

func TestPeerFromFlannelsNodes(t *testing.T) {
	for i, name := range []string{"node-h1.json", "node-h2.json"} {
		var n corev1.Node
		if err := json.Unmarshal([]byte(readTestdata(t, name)), &n); err != nil {
			t.Fatal(err)
		}
		p, err := testAnn.Peer(&n)
		if err != nil {
			t.Fatal(err)
		}
		want := Peer{Node: n.Name, Subnet: netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 96, byte(i + 1), 0}), 24),
			PublicIP: netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)})}
		if p != want {
			t.Errorf("%s: %+v, want %+v", name, p, want)
		}
	}
}

func TestPeer(t *testing.T) {
	tests := []struct {
		name    string
		n       *corev1.Node
		subnet  string
		wantErr string
		is      error
	}{
		{name: "managed", n: node("a", managed("192.0.2.7"), "100.96.7.0/24"), subnet: "100.96.7.0/24"},
		{name: "dual stack, IPv6 first", n: node("a", managed("192.0.2.7"), "fd00:1::/64", "100.96.7.0/24"), subnet: "100.96.7.0/24"},
		{name: "podCIDR only (old API server)", n: func() *corev1.Node {
			n := node("a", managed("192.0.2.7"))
			n.Spec.PodCIDR = "100.96.7.0/24"
			return n
		}(), subnet: "100.96.7.0/24"},
		{name: "no annotations at all", n: node("a", nil, "100.96.7.0/24"), is: ErrUnmanaged},
		{name: "kube-subnet-manager false", n: node("a", map[string]string{testAnn.SubnetKubeManaged: "false", testAnn.PublicIP: "192.0.2.7"}, "100.96.7.0/24"), is: ErrUnmanaged},
		{name: "public-ip missing", n: node("a", map[string]string{testAnn.SubnetKubeManaged: "true"}, "100.96.7.0/24"), wantErr: `public-ip="" is not an IPv4`},
		{name: "public-ip malformed", n: node("a", managed("192.0.2"), "100.96.7.0/24"), wantErr: `public-ip="192.0.2" is not an IPv4`},
		{name: "public-ip IPv6", n: node("a", managed("2001:db8::1"), "100.96.7.0/24"), wantErr: "is not an IPv4"},
		{name: "public-ip unspecified", n: node("a", managed("0.0.0.0"), "100.96.7.0/24"), wantErr: "is not an IPv4"},
		{name: "IPv6-only podCIDR", n: node("a", managed("192.0.2.7"), "fd00:1::/64"), wantErr: "no IPv4 CIDR"},
		{name: "no podCIDR", n: node("a", managed("192.0.2.7")), is: ErrNoPodCIDR},
		{name: "malformed podCIDR", n: node("a", managed("192.0.2.7"), "100.96.7.0/33"), wantErr: "not a CIDR"},
		{name: "host bits", n: node("a", managed("192.0.2.7"), "100.96.7.1/24"), wantErr: "host bits"},
		{name: "three podCIDRs", n: node("a", managed("192.0.2.7"), "100.96.7.0/24", "fd00::/64", "100.96.8.0/24"), wantErr: "more than one per address family"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := testAnn.Peer(tt.n)
			switch {
			case tt.is != nil:
				if !errors.Is(err, tt.is) {
					t.Fatalf("err = %v, want %v", err, tt.is)
				}
			case tt.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), `node "a"`) {
					t.Fatalf("err = %v, want one naming the node and containing %q", err, tt.wantErr)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				if p.Subnet != netip.MustParsePrefix(tt.subnet) || p.PublicIP != netip.MustParseAddr("192.0.2.7") || p.Node != "a" {
					t.Errorf("%+v", p)
				}
			}
		})
	}
}

// FuzzNode decodes arbitrary bytes as a Node, as the watch does with what
// the API server sends, and holds Peer to its contract: no panic, and a
// peer it accepts is routable.
func FuzzNode(f *testing.F) {
	f.Add([]byte(readTestdata(f, "node-h1.json")))
	f.Add([]byte(readTestdata(f, "node-h2.json")))
	f.Add([]byte(`{"metadata":{"name":"x"},"spec":{"podCIDRs":["fd00::/64"]}}`))
	f.Add([]byte(`{"metadata":{"name":"x","annotations":{"flannel.alpha.coreos.com/kube-subnet-manager":"true","flannel.alpha.coreos.com/public-ip":"1.2.3"}},"spec":{"podCIDR":"100.96.1.0/24"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var n corev1.Node
		if err := json.Unmarshal(b, &n); err != nil {
			return
		}
		p, err := testAnn.Peer(&n)
		if err != nil {
			if p != (Peer{}) {
				t.Fatalf("a refused node gave %+v", p)
			}
			return
		}
		if !p.Subnet.Addr().Is4() || p.Subnet != p.Subnet.Masked() || !p.PublicIP.Is4() || p.PublicIP.IsUnspecified() || p.Node != n.Name {
			t.Fatalf("accepted %+v from %s", p, b)
		}
	})
}
