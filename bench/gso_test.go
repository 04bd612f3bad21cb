package bench

import (
	"slices"
	"strings"
	"testing"

	"github.com/weft-dev/weft/netlab"
)

// ethtoolK is `ethtool -k ul0` on a veth (kernel 6.18), cut short.
const ethtoolK = `Features for ul0:
rx-checksumming: on
tx-checksumming: on
	tx-checksum-ipv4: off [fixed]
tcp-segmentation-offload: on
	tx-tcp-segmentation: on
tx-udp_tnl-segmentation: on
tx-udp_tnl-csum-segmentation: on
tx-esp-segmentation: off [fixed]
tx-udp-segmentation: off
rx-gro-list: off
rx-udp-gro-forwarding: on [requested off]
`

func TestEthtoolFeature(t *testing.T) {
	tests := []struct {
		feature string
		on      bool
		wantErr string
	}{
		{"tx-udp-segmentation", false, ""},
		{"tx-udp_tnl-segmentation", true, ""},
		{"tx-tcp-segmentation", true, ""}, // indented: a sub-feature
		{"tx-esp-segmentation", false, ""},
		{"rx-udp-gro-forwarding", true, ""}, // the state, not the request
		{"tx-udp", false, "no feature tx-udp"},
	}
	for _, tt := range tests {
		on, err := ethtoolFeature([]byte(ethtoolK), tt.feature)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: error %v, want %q", tt.feature, err, tt.wantErr)
			}
			continue
		}
		if err != nil || on != tt.on {
			t.Errorf("%s: %v, %v; want %v", tt.feature, on, err, tt.on)
		}
	}
	if _, err := ethtoolFeature([]byte("tx-udp-segmentation: maybe\n"), udpSegFeature); err == nil {
		t.Error("a state neither on nor off accepted")
	}
}

func TestToolsFor(t *testing.T) {
	for _, tt := range []struct {
		setting string
		ethtool bool
	}{{"", false}, {UnderlayGSOOn, false}, {UnderlayGSOOff, true}, {UnderlayGSOBoth, true}} {
		got := ToolsFor(tt.setting)
		if slices.Contains(got, "ethtool") != tt.ethtool || !slices.Contains(got, "iperf3") {
			t.Errorf("%q: %v", tt.setting, got)
		}
	}
	if len(HarnessTools) != 4 {
		t.Errorf("ToolsFor changed HarnessTools: %v", HarnessTools)
	}
	err := netlab.CheckTools("ip", "no-such-tool-ethtool-test")
	if err == nil || !strings.Contains(err.Error(), "apt-get install -y no-such-tool-ethtool-test") {
		t.Errorf("missing tool: %v", err)
	}
}

func TestCheckUnderlayGSO(t *testing.T) {
	for _, s := range []string{UnderlayGSOOn, UnderlayGSOOff, UnderlayGSOBoth} {
		if err := CheckUnderlayGSO(s); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	for _, s := range []string{"", "ON", "true", "auto"} {
		if err := CheckUnderlayGSO(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}
