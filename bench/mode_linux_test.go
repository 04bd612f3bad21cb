package bench

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fakeWeftd writes a script that prints usage like weftd's, listing flags.
func fakeWeftd(t *testing.T, flags ...string) string {
	t.Helper()
	var usage strings.Builder
	usage.WriteString("Usage: weftd [flags]\n\nFlags:\n")
	for _, f := range flags {
		usage.WriteString("  -" + f + " string\n    \tsomething\n")
	}
	path := filepath.Join(t.TempDir(), "weftd")
	script := "#!/bin/sh\ncat >&2 <<'EOF'\n" + usage.String() + "EOF\nexit 2\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLookupModes(t *testing.T) {
	weftd := fakeWeftd(t, "network", "peer")
	tests := []struct {
		name        string
		names       []string
		env         Env
		want        []string
		wantSkipped int
		wantErr     string
	}{
		{"default, no weftd", nil, Env{Weftd: "/nonexistent/weftd"},
			[]string{"underlay", "host-gw", "vxlan"}, 3, ""},
		{"default with weftd", nil, Env{Weftd: weftd},
			[]string{"underlay", "host-gw", "vxlan", "weft-classic", "weft"}, 1, ""},
		{"default with flanneld", nil, Env{Weftd: weftd, Flanneld: weftd, EtcdCommand: []string{"weft"}},
			[]string{"underlay", "host-gw", "vxlan", "weft-classic", "weft", "flannel"}, 0, ""},
		{"named, in table order", []string{"weft", "underlay"}, Env{Weftd: weftd},
			[]string{"underlay", "weft"}, 0, ""},
		{"named weft without weftd", []string{"underlay", "weft"}, Env{Weftd: "/nonexistent/weftd"},
			nil, 0, "mode weft: "},
		{"flannel without flanneld", []string{"flannel"}, Env{Weftd: weftd, EtcdCommand: []string{"weft"}},
			nil, 0, "--flanneld"},
		{"flannel without etcd", []string{"flannel"}, Env{Flanneld: weftd},
			nil, 0, "no embedded etcd"},
		{"unknown", []string{"geneve"}, Env{}, nil, 0, `unknown mode "geneve"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			modes, skipped, err := LookupModes(tt.names, &tt.env)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range modes {
				got = append(got, m.Name)
			}
			if !slices.Equal(got, tt.want) || len(skipped) != tt.wantSkipped {
				t.Errorf("modes %v, skipped %v; want %v and %d skipped", got, skipped, tt.want, tt.wantSkipped)
			}
		})
	}
}

func TestWeftdArgs(t *testing.T) {
	topo := &Topology{Network: overlayNet, Hosts: []Host{newHost("x", 1), newHost("x", 2), newHost("x", 3)}}
	env := &Env{Topo: topo, Dir: "/tmp/run"}
	tests := []struct {
		name  string
		known map[string]bool
		want  string
	}{
		{"contract flags", map[string]bool{"network": true, "control-socket": true, "subnet-file": true},
			"--network 100.96.0.0/16 --subnet 100.96.2.0/24 --public-ip 192.0.2.2 --tun-name flannel0 " +
				"--metrics-addr 127.0.0.1:0 --control-socket /tmp/run/h2.sock --subnet-file /tmp/run/h2-subnet.env " +
				"--peer 100.96.1.0/24=192.0.2.1 --peer 100.96.3.0/24=192.0.2.3"},
		{"weftd without file flags", map[string]bool{"network": true},
			"--network 100.96.0.0/16 --subnet 100.96.2.0/24 --public-ip 192.0.2.2 --tun-name flannel0 " +
				"--metrics-addr 127.0.0.1:0 --peer 100.96.1.0/24=192.0.2.1 --peer 100.96.3.0/24=192.0.2.3"},
	}
	for _, tt := range tests {
		if got := strings.Join(weftdArgs(env, topo.Hosts[1], tt.known), " "); got != tt.want {
			t.Errorf("%s:\ngot  %s\nwant %s", tt.name, got, tt.want)
		}
	}
}

func TestWeftdFlags(t *testing.T) {
	known, err := weftdFlags(context.Background(), fakeWeftd(t, "network", "peer", "control-socket", "batch"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"network", "peer", "control-socket", "batch"} {
		if !known[f] {
			t.Errorf("flag %s not found in %v", f, known)
		}
	}
	if known["subnet-file"] {
		t.Error("subnet-file found but not listed")
	}
	if _, err := weftdFlags(context.Background(), fakeWeftd(t, "batch")); err == nil {
		t.Error("a binary without static mode accepted")
	}
}
