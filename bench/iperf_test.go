package bench

import (
	"math"
	"os"
	"strings"
	"testing"
)

// The samples in testdata were recorded with iperf3 3.12 between two
// namespaces on this project's 2-core machine.

func TestParseIperfTCP(t *testing.T) {
	data, err := os.ReadFile("testdata/iperf3-tcp-2streams.json")
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseIperfTCP(data)
	if err != nil {
		t.Fatal(err)
	}
	want := IperfTCP{Streams: 2, Seconds: 1.0004, Bytes: 2779840136, BitsPerSec: 22229829156.337467, Retransmits: 18587}
	if got != want {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

func TestParseIperfUDP(t *testing.T) {
	data, err := os.ReadFile("testdata/iperf3-udp-64.json")
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseIperfUDP(data)
	if err != nil {
		t.Fatal(err)
	}
	// The server's "packets" (238634) counts the 1108 lost ones too; what
	// arrived matches its byte count: 15201664 / 64 = 237526.
	want := IperfUDP{Seconds: 1.000132, Sent: 238650, Received: 237526, Lost: 1108, LostPercent: 0.4642782317200922}
	if got != want {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	if pps := got.PacketsPerSec(); math.Abs(pps-237494.65) > 1 {
		t.Errorf("pps %v", pps)
	}
}

func TestParseIperfErrors(t *testing.T) {
	refused, err := os.ReadFile("testdata/iperf3-refused.json")
	if err != nil {
		t.Fatal(err)
	}
	tcp, err := os.ReadFile("testdata/iperf3-tcp-2streams.json")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		data    []byte
		parse   func([]byte) error
		wantErr string
	}{
		{"refused", refused, func(b []byte) error { _, err := ParseIperfTCP(b); return err }, "Connection refused"},
		{"not json", []byte("iperf3: error"), func(b []byte) error { _, err := ParseIperfTCP(b); return err }, "iperf3 json"},
		{"tcp read as udp", tcp, func(b []byte) error { _, err := ParseIperfUDP(b); return err }, `protocol "TCP", want "UDP"`},
		{"no sums", []byte(`{"start":{"test_start":{"protocol":"TCP"}},"end":{}}`),
			func(b []byte) error { _, err := ParseIperfTCP(b); return err }, "no sum_sent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.parse(tt.data)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}
