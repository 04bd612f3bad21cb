package tun

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/songgao/water"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Config describes the TUN device weft forwards through, set up as flanneld
// sets up flannel0.
type Config struct {
	Name    string       // device name, e.g. "flannel0"
	Queues  int          // one per worker (IFF_MULTI_QUEUE)
	MTU     int          // the underlay's MTU minus the encapsulation overhead
	Addr    netip.Addr   // the host subnet's network address, put on the device as a /32
	Network netip.Prefix // the whole overlay, routed into the device
	Batch   int          // most packets per Read on a plain device
	// Offload opens the queues with a virtio-net header and TCP/UDP
	// segmentation offloads. Create fails if the kernel refuses.
	Offload bool
	// ZeroCopy, with Offload, opens weft's own offloading queues, which hand
	// super-packets over uncut (GSOReader) and coalesce writes without
	// copying, instead of wireguard-go's, which copy segments on read and
	// payloads on write.
	ZeroCopy bool
}

// Link is a configured TUN device and its queues.
type Link struct {
	Queues []Device
	name   string
	index  int
	route  *netlink.Route
}

// Create makes the device with one queue per worker, sets its MTU and
// address, brings it up and routes the Network through it, all over netlink.
// A device of that name must not exist: another weftd or flanneld may own it.
// On error, Create removes whatever it made.
func Create(cfg Config) (l *Link, err error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if _, err := netlink.LinkByName(cfg.Name); err == nil {
		return nil, fmt.Errorf("tun %s: a device of that name already exists (another weftd or flanneld running?)", cfg.Name)
	}
	l = &Link{name: cfg.Name}
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	for range cfg.Queues {
		if cfg.Offload && cfg.ZeroCopy {
			q, err := openVnetQueue(cfg.Name, cfg.Batch)
			if err != nil {
				return nil, fmt.Errorf("tun %s: %w", cfg.Name, err)
			}
			l.Queues = append(l.Queues, q)
			continue
		}
		if cfg.Offload {
			q, err := openOffloadQueue(cfg.Name)
			if err != nil {
				return nil, fmt.Errorf("tun %s: %w", cfg.Name, err)
			}
			l.Queues = append(l.Queues, q)
			continue
		}
		// Each water.New with the same name and MultiQueue attaches one more
		// queue to the device. It is not persistent: the device goes away
		// when the last queue is closed, also if weftd dies.
		ifce, err := water.New(water.Config{
			DeviceType:             water.TUN,
			PlatformSpecificParams: water.PlatformSpecificParams{Name: cfg.Name, MultiQueue: true},
		})
		if err != nil {
			return nil, fmt.Errorf("tun %s: open queue: %w", cfg.Name, err)
		}
		f, ok := ifce.ReadWriteCloser.(*os.File)
		if !ok {
			ifce.Close()
			return nil, fmt.Errorf("tun %s: unexpected device type %T", cfg.Name, ifce.ReadWriteCloser)
		}
		q, err := newQueue(f, cfg.Batch)
		if err != nil {
			f.Close()
			return nil, err
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
	if err := netlink.AddrAdd(link, addr); err != nil {
		return nil, fmt.Errorf("tun %s: add address %v: %w", cfg.Name, cfg.Addr, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("tun %s: set up: %w", cfg.Name, err)
	}
	route := &netlink.Route{
		LinkIndex: l.index,
		Dst:       &net.IPNet{IP: cfg.Network.Addr().AsSlice(), Mask: net.CIDRMask(cfg.Network.Bits(), 32)},
		Scope:     netlink.SCOPE_UNIVERSE,
	}
	if err := netlink.RouteAdd(route); err != nil {
		return nil, fmt.Errorf("tun %s: add route %v: %w", cfg.Name, cfg.Network, err)
	}
	l.route = route
	return l, nil
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
	}
	return nil
}

// Name is the device's name.
func (l *Link) Name() string { return l.name }

// Close removes the route, closes every queue, and so removes the device
// (it is not persistent). It is safe to call more than once.
func (l *Link) Close() error {
	var errs []error
	if l.route != nil {
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
