package lease

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestSubnetFileMatchesFlannel writes what flanneld wrote on h1 and h2 and
// compares byte for byte, then reads flanneld's files back.
func TestSubnetFileMatchesFlannel(t *testing.T) {
	for _, tc := range []struct {
		file   string
		subnet string
	}{
		{"subnet-h1.env", "100.96.1.0/24"},
		{"subnet-h2.env", "100.96.2.0/24"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			want, err := os.ReadFile(flannelFile(t, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			f := SubnetFile{Network: pfx("100.96.0.0/16"), Subnet: pfx(tc.subnet), MTU: 1472, IPMasq: false}
			path := filepath.Join(t.TempDir(), "run", "flannel", "subnet.env")
			if err := WriteSubnetFile(path, f); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("wrote\n%q\nflanneld wrote\n%q", got, want)
			}
			back, err := ReadSubnetFile(flannelFile(t, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if back != f {
				t.Errorf("read flanneld's file as %+v, want %+v", back, f)
			}
			if prev, err := PreviousSubnet(flannelFile(t, tc.file)); err != nil || prev != pfx(tc.subnet) {
				t.Errorf("PreviousSubnet = %v, %v; want %s", prev, err, tc.subnet)
			}
		})
	}
}

func TestWriteSubnetFileReplacesAtomically(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "subnet.env")
	if err := os.WriteFile(path, []byte("FLANNEL_SUBNET=10.0.0.1/24\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := SubnetFile{Network: pfx("10.0.0.0/8"), Subnet: pfx("10.5.7.0/24"), MTU: 1450, IPMasq: true}
	if err := WriteSubnetFile(path, f); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := "FLANNEL_NETWORK=10.0.0.0/8\nFLANNEL_SUBNET=10.5.7.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"
	if string(got) != want {
		t.Errorf("got %q, want %q", got, want)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644 as flanneld's", st.Mode().Perm())
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("directory holds %d entries after the write, want only subnet.env (temporary file left behind?)", len(ents))
	}
	if err := WriteSubnetFile(path, SubnetFile{Network: pfx("10.0.0.0/8"), Subnet: pfx("10.5.7.0/31"), MTU: 1450}); err == nil {
		t.Error("wrote a /31 subnet")
	}
	if b, _ := os.ReadFile(path); string(b) != want {
		t.Errorf("a refused write changed the file: %q", b)
	}
}

func TestReadSubnetFileMissing(t *testing.T) {
	_, err := ReadSubnetFile(filepath.Join(t.TempDir(), "nope.env"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadSubnetFile of a missing file: %v, want fs.ErrNotExist", err)
	}
	p, err := PreviousSubnet(filepath.Join(t.TempDir(), "nope.env"))
	if p.IsValid() || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("PreviousSubnet of a missing file: %v, %v", p, err)
	}
}

func TestParseSubnetFile(t *testing.T) {
	for _, tc := range []struct {
		name, data string
		want       SubnetFile
		bad        bool
	}{
		{name: "flannel", data: "FLANNEL_NETWORK=100.96.0.0/16\nFLANNEL_SUBNET=100.96.1.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=false\n",
			want: SubnetFile{pfx("100.96.0.0/16"), pfx("100.96.1.0/24"), 1472, false}},
		{name: "dotenv dialect", data: "# written by hand\n\nexport FLANNEL_SUBNET=\"100.96.3.1/24\"\n FLANNEL_MTU = '1400' \nFLANNEL_IPMASQ=true # masquerade\r\n",
			want: SubnetFile{Subnet: pfx("100.96.3.0/24"), MTU: 1400, IPMasq: true}},
		{name: "dual stack file", data: "FLANNEL_NETWORK=10.0.0.0/8\nFLANNEL_SUBNET=10.1.2.1/24\nFLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_IPV6_SUBNET=fc00:0:0:1::1/64\n",
			want: SubnetFile{Network: pfx("10.0.0.0/8"), Subnet: pfx("10.1.2.0/24")}},
		{name: "last wins", data: "FLANNEL_SUBNET=10.1.2.1/24\nFLANNEL_SUBNET=10.1.3.1/24\n", want: SubnetFile{Subnet: pfx("10.1.3.0/24")}},
		{name: "no subnet", data: "FLANNEL_MTU=1472\n", want: SubnetFile{MTU: 1472}},
		{name: "empty", data: "", want: SubnetFile{}},
		{name: "no equals", data: "FLANNEL_SUBNET\n", bad: true},
		{name: "bad subnet", data: "FLANNEL_SUBNET=100.96.1.1\n", bad: true},
		{name: "IPv6 subnet", data: "FLANNEL_SUBNET=fc00::1/64\n", bad: true},
		{name: "bad mtu", data: "FLANNEL_MTU=big\n", bad: true},
		{name: "zero mtu", data: "FLANNEL_MTU=0\n", bad: true},
		{name: "bad ipmasq", data: "FLANNEL_IPMASQ=maybe\n", bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSubnetFile([]byte(tc.data))
			switch {
			case tc.bad && err == nil:
				t.Errorf("ParseSubnetFile(%q) = %+v, want an error", tc.data, got)
			case !tc.bad && err != nil:
				t.Errorf("ParseSubnetFile(%q): %v", tc.data, err)
			case !tc.bad && got != tc.want:
				t.Errorf("ParseSubnetFile(%q) = %+v, want %+v", tc.data, got, tc.want)
			}
		})
	}
}

func FuzzParseSubnetFile(f *testing.F) {
	f.Add([]byte("FLANNEL_NETWORK=100.96.0.0/16\nFLANNEL_SUBNET=100.96.1.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=false\n"))
	f.Add([]byte("export FLANNEL_SUBNET='10.0.0.1/8' # x\n#c\n\nFLANNEL_IPMASQ=1\n"))
	f.Add([]byte("FLANNEL_SUBNET=\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		sf, err := ParseSubnetFile(data)
		if err != nil {
			return
		}
		if sf.Subnet.IsValid() && (!sf.Subnet.Addr().Is4() || sf.Subnet.Masked() != sf.Subnet) {
			t.Fatalf("Subnet %v", sf.Subnet)
		}
		// Whatever we can write back must read back the same.
		b, err := sf.Marshal()
		if err != nil {
			return
		}
		again, err := ParseSubnetFile(b)
		if err != nil || again != sf {
			t.Fatalf("round trip: %+v -> %q -> %+v, %v", sf, b, again, err)
		}
	})
}
