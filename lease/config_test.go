package lease

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// flannelTestdata is the reference data recorded from a real flanneld
// (testdata/README.md), seen from this package's directory.
const flannelTestdata = "../testdata/flannel"

// flannelFile returns the path of a reference file.
func flannelFile(t *testing.T, name string) string {
	t.Helper()
	return filepath.Join(flannelTestdata, name)
}

// flannelKeys reads etcd-keys.txt: `etcdctl get --prefix` output, key and
// value on alternate lines.
func flannelKeys(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open(flannelFile(t, "etcd-keys.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	kv := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key := sc.Text()
		if strings.TrimSpace(key) == "" {
			continue
		}
		if !sc.Scan() {
			t.Fatalf("etcd-keys.txt: key %q has no value line", key)
		}
		kv[key] = sc.Text()
	}
	if len(kv) == 0 {
		t.Fatal("etcd-keys.txt: no keys")
	}
	return kv
}

func TestParseConfig(t *testing.T) {
	type want struct {
		network, min, max string
		subnetLen         int
		port              uint16
	}
	std := want{"100.96.0.0/16", "100.96.1.0", "100.96.255.0", 24, 8285}
	good := []struct {
		name, json string
		want       want
	}{
		{"flannel testdata", testConfig, std},
		{"no backend means udp", `{"Network":"100.96.0.0/16"}`, std},
		{"null backend", `{"Network":"100.96.0.0/16","Backend":null}`, std},
		{"empty backend", `{"Network":"100.96.0.0/16","Backend":{}}`, std},
		{"type in capitals", `{"Network":"100.96.0.0/16","Backend":{"Type":"UDP"}}`, std},
		{"port 0 is the default", `{"Network":"100.96.0.0/16","Backend":{"Type":"udp","Port":0}}`, std},
		{"other port", `{"Network":"100.96.0.0/16","Backend":{"Type":"udp","Port":9000}}`, want{"100.96.0.0/16", "100.96.1.0", "100.96.255.0", 24, 9000}},
		{"field names in any case", `{"network":"100.96.0.0/16","subnetlen":24}`, std},
		{"unknown fields ignored", `{"Network":"100.96.0.0/16","EnableIPv6":false,"IPv6Network":"fc00::/48"}`, std},
		{"host bits masked", `{"Network":"100.96.7.9/16"}`, std},
		{"/8 gets /24", `{"Network":"10.0.0.0/8"}`, want{"10.0.0.0/8", "10.0.1.0", "10.255.255.0", 24, 8285}},
		{"/22 gets /24", `{"Network":"10.0.0.0/22"}`, want{"10.0.0.0/22", "10.0.1.0", "10.0.3.0", 24, 8285}},
		{"/23 gets /25", `{"Network":"10.0.0.0/23"}`, want{"10.0.0.0/23", "10.0.0.128", "10.0.1.128", 25, 8285}},
		{"/28 gets /30", `{"Network":"10.0.0.0/28"}`, want{"10.0.0.0/28", "10.0.0.4", "10.0.0.12", 30, 8285}},
		{"SubnetLen 30", `{"Network":"10.0.0.0/16","SubnetLen":30}`, want{"10.0.0.0/16", "10.0.0.4", "10.0.255.252", 30, 8285}},
		{"SubnetLen = length + 2", `{"Network":"10.0.0.0/16","SubnetLen":18}`, want{"10.0.0.0/16", "10.0.64.0", "10.0.192.0", 18, 8285}},
		{"top of the address space", `{"Network":"255.255.0.0/16"}`, want{"255.255.0.0/16", "255.255.1.0", "255.255.255.0", 24, 8285}},
		{"explicit range", `{"Network":"10.0.0.0/16","SubnetMin":"10.0.10.0","SubnetMax":"10.0.20.0"}`, want{"10.0.0.0/16", "10.0.10.0", "10.0.20.0", 24, 8285}},
		{"0.0.0.0 means default", `{"Network":"100.96.0.0/16","SubnetMin":"0.0.0.0","SubnetMax":"0.0.0.0"}`, std},
		{"min may be the first subnet", `{"Network":"10.0.0.0/16","SubnetMin":"10.0.0.0"}`, want{"10.0.0.0/16", "10.0.0.0", "10.0.255.0", 24, 8285}},
		{"min = max", `{"Network":"10.0.0.0/16","SubnetMin":"10.0.5.0","SubnetMax":"10.0.5.0"}`, want{"10.0.0.0/16", "10.0.5.0", "10.0.5.0", 24, 8285}},
	}
	for _, tc := range good {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tc.json))
			if err != nil {
				t.Fatalf("ParseConfig(%s): %v", tc.json, err)
			}
			got := want{c.Network.String(), c.SubnetMin.String(), c.SubnetMax.String(), c.SubnetLen, c.Port}
			if got != tc.want || c.Backend != BackendUDP {
				t.Errorf("ParseConfig(%s)\n got %+v backend %q\nwant %+v backend udp", tc.json, got, c.Backend, tc.want)
			}
		})
	}

	bad := []struct {
		name, json, field string // field: what the error must name
	}{
		{"empty", ``, "JSON"},
		{"not an object", `["100.96.0.0/16"]`, "JSON"},
		{"truncated", `{"Network":"100.96.0.0/16"`, "JSON"},
		{"no Network", `{"SubnetLen":24}`, "Network"},
		{"null Network", `{"Network":null}`, "Network"},
		{"Network a number", `{"Network":1}`, "Network"},
		{"Network empty", `{"Network":""}`, "Network"},
		{"Network no prefix", `{"Network":"100.96.0.0"}`, "Network"},
		{"Network garbage", `{"Network":"banana/16"}`, "Network"},
		{"Network IPv6", `{"Network":"fc00::/48"}`, "Network"},
		{"Network 4in6", `{"Network":"::ffff:100.96.0.0/112"}`, "Network"},
		{"Network /0", `{"Network":"0.0.0.0/0"}`, "Network"},
		{"Network too small", `{"Network":"10.0.0.0/29"}`, "Network"},
		{"SubnetLen 31", `{"Network":"10.0.0.0/16","SubnetLen":31}`, "SubnetLen"},
		{"SubnetLen too close", `{"Network":"10.0.0.0/16","SubnetLen":17}`, "SubnetLen"},
		{"SubnetLen negative", `{"Network":"10.0.0.0/16","SubnetLen":-24}`, "SubnetLen"},
		{"SubnetLen a string", `{"Network":"10.0.0.0/16","SubnetLen":"24"}`, "SubnetLen"},
		{"SubnetLen a fraction", `{"Network":"10.0.0.0/16","SubnetLen":24.5}`, "SubnetLen"},
		{"SubnetMin outside", `{"Network":"10.0.0.0/16","SubnetMin":"10.1.0.0"}`, "SubnetMin"},
		{"SubnetMin unaligned", `{"Network":"10.0.0.0/16","SubnetMin":"10.0.1.5"}`, "SubnetMin"},
		{"SubnetMin garbage", `{"Network":"10.0.0.0/16","SubnetMin":"x"}`, "SubnetMin"},
		{"SubnetMin empty", `{"Network":"10.0.0.0/16","SubnetMin":""}`, "SubnetMin"},
		{"SubnetMin IPv6", `{"Network":"10.0.0.0/16","SubnetMin":"fc00::"}`, "SubnetMin"},
		{"SubnetMin a number", `{"Network":"10.0.0.0/16","SubnetMin":167772416}`, "SubnetMin"},
		{"SubnetMax outside", `{"Network":"10.0.0.0/16","SubnetMax":"11.0.0.0"}`, "SubnetMax"},
		{"SubnetMax unaligned", `{"Network":"10.0.0.0/16","SubnetMax":"10.0.9.128"}`, "SubnetMax"},
		{"min above max", `{"Network":"10.0.0.0/16","SubnetMin":"10.0.9.0","SubnetMax":"10.0.8.0"}`, "SubnetMin"},
		{"Backend a string", `{"Network":"10.0.0.0/16","Backend":"udp"}`, "Backend"},
		{"Backend vxlan", `{"Network":"10.0.0.0/16","Backend":{"Type":"vxlan"}}`, "Backend.Type"},
		{"Backend host-gw", `{"Network":"10.0.0.0/16","Backend":{"Type":"host-gw"}}`, "Backend.Type"},
		{"Port too big", `{"Network":"10.0.0.0/16","Backend":{"Type":"udp","Port":70000}}`, "Backend.Port"},
		{"Port negative", `{"Network":"10.0.0.0/16","Backend":{"Type":"udp","Port":-1}}`, "Backend.Port"},
		{"Port a string", `{"Network":"10.0.0.0/16","Backend":{"Type":"udp","Port":"8285"}}`, "Backend"},
	}
	for _, tc := range bad {
		t.Run("bad/"+tc.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tc.json))
			if err == nil {
				t.Fatalf("ParseConfig(%s) = %+v, want an error naming %s", tc.json, c, tc.field)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("ParseConfig(%s): error %q does not name %s", tc.json, err, tc.field)
			}
		})
	}
}

