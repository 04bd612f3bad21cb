package tun

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/songgao/water"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weft-dev/weft/internal/busypoll"
)

// Config describes the TUN device weft forwards through, set up as flanneld
// sets up flannel0.
type Config struct {
	Name    string       // device name, e.g. "flannel0"
	Queues  int          // one per worker (IFF_MULTI_QUEUE)
	MTU     int          // the underlay's MTU minus the encapsulation overhead
	Addr    netip.Addr   // the host subnet's network address, put on the device as a /32
	Network netip.Prefix // the whole overlay, routed into the device
	Batch   int          // most packets per Read
	// Kind is the kind of queues to open.
	Kind Kind
	// FallBack, with an offloading Kind, opens Plain queues instead when
	// the kernel refuses the offloads; Link.Kind says what was opened and
	// Link.Refused why. Without it Create fails.
	FallBack bool
	// Keep makes the device persistent (TUNSETPERSIST): when the Link
	// closes, the device, its address and its route stay. While weftd
	// restarts, packets for other hosts' subnets then die in a device with
	// no reader instead of following the default route out unencapsulated.
	Keep bool
	// BusyPoll keeps each Plain and Offload queue's reads polling for this
	// long after traffic instead of sleeping at once (see
	// internal/busypoll); 0 never polls.
	BusyPoll time.Duration
}

// Kind is a kind of TUN queue.
type Kind int

const (
	// Plain queues have no virtio-net header: one packet per read(2) and
	// per write(2), no offloads.
	Plain Kind = iota + 1
	// Offload is weft's own offloading queue: a virtio-net header, TCP
	// and UDP segmentation offloads, super-packets handed over uncut
	// (ReadGSO) and runs of segments coalesced on write with writev,
	// without copying.
	Offload
	// CopyingOffload is wireguard-go's offloading queue, which copies every
	// segment on read and every coalesced payload on write. It is kept as
	// the baseline the bench measures Offload against.
	CopyingOffload
)

func (k Kind) String() string {
	switch k {
	case Plain:
		return "plain"
	case Offload:
		return "offload"
	case CopyingOffload:
		return "copying-offload"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Offloads says the kind's queues take TCP and UDP super-packets: the UDP
// sockets beside them should segment and coalesce too.
func (k Kind) Offloads() bool { return k == Offload || k == CopyingOffload }

// Link is a configured TUN device and its queues.
type Link struct {
	Queues  []Device
	kind    Kind
	refused error
	name    string
	index   int
	route   *netlink.Route
	keep    bool
}

// Create makes the device with one queue per worker, sets its MTU and
// address, brings it up and routes the Network through it, all over netlink.
// A device of that name must not exist, unless it is a TUN device kept by
// an earlier run (Keep) that nothing reads: another weftd or flanneld may
// own any other. Create adopts such a device, and leaves it persistent only
// if Keep is set again. On error, Create removes whatever it made.
func Create(cfg Config) (l *Link, err error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	adopted := false
	if old, err := netlink.LinkByName(cfg.Name); err == nil {
		if !idleKeptTUN(old) {
			return nil, fmt.Errorf("tun %s: a device of that name already exists (another weftd or flanneld running?)", cfg.Name)
		}
		adopted = true
	}
	l = &Link{name: cfg.Name}
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	l.kind = cfg.Kind
	for range cfg.Queues {
		q, err := openQueue(cfg.Name, l.kind, cfg.Batch, cfg.BusyPoll)
		if err != nil && l.Queues == nil && cfg.FallBack && l.kind != Plain {
			l.refused = err
			l.kind = Plain
			q, err = openQueue(cfg.Name, l.kind, cfg.Batch, cfg.BusyPoll)
		}
		if err != nil {
			return nil, fmt.Errorf("tun %s: %w", cfg.Name, err)
		}
		l.Queues = append(l.Queues, q)
	}
	link, err := netlink.LinkByName(cfg.Name)
	if err != nil {
		return nil, fmt.Errorf("tun %s: %w", cfg.Name, err)
	}
	l.index = link.Attrs().Index
	if err := netlink.LinkSetMTU(link, cfg.MTU); err != nil {
		return nil, fmt.Errorf("tun %s: set mtu %d: %w", cfg.Name, cfg.MTU, err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: cfg.Addr.AsSlice(), Mask: net.CIDRMask(32, 32)}}
	route := &netlink.Route{
		LinkIndex: l.index,
		Dst:       &net.IPNet{IP: cfg.Network.Addr().AsSlice(), Mask: net.CIDRMask(cfg.Network.Bits(), 32)},
		Scope:     netlink.SCOPE_UNIVERSE,
	}
	if adopted {
		// What the earlier run left may name another subnet or network.
		if err := clearExcept(link, addr, route); err != nil {
			return nil, fmt.Errorf("tun %s: %w", cfg.Name, err)
		}
	}
	if err := netlink.AddrReplace(link, addr); err != nil {
		return nil, fmt.Errorf("tun %s: add address %v: %w", cfg.Name, cfg.Addr, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("tun %s: set up: %w", cfg.Name, err)
	}
	if err := netlink.RouteReplace(route); err != nil {
		return nil, fmt.Errorf("tun %s: add route %v: %w", cfg.Name, cfg.Network, err)
	}
	l.route = route
	// Last, so that an error above never leaves a device of ours behind.
	if cfg.Keep || adopted {
		if err := setPersist(l.Queues[0], cfg.Keep); err != nil {
			return nil, fmt.Errorf("tun %s: TUNSETPERSIST: %w", cfg.Name, err)
		}
	}
	l.keep = cfg.Keep
	return l, nil
}

// openQueue attaches one more queue of kind to the device name.
func openQueue(name string, kind Kind, batch int, busyPoll time.Duration) (Device, error) {
	switch kind {
	case Offload:
		q, err := openVnetQueue(name, batch)
		if err != nil {
			return nil, err
		}
		q.poll = busypoll.New(busyPoll)
		return q, nil
	case CopyingOffload:
		return openOffloadQueue(name)
	}
	// Each water.New with the same name and MultiQueue attaches one more
	// queue to the device. Unless kept, it is not persistent: the device
	// goes away when the last queue is closed, also if weftd dies.
	ifce, err := water.New(water.Config{
		DeviceType:             water.TUN,
		PlatformSpecificParams: water.PlatformSpecificParams{Name: name, MultiQueue: true},
	})
	if err != nil {
		return nil, fmt.Errorf("open queue: %w", err)
	}
	f, ok := ifce.ReadWriteCloser.(*os.File)
	if !ok {
		ifce.Close()
		return nil, fmt.Errorf("unexpected device type %T", ifce.ReadWriteCloser)
	}
	q, err := newQueue(f, batch)
	if err != nil {
		f.Close()
		return nil, err
	}
	q.poll = busypoll.New(busyPoll)
	return q, nil
}

// idleKeptTUN reports whether link is a persistent multi-queue TUN device
// with no queue attached: one an earlier run kept, that nothing reads now.
func idleKeptTUN(link netlink.Link) bool {
	t, ok := link.(*netlink.Tuntap)
	return ok && t.Mode == netlink.TUNTAP_MODE_TUN && !t.NonPersist &&
		t.Flags&netlink.TUNTAP_MULTI_QUEUE != 0 && t.Queues == 0 && t.DisabledQueues == 0
}

// clearExcept removes from link the IPv4 addresses other than addr and the
// routes of the main table other than route.
func clearExcept(link netlink.Link, addr *netlink.Addr, route *netlink.Route) error {
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if a.IPNet.String() != addr.IPNet.String() {
			if err := netlink.AddrDel(link, &a); err != nil {
				return fmt.Errorf("delete address %v: %w", a.IPNet, err)
			}
		}
	}
	routes, err := netlink.RouteList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst == nil || r.Dst.String() == route.Dst.String() || r.Protocol == unix.RTPROT_KERNEL {
			continue
		}
		if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("delete route %v: %w", r.Dst, err)
		}
	}
	return nil
}

