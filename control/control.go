// Package control is the protocol between weftd and the weft CLI over
// weftd's control socket (a unix socket, mode 0600): the requests, the
// answers, the frames of a packet dump, the dump filter language, and a
// small client. Both binaries speak it, so it lives apart from either.
//
// A client connects and writes one request, a JSON object on one line. The
// daemon answers with one JSON line (a Response). For a dump that accepts,
// the answer is followed by a stream of frames (frame.go) until the dump
// ends; a client ends it early by closing its side for writing. Then the
// daemon closes the connection. One request per connection.
package control

import (
	"time"
)

// DefaultSocket is where weftd listens and weft connects unless told otherwise.
const DefaultSocket = "/run/weft/weftd.sock"

// The operations a request can name.
const (
	OpStatus = "status"
	OpRoutes = "routes"
	OpDump   = "dump"
)

// Request is what a client asks.
type Request struct {
	Op   string       `json:"op"`
	Dump *DumpRequest `json:"dump,omitempty"` // with OpDump only
}

// DumpRequest says what a dump captures and when it ends.
type DumpRequest struct {
	// Stages to capture, by name (StageNames); empty means all.
	Stages []string `json:"stages,omitempty"`
	// Filter is an expression of the filter language (filter.go).
	Filter string `json:"filter,omitempty"`
	// Count ends the dump after this many packets; 0 means no limit.
	Count int `json:"count,omitempty"`
	// DurationMS ends the dump after this many milliseconds; 0 means none.
	DurationMS int64 `json:"duration_ms,omitempty"`
	// Snaplen is the most bytes kept of each inner packet; 0 means all.
	Snaplen int `json:"snaplen,omitempty"`

	filter *Filter // parsed by ParseRequest
}

// Duration is DurationMS as a time.Duration.
func (d *DumpRequest) Duration() time.Duration { return time.Duration(d.DurationMS) * time.Millisecond }

// ParsedFilter returns the filter ParseRequest parsed (nil: everything).
func (d *DumpRequest) ParsedFilter() *Filter { return d.filter }

// Response is the daemon's answer: Error, or the result of the operation.
type Response struct {
	Error  string  `json:"error,omitempty"`
	Status *Status `json:"status,omitempty"`
	Routes []Route `json:"routes,omitempty"`
	// Dump, when set, says the dump started: frames follow.
	Dump *DumpStarted `json:"dump,omitempty"`
}

// Status is the daemon's state and counters at Time.
type Status struct {
	Time    time.Time `json:"time"`    // when the counters were read
	Started time.Time `json:"started"` // when the daemon started forwarding
	Mode    string    `json:"mode"`    // "static", or "etcd" once leases come from etcd

	Network  string `json:"network"`
	Subnet   string `json:"subnet"`
	PublicIP string `json:"public_ip"`
	Port     int    `json:"port"`
	TUN      string `json:"tun"`
	MTU      int    `json:"mtu"`
	Workers  int    `json:"workers"`
	Batch    int    `json:"batch"`

	Offloads Offloads `json:"offloads"`
	// Lease and Etcd are absent when the daemon has no lease from etcd
	// (static mode): nothing is known, and nothing is made up.
	Lease *Lease `json:"lease,omitempty"`
	Etcd  *Etcd  `json:"etcd,omitempty"`

	Routes   int      `json:"routes"`
	Peers    int      `json:"peers"`
	Counters Counters `json:"counters"`
	Dumps    Dumps    `json:"dumps"`
}

// Offloads says which segmentation offloads are in use.
type Offloads struct {
	TUN          bool   `json:"tun"`           // virtio-net header: TSO/GSO from the TUN, GRO into it
	UDPGSO       bool   `json:"udp_gso"`       // UDP_SEGMENT on send
	UDPGRO       bool   `json:"udp_gro"`       // UDP_GRO on receive
	GSOFallbacks uint64 `json:"gso_fallbacks"` // sends that fell back to one datagram per message
}

// Lease is this host's subnet lease in etcd.
type Lease struct {
	Expiry time.Time `json:"expiry"` // zero if not known yet
}

// Etcd is the daemon's link to etcd.
type Etcd struct {
	Connected   bool   `json:"connected"`
	WatchEvents uint64 `json:"watch_events"`
}

// Counters are the engine's counters since the daemon started.
type Counters struct {
	TxPackets uint64            `json:"tx_packets"` // from the TUN, sent to peers
	TxBytes   uint64            `json:"tx_bytes"`
	RxPackets uint64            `json:"rx_packets"` // from peers, written to the TUN
	RxBytes   uint64            `json:"rx_bytes"`
	ICMPSent  uint64            `json:"icmp_sent"` // net unreachable answers
	Drops     map[string]uint64 `json:"drops"`     // by reason, every reason
}

// Dumps are the packet tap's totals.
type Dumps struct {
	Active   int    `json:"active"`
	Captured uint64 `json:"captured"`
	Dropped  uint64 `json:"dropped"` // what slow readers could not take
}

// Route is one entry of the forwarding table with what it carried.
type Route struct {
	Subnet string    `json:"subnet"`
	Peer   string    `json:"peer"`  // the peer's address and UDP port
	Since  time.Time `json:"since"` // when the route got this peer (zero if unknown)
	// Packets and bytes of inner packets: Tx sent to the peer, Rx received
	// from it and written to the TUN.
	TxPackets uint64 `json:"tx_packets"`
	TxBytes   uint64 `json:"tx_bytes"`
	RxPackets uint64 `json:"rx_packets"`
	RxBytes   uint64 `json:"rx_bytes"`
}

// DumpStarted is the answer to a dump request that was accepted.
type DumpStarted struct {
	Stages []string `json:"stages"` // what is captured, by name
	Filter string   `json:"filter,omitempty"`
}

// DumpEnd closes a dump's stream of frames.
type DumpEnd struct {
	Packets uint64 `json:"packets"` // frames sent
	// Dropped is what matched but the dump's queue could not hold, because
	// the client (or the socket) did not keep up.
	Dropped uint64 `json:"dropped"`
	Reason  string `json:"reason"` // count, duration, client, shutdown or error
	Error   string `json:"error,omitempty"`
}
