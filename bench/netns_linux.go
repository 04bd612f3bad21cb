package bench

import (
	"fmt"
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
	errc := make(chan error, 1)
	go func() {
		// The thread is never unlocked and never switched back: the runtime
		// ends a thread that exits still locked, so no other goroutine can
		// ever run in the wrong namespace.
		runtime.LockOSThread()
		errc <- inNetNS(ns, func() error {
			for k, v := range kv {
				p := filepath.Join("/proc/sys", k)
				if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
					return fmt.Errorf("netns %s: %w", ns, err)
				}
			}
			return nil
		})
	}()
	return <-errc
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
