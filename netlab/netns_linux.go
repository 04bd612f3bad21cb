package netlab

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// setSysctls writes /proc/sys values inside namespace ns. Files under
// /proc/sys/net belong to the network namespace of the thread that opens
// them, so the writes happen on a thread moved into ns; this needs no sysctl
// binary in the namespace.
func setSysctls(ns string, kv map[string]string) error {
	return onThreadInNS(ns, func() error {
		for k, v := range kv {
			p := filepath.Join("/proc/sys", k)
			if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
				return fmt.Errorf("netns %s: %w", ns, err)
			}
		}
		return nil
	})
}

// inNetNS runs fn on the current thread, which the caller has locked and
// will discard, with its network namespace switched to ns.
func inNetNS(ns string, fn func() error) error {
	target, err := unix.Open(filepath.Join("/run/netns", ns), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("netns %s: %w", ns, err)
	}
	defer unix.Close(target)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("netns %s: setns: %w", ns, err)
	}
	return fn()
}

// ListenUDP opens a UDP socket in namespace ns. A socket belongs for life to
// the namespace it was created in, so once made it can be used from any
// goroutine; this lets a caller run traffic endpoints in-process instead of
// starting helper processes.
func ListenUDP(ns string, laddr *net.UDPAddr) (*net.UDPConn, error) {
	var conn *net.UDPConn
	err := onThreadInNS(ns, func() error {
		var err error
		conn, err = net.ListenUDP("udp4", laddr)
		return err
	})
	return conn, err
}

// DialUDP opens a UDP socket in namespace ns connected to raddr.
func DialUDP(ns string, raddr *net.UDPAddr) (*net.UDPConn, error) {
	var conn *net.UDPConn
	err := onThreadInNS(ns, func() error {
		var err error
		conn, err = net.DialUDP("udp4", nil, raddr)
		return err
	})
	return conn, err
}

// onThreadInNS runs fn on a locked thread moved into namespace ns. The
// thread is never unlocked nor switched back: the runtime ends a thread whose
// goroutine exits still locked, so no other goroutine can ever run in the
// wrong namespace.
func onThreadInNS(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- inNetNS(ns, fn)
	}()
	return <-errc
}
