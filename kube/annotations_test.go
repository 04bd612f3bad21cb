package kube

import "testing"

func TestNewAnnotations(t *testing.T) {
	tests := []struct {
		prefix, publicIP string
		ok               bool
	}{
		{"flannel.alpha.coreos.com", "flannel.alpha.coreos.com/public-ip", true},
		{"flannel.alpha.coreos.com/", "flannel.alpha.coreos.com/public-ip", true},
		{"example.com/net", "example.com/net-public-ip", true},
		{"example.com/net-", "example.com/net-public-ip", true},
		{"example.com/a/b", "", false},
		{"Example.com", "", false},
		{"localhost", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		a, err := NewAnnotations(tt.prefix)
		if (err == nil) != tt.ok {
			t.Errorf("NewAnnotations(%q) err = %v, want ok %v", tt.prefix, err, tt.ok)
			continue
		}
		if tt.ok && a.PublicIP != tt.publicIP {
			t.Errorf("NewAnnotations(%q).PublicIP = %q, want %q", tt.prefix, a.PublicIP, tt.publicIP)
		}
	}
}
