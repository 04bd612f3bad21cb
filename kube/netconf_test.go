package kube

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseNetConf(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		network string
		port    uint16
		wantErr string
	}{
		{name: "flanneld's recording", in: readTestdata(t, "net-conf.json"), network: "100.96.0.0/16", port: 8285},
		{name: "kube-flannel's default shape", in: `{"Network":"10.244.0.0/16","EnableNFTables":false,"Backend":{"Type":"udp"}}`, network: "10.244.0.0/16", port: 8285},
		{name: "no backend: udp on 8285", in: `{"Network":"100.96.0.0/16"}`, network: "100.96.0.0/16", port: 8285},
		{name: "another port", in: `{"Network":"100.96.0.0/16","Backend":{"Type":"udp","Port":8300}}`, network: "100.96.0.0/16", port: 8300},
		{name: "IPv4 on explicitly", in: `{"Network":"100.96.0.0/16","EnableIPv4":true,"EnableIPv6":false}`, network: "100.96.0.0/16", port: 8285},
		{name: "host bits masked as flannel does", in: `{"Network":"100.96.1.0/16"}`, network: "100.96.0.0/16", port: 8285},
		{name: "SubnetLen checked though unused", in: `{"Network":"100.96.0.0/16","SubnetLen":31}`, wantErr: "SubnetLen"},
		{name: "missing Network", in: `{"Backend":{"Type":"udp"}}`, wantErr: "Network: missing"},
		{name: "IPv6 Network", in: `{"Network":"fd00::/48"}`, wantErr: "not an IPv4 CIDR"},
		{name: "IPv6 asked", in: `{"Network":"100.96.0.0/16","EnableIPv6":true,"IPv6Network":"fd00::/48"}`, wantErr: "EnableIPv6"},
		{name: "IPv4 off", in: `{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00::/48"}`, wantErr: "EnableIPv4"},
		{name: "vxlan backend", in: `{"Network":"100.96.0.0/16","Backend":{"Type":"vxlan"}}`, wantErr: "Backend.Type"},
		{name: "bad port", in: `{"Network":"100.96.0.0/16","Backend":{"Port":70000}}`, wantErr: "Backend.Port"},
		{name: "EnableIPv6 not a bool", in: `{"Network":"100.96.0.0/16","EnableIPv6":"yes"}`, wantErr: "not a JSON object"},
		{name: "not JSON", in: `Network: 100.96.0.0/16`, wantErr: "not a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseNetConf([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Network != netip.MustParsePrefix(tt.network) || c.Port != tt.port {
				t.Errorf("Network %v Port %d, want %s %d", c.Network, c.Port, tt.network, tt.port)
			}
		})
	}
}

func TestReadNetConfNamesThePath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "net-conf.json")
	if err := os.WriteFile(path, []byte(`{}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadNetConf(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("err = %v, want one naming %s", err, path)
	}
	if _, err := ReadNetConf(filepath.Join(t.TempDir(), "absent")); err == nil {
		t.Error("a missing file was accepted")
	}
}

func readTestdata(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "flannel-kube", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
