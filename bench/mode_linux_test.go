package bench

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/weft-dev/weft/netlab"
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
			[]string{"underlay", "host-gw", "vxlan"}, 6, ""},
		{"default with weftd", nil, Env{Weftd: weftd},
			[]string{"underlay", "host-gw", "vxlan", "weft-classic", "weft-batch", "weft-offload", "weft", "weft-busy-poll"}, 1, ""},
		{"default with flanneld", nil, Env{Weftd: weftd, Flanneld: weftd, EtcdCommand: []string{"weft"}},
			[]string{"underlay", "host-gw", "vxlan", "weft-classic", "weft-batch", "weft-offload", "weft", "weft-busy-poll", "flannel"}, 0, ""},
		{"named, in table order", []string{"weft", "underlay"}, Env{Weftd: weftd},
			[]string{"underlay", "weft"}, 0, ""},
		{"levers, in lever order", []string{"weft-busy-poll", "weft", "weft-offload", "vxlan", "weft-batch", "weft-classic"}, Env{Weftd: weftd},
			[]string{"vxlan", "weft-classic", "weft-batch", "weft-offload", "weft", "weft-busy-poll"}, 0, ""},
		{"zc-send is gone", []string{"weft-zc-send"}, Env{Weftd: weftd}, nil, 0, `unknown mode "weft-zc-send"`},
		{"named weft-offload without weftd", []string{"weft-offload"}, Env{Weftd: "/nonexistent/weftd"},
			nil, 0, "mode weft-offload: "},
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

// TestWeftdModes checks each weftd mode's flags: weft runs with weftd's
// defaults, every other weftd mode sets what its lever needs and says so in
// its About, and only the modes with offloads send UDP GSO. Every weftd mode
// is listed.
func TestWeftdModes(t *testing.T) {
	tests := []struct {
		name  string
		flags string
		gso   bool
	}{
		{"weft-classic", "--batch 1 --offload off --workers 1", false},
		{"weft-batch", "--offload off", false},
		{"weft-offload", "--offload on --zero-copy=off", true},
		{"weft", "", true},
		{"weft-busy-poll", "--busy-poll 50us", true},
	}
	var weftdModes []string
	for _, m := range Modes {
		if strings.HasPrefix(m.About, "weftd ") {
			weftdModes = append(weftdModes, m.Name)
		}
	}
	if len(weftdModes) != len(tests) {
		t.Errorf("weftd modes %v, tested %d", weftdModes, len(tests))
	}
	for _, tt := range tests {
		modes, _, err := LookupModes([]string{tt.name}, &Env{Weftd: fakeWeftd(t, "network", "peer")})
		if err != nil || len(modes) != 1 {
			t.Fatalf("%s: %v %v", tt.name, modes, err)
		}
		m := modes[0]
		if got := strings.Join(m.Flags, " "); got != tt.flags {
			t.Errorf("%s: flags %q, want %q", tt.name, got, tt.flags)
		}
		if m.SendsUDPGSO != tt.gso {
			t.Errorf("%s: SendsUDPGSO %v, want %v", tt.name, m.SendsUDPGSO, tt.gso)
		}
		want := "weftd " + tt.flags + ": "
		if tt.flags == "" {
			want = "weftd with its defaults (no forwarding flags): "
		}
		if !strings.HasPrefix(m.About, want) {
			t.Errorf("%s: about %q does not start with %q", tt.name, m.About, want)
		}
	}
	// The command line every weftd gets sets no forwarding flag, so that
	// the weft mode runs with weftd's defaults.
	topo := planned(t, 2)
	all := map[string]bool{"network": true, "peer": true, "control-socket": true, "subnet-file": true}
	for _, a := range weftdArgs(&Env{Topo: topo, Dir: "/tmp/run"}, topo.Hosts[0], all) {
		for _, f := range []string{"--workers", "--batch", "--offload", "--zero-copy", "--busy-poll"} {
			if strings.HasPrefix(a, f) {
				t.Errorf("static-mode command line sets %s", a)
			}
		}
	}
}

