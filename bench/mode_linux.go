package bench

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/weft-dev/weft/netlab"
)

// Mode is one way of carrying pod traffic between hosts. Each is a table
// entry: adding a variant (another weftd flag set, an underlay tweak) means
// adding an entry to Modes, not touching the others or the runner.
type Mode struct {
	Name  string
	About string
	// PodMTU is what the mode's tunnel leaves for a pod's packets, set on
	// the pod veths as a CNI plugin would. 0 leaves the pods alone (the
	// underlay mode, whose traffic runs host to host).
	PodMTU int
	// Flags are the weftd flags the mode adds to the static-mode command
	// line: what sets one weftd mode apart from another. Empty for weft
	// itself (weftd's defaults) and for modes that run no weftd.
	Flags []string
	// SendsUDPGSO marks a mode that hands the underlay UDP GSO
	// super-datagrams (UDP_SEGMENT), so that the underlay's UDP segmentation
	// offload lies on its path: --underlay-gso both runs it both ways.
	SendsUDPGSO bool
	// UnderlayGSO is the state, UnderlayGSOOn or UnderlayGSOOff, that the
	// harness puts the underlay's UDP segmentation offload in before Setup;
	// empty leaves the veths as created (on).
	UnderlayGSO string
	// Available says why the mode cannot run with env, or nil if it can.
	// Nil means always available.
	Available func(env *Env) error
	// Setup builds the mode on env.Topo and fills dp: the endpoints, the
	// daemons to account CPU to, and, step by step as it goes, what undoes
	// each step, so that dp.Close removes a half-built mode as well.
	Setup func(ctx context.Context, env *Env, dp *Dataplane) error
}

// Env is what a mode's setup may use.
type Env struct {
	Topo     *netlab.Topology
	Dir      string // scratch directory of the run: logs, sockets
	Weftd    string // weftd binary
	Flanneld string // flanneld binary; empty: flannel mode unavailable
	// EtcdCommand starts a single-member etcd: the argument vector, to which
	// "--listen URL --dir DIR" is appended. The flannel mode needs it.
	EtcdCommand []string
}

// Dataplane is a mode set up and running.
type Dataplane struct {
	ClientNS string     // where the traffic generators run
	ServerNS string     // where the sinks run
	ServerIP netip.Addr // the address the client sends to

	daemons []*daemon
	undo    []func(context.Context) error
}

// onClose registers a step that undoes part of the setup; steps run in
// reverse order of registration.
func (dp *Dataplane) onClose(f func(context.Context) error) { dp.undo = append(dp.undo, f) }

// addDaemon registers a forwarding daemon: its CPU is accounted to the mode,
// and it is stopped first at Close.
func (dp *Dataplane) addDaemon(d *daemon) {
	dp.daemons = append(dp.daemons, d)
	dp.onClose(func(context.Context) error { return d.stop() })
}

// PIDs are the forwarding daemons' processes.
func (dp *Dataplane) PIDs() []int {
	pids := make([]int, 0, len(dp.daemons))
	for _, d := range dp.daemons {
		pids = append(pids, d.pid())
	}
	return pids
}

// checkDaemons returns an error if a daemon has died.
func (dp *Dataplane) checkDaemons() error {
	for _, d := range dp.daemons {
		if ok, err := d.exited(); ok {
			return fmt.Errorf("%s exited (%s)%s", d.name, exitDesc(err), d.logTail())
		}
	}
	return nil
}

// Close undoes every setup step, all of them even when some fail.
func (dp *Dataplane) Close(ctx context.Context) error {
	var errs []error
	for i := len(dp.undo) - 1; i >= 0; i-- {
		if err := dp.undo[i](ctx); err != nil {
			errs = append(errs, err)
		}
	}
	dp.undo, dp.daemons = nil, nil
	return errors.Join(errs...)
}

// Modes lists every mode in the order they run in a round: the kernel
// references first, so that a broken weftd still leaves a useful table, then
// the weftd modes lever by lever (LeverSteps), each adding one lever to the
// one before, then the optional levers (OptionalLevers), each adding one to
// its base mode.
//
// A variant is one more entry: weftdMode("weft-batch128", "...", "--batch",
// "128") for another flag set. The underlay's UDP segmentation is not a mode
// but a setting of the run (WithUnderlayGSO), since it applies to every mode.
var Modes = []Mode{
	underlayMode,
	hostGWMode,
	vxlanMode,
	weftdMode("weft-classic", "one packet per syscall, one worker, no offloads (flannel's udp design)",
		"--batch", "1", "--offload", "off", "--workers", "1"),
	weftdMode("weft-batch", "batched syscalls (recvmmsg/sendmmsg), one worker per core, no offloads",
		"--offload", "off"),
	sendsUDPGSO(weftdMode("weft-offload", "batching plus TUN TSO/USO and UDP GSO/GRO through wireguard-go's copying offload device (the plain offload build)",
		"--offload", "on", "--zero-copy=off")),
	sendsUDPGSO(weftdMode("weft", "batching, offloads, and weft's own offload device, cutting super-packets in place on send (segment payloads sent as iovecs from the TUN read buffer); received segments copied once, into the engine's buffers")),
	sendsUDPGSO(weftdMode("weft-busy-poll", "weft's defaults, each forwarding loop polling its TUN queue or socket for 50 µs after traffic, yielding the CPU between polls, instead of sleeping at once",
		"--busy-poll", "50us")),
	flannelMode,
}

// sendsUDPGSO marks m as sending UDP GSO super-datagrams on the underlay.
func sendsUDPGSO(m Mode) Mode {
	m.SendsUDPGSO = true
	return m
}

// LookupModes returns the named modes in the order of Modes. With no names it
// returns every mode available with env, and the reasons the others are not.
func LookupModes(names []string, env *Env) (modes []Mode, skipped []string, err error) {
	if len(names) == 0 {
		for _, m := range Modes {
			if m.Available != nil {
				if err := m.Available(env); err != nil {
					skipped = append(skipped, fmt.Sprintf("%s: %v", m.Name, err))
					continue
				}
			}
			modes = append(modes, m)
		}
		return modes, skipped, nil
	}
	for _, n := range names {
		if !slices.ContainsFunc(Modes, func(m Mode) bool { return m.Name == n }) {
			return nil, nil, fmt.Errorf("unknown mode %q (modes: %s)", n, strings.Join(ModeNames(), ", "))
		}
	}
	for _, m := range Modes {
		if !slices.Contains(names, m.Name) {
			continue
		}
		if m.Available != nil {
			if err := m.Available(env); err != nil {
				return nil, nil, fmt.Errorf("mode %s: %w", m.Name, err)
			}
		}
		modes = append(modes, m)
	}
	return modes, nil, nil
}

// ModeNames lists the names of Modes.
func ModeNames() []string {
	names := make([]string, len(Modes))
	for i, m := range Modes {
		names[i] = m.Name
	}
	return names
}