// TestParseFlannelConfig reads the config a real flanneld ran with.
func TestParseFlannelConfig(t *testing.T) {
	kv := flannelKeys(t)
	raw, ok := kv[DefaultPrefix+"/config"]
	if !ok {
		t.Fatalf("etcd-keys.txt has no %s/config", DefaultPrefix)
	}
	c, err := ParseConfig([]byte(raw))
	if err != nil {
		t.Fatalf("flanneld's config: %v", err)
	}
	if c.Network != pfx("100.96.0.0/16") || c.SubnetLen != 24 || c.Port != 8285 {
		t.Errorf("flanneld's config parsed as %+v", c)
	}
	if d, err := DefaultConfigJSON(pfx("100.96.0.0/16")); err != nil || string(d) != raw {
		t.Errorf("DefaultConfigJSON = %s, %v; want flanneld's %s", d, err, raw)
	}
}

func TestConfigFits(t *testing.T) {
	c, err := ParseConfig([]byte(`{"Network":"10.0.0.0/16","SubnetMin":"10.0.10.0","SubnetMax":"10.0.20.0"}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		subnet string
		fits   bool
	}{
		{"10.0.10.0/24", true},
		{"10.0.15.0/24", true},
		{"10.0.20.0/24", true},
		{"10.0.9.0/24", false},  // below SubnetMin
		{"10.0.21.0/24", false}, // above SubnetMax
		{"10.0.15.0/25", false}, // wrong length
		{"10.0.15.1/24", false}, // not masked
		{"10.1.15.0/24", false},
		{"fc00::/24", false},
	} {
		if got := c.Fits(pfx(tc.subnet)); got != tc.fits {
			t.Errorf("Fits(%s) = %v, want %v", tc.subnet, got, tc.fits)
		}
	}
	if (Config{}).Fits(pfx("0.0.0.0/0")) {
		t.Error("the zero Config fits 0.0.0.0/0")
	}
}

func TestDefaultConfigJSON(t *testing.T) {
	if _, err := DefaultConfigJSON(pfx("10.0.0.0/24")); err == nil {
		t.Error("DefaultConfigJSON(10.0.0.0/24) gave no error: a /24 cannot hold /24 subnets")
	}
	if _, err := DefaultConfigJSON(pfx("fc00::/48")); err == nil {
		t.Error("DefaultConfigJSON(fc00::/48) gave no error")
	}
}

func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		testConfig,
		`{"Network":"10.0.0.0/8","SubnetLen":30,"SubnetMin":"10.0.0.4","SubnetMax":"10.255.255.252"}`,
		`{"network":"255.255.255.240/28","backend":{"type":"udp","port":1}}`,
		`{"Network":"10.0.0.0/16","Backend":{}}`,
		`null`, `{}`, `[]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil {
			return
		}
		// Whatever parses must be a config Acquire can use.
		if !c.Network.Addr().Is4() || c.Network.Masked() != c.Network || c.Network.Bits() == 0 {
			t.Fatalf("bad Network %v", c.Network)
		}
		if c.SubnetLen < c.Network.Bits()+2 || c.SubnetLen > 30 {
			t.Fatalf("SubnetLen %d for %v", c.SubnetLen, c.Network)
		}
		for _, a := range []struct {
			name string
			v    uint32
		}{{"SubnetMin", u32(c.SubnetMin)}, {"SubnetMax", u32(c.SubnetMax)}} {
			if !c.Network.Contains(addr4(a.v)) || a.v&(1<<(32-c.SubnetLen)-1) != 0 {
				t.Fatalf("%s %v outside %v or unaligned to /%d", a.name, addr4(a.v), c.Network, c.SubnetLen)
			}
		}
		if u32(c.SubnetMin) > u32(c.SubnetMax) || c.Port == 0 || c.Backend != BackendUDP {
			t.Fatalf("bad config %+v", c)
		}
	})
}