// TestLeverModes checks that the lever tables name modes that exist: the
// chain's in the order of Modes, each optional lever after its base and
// outside the chain.
func TestLeverModes(t *testing.T) {
	names := ModeNames()
	last := -1
	for _, st := range LeverSteps {
		i := slices.Index(names, st.Mode)
		if i <= last {
			t.Errorf("lever step %s at %d in Modes, after %d", st.Mode, i, last)
		}
		last = i
	}
	for _, ol := range OptionalLevers {
		i, base := slices.Index(names, ol.Mode), slices.Index(names, ol.Base)
		if base < 0 || i <= base {
			t.Errorf("optional lever %s at %d in Modes, its base %s at %d", ol.Mode, i, ol.Base, base)
		}
		for _, st := range LeverSteps {
			if st.Mode == ol.Mode {
				t.Errorf("optional lever %s is a lever step", ol.Mode)
			}
		}
	}
}

func TestKnowsFlags(t *testing.T) {
	known := map[string]bool{"offload": true, "batch": true}
	if err := knowsFlags(known, []string{"--offload", "off", "--batch=1"}); err != nil {
		t.Error(err)
	}
	err := knowsFlags(known, []string{"--offload", "on", "--zero-copy=off"})
	if err == nil || !strings.Contains(err.Error(), "--zero-copy") {
		t.Errorf("unknown --zero-copy: %v", err)
	}
}

func TestWeftdEnviron(t *testing.T) {
	got := weftdEnviron([]string{"PATH=/bin", "WEFTD_BATCH=1", "HOME=/root", "WEFTD_OFFLOAD=off", "XWEFTD_A=1"})
	if want := []string{"PATH=/bin", "HOME=/root", "XWEFTD_A=1"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestWithUnderlayGSO(t *testing.T) {
	var dirs []string
	setup := func(_ context.Context, env *Env, _ *Dataplane) error {
		dirs = append(dirs, env.Dir)
		return nil
	}
	modes := []Mode{
		{Name: "vxlan", Setup: setup},
		{Name: "weft-batch", About: "b", Setup: setup},
		{Name: "weft", About: "w", SendsUDPGSO: true, Setup: setup},
	}
	row := func(ms []Mode) string {
		var out []string
		for _, m := range ms {
			out = append(out, m.Name+"="+m.UnderlayGSO)
		}
		return strings.Join(out, ", ")
	}
	tests := []struct {
		setting, want, wantErr string
	}{
		{UnderlayGSOOn, "vxlan=, weft-batch=, weft=", ""},
		{UnderlayGSOOff, "vxlan=off, weft-batch=off, weft=off", ""},
		{UnderlayGSOBoth, "vxlan=on, weft-batch=on, weft=on, weft (underlay-gso off)=off", ""},
		{"auto", "", `"auto"`},
		{"", "", `""`},
	}
	for _, tt := range tests {
		got, err := WithUnderlayGSO(modes, tt.setting)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%q: error %v, want %q", tt.setting, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if row(got) != tt.want {
			t.Errorf("%s: got %s\nwant %s", tt.setting, row(got), tt.want)
		}
	}
	// The twin runs the mode's own setup, its files in a directory of
	// their own, and says in its About how it differs.
	both, _ := WithUnderlayGSO(modes, UnderlayGSOBoth)
	dir := t.TempDir()
	for _, m := range both[2:] {
		if err := m.Setup(context.Background(), &Env{Dir: dir}, &Dataplane{}); err != nil {
			t.Fatal(err)
		}
	}
	if want := []string{dir, filepath.Join(dir, "underlay-gso-off")}; !slices.Equal(dirs, want) {
		t.Errorf("setup dirs %q, want %q", dirs, want)
	}
	if about := both[3].About; about != "w; underlay UDP segmentation off" {
		t.Errorf("twin about %q", about)
	}
	if !strings.HasSuffix(both[3].Name, UnderlayGSOOffSuffix) || !both[3].SendsUDPGSO {
		t.Errorf("twin %+v", both[3])
	}
}

func TestWeftdArgs(t *testing.T) {
	topo := planned(t, 3)
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

// planned is a topology of n hosts as netlab would build it, not built: for
// checks of what a mode derives from it.
func planned(t *testing.T, n int) *netlab.Topology {
	t.Helper()
	topo, err := netlab.Plan(netlab.Config{Prefix: "x", Hosts: n})
	if err != nil {
		t.Fatal(err)
	}
	return topo
}