// setPersist sets or clears the device's persistence through one of its
// queues (the flag belongs to the device, not the queue).
func setPersist(q Device, on bool) error {
	v := 0
	if on {
		v = 1
	}
	raw, err := q.SyscallConn()
	if err != nil {
		return err
	}
	var ierr error
	if err := raw.Control(func(fd uintptr) { ierr = unix.IoctlSetInt(int(fd), unix.TUNSETPERSIST, v) }); err != nil {
		return err
	}
	return ierr
}

func (c Config) check() error {
	switch {
	case c.Name == "" || len(c.Name) >= unix.IFNAMSIZ:
		return fmt.Errorf("tun: bad device name %q (1 to %d bytes)", c.Name, unix.IFNAMSIZ-1)
	case c.Queues < 1:
		return fmt.Errorf("tun %s: %d queues, need at least 1", c.Name, c.Queues)
	case c.MTU < 68 || c.MTU > 65535:
		return fmt.Errorf("tun %s: MTU %d out of range 68-65535", c.Name, c.MTU)
	case !c.Addr.Is4():
		return fmt.Errorf("tun %s: address %v is not IPv4", c.Name, c.Addr)
	case !c.Network.Addr().Is4() || c.Network != c.Network.Masked():
		return fmt.Errorf("tun %s: network %v is not a masked IPv4 prefix", c.Name, c.Network)
	case c.Batch < 1:
		return fmt.Errorf("tun %s: batch %d below 1", c.Name, c.Batch)
	case c.Kind != Plain && c.Kind != Offload && c.Kind != CopyingOffload:
		return fmt.Errorf("tun %s: unknown kind %v", c.Name, c.Kind)
	}
	return nil
}

// Name is the device's name.
func (l *Link) Name() string { return l.name }

// Kind is the kind of queues Create opened: Config.Kind, or Plain if the
// kernel refused the offloads and Config.FallBack allowed that.
func (l *Link) Kind() Kind { return l.kind }

// Refused is why the kernel refused the offloads Config.Kind asked for, if
// Create fell back to Plain queues; nil otherwise.
func (l *Link) Refused() error { return l.refused }

// Close removes the route, closes every queue, and so removes the device
// (it is not persistent); a kept device (Config.Keep) stays, with its
// address and route, only its queues closed. It is safe to call more than once.
func (l *Link) Close() error {
	var errs []error
	if l.route != nil && !l.keep {
		if err := netlink.RouteDel(l.route); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("tun %s: delete route: %w", l.name, err))
		}
		l.route = nil
	}
	for _, q := range l.Queues {
		if err := q.Close(); err != nil {
			errs = append(errs, fmt.Errorf("tun %s: close queue: %w", l.name, err))
		}
	}
	l.Queues = nil
	return errors.Join(errs...)
}
