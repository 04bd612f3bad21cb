package bench

import (
	"encoding/json"
	"errors"
	"fmt"
)

// IperfTCP is what a TCP run of `iperf3 --json` reports, seen by the receiver.
type IperfTCP struct {
	Streams     int     // parallel streams the client asked for
	Seconds     float64 // receiver's measured interval
	Bytes       int64   // bytes the receiver got
	BitsPerSec  float64 // receiver's throughput
	Retransmits int64   // sender's TCP retransmissions
}

// IperfUDP is what a UDP run of `iperf3 --json` reports, seen by the receiver.
type IperfUDP struct {
	Seconds     float64
	Sent        int64   // datagrams the client sent
	Received    int64   // datagrams the server got
	Lost        int64   // datagrams the server saw missing
	LostPercent float64 // as iperf3 computes it
}

// PacketsPerSec is the received packet rate.
func (u IperfUDP) PacketsPerSec() float64 {
	if u.Seconds <= 0 {
		return 0
	}
	return float64(u.Received) / u.Seconds
}

// iperfReport holds the few fields of iperf3's JSON (3.9 and later) the
// harness reads. "sum_received" on a UDP run is the server's view, which
// iperf3 sends back to the client at the end of the test.
type iperfReport struct {
	Start struct {
		TestStart struct {
			Protocol   string `json:"protocol"`
			NumStreams int    `json:"num_streams"`
		} `json:"test_start"`
	} `json:"start"`
	End struct {
		SumSent     *iperfSum `json:"sum_sent"`
		SumReceived *iperfSum `json:"sum_received"`
	} `json:"end"`
	Error string `json:"error"`
}

type iperfSum struct {
	Seconds     float64 `json:"seconds"`
	Bytes       int64   `json:"bytes"`
	BitsPerSec  float64 `json:"bits_per_second"`
	Retransmits int64   `json:"retransmits"`
	Packets     int64   `json:"packets"`
	LostPackets int64   `json:"lost_packets"`
	LostPercent float64 `json:"lost_percent"`
}

func parseIperf(data []byte, proto string) (*iperfReport, error) {
	var r iperfReport
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("iperf3 json: %w", err)
	}
	if r.Error != "" {
		return nil, fmt.Errorf("iperf3: %s", r.Error)
	}
	if r.Start.TestStart.Protocol != proto {
		return nil, fmt.Errorf("iperf3 json: protocol %q, want %q", r.Start.TestStart.Protocol, proto)
	}
	if r.End.SumSent == nil || r.End.SumReceived == nil {
		return nil, errors.New("iperf3 json: no sum_sent/sum_received (iperf3 older than 3.9?)")
	}
	return &r, nil
}

// ParseIperfTCP reads the JSON of a finished TCP client run.
func ParseIperfTCP(data []byte) (IperfTCP, error) {
	r, err := parseIperf(data, "TCP")
	if err != nil {
		return IperfTCP{}, err
	}
	rx := r.End.SumReceived
	return IperfTCP{
		Streams:     r.Start.TestStart.NumStreams,
		Seconds:     rx.Seconds,
		Bytes:       rx.Bytes,
		BitsPerSec:  rx.BitsPerSec,
		Retransmits: r.End.SumSent.Retransmits,
	}, nil
}

// ParseIperfUDP reads the JSON of a finished UDP client run. The server's
// "packets" counts up to the highest sequence number it saw, lost ones
// included, so what arrived is packets minus lost.
func ParseIperfUDP(data []byte) (IperfUDP, error) {
	r, err := parseIperf(data, "UDP")
	if err != nil {
		return IperfUDP{}, err
	}
	rx := r.End.SumReceived
	return IperfUDP{
		Seconds:     rx.Seconds,
		Sent:        r.End.SumSent.Packets,
		Received:    max(rx.Packets-rx.LostPackets, 0),
		Lost:        rx.LostPackets,
		LostPercent: rx.LostPercent,
	}, nil
}
