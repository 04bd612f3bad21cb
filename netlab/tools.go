package netlab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
)

// debianPackage names the Debian package that ships each tool the lab's
// users run.
var debianPackage = map[string]string{
	"ip":      "iproute2",
	"bridge":  "iproute2",
	"ping":    "iputils-ping",
	"iperf3":  "iperf3",
	"ethtool": "ethtool",
}

// CheckTools reports which of the named programs are missing from PATH, with
// the Debian command that installs them.
func CheckTools(names ...string) error {
	var missing []string
	pkgs := map[string]bool{}
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			missing = append(missing, n)
			if p, ok := debianPackage[n]; ok {
				pkgs[p] = true
			} else {
				pkgs[n] = true
			}
		}
	}
	if len(missing) == 0 {
		return nil
	}
	list := make([]string, 0, len(pkgs))
	for p := range pkgs {
		list = append(list, p)
	}
	sort.Strings(list)
	return fmt.Errorf("missing %s: install with: apt-get install -y %s",
		strings.Join(missing, ", "), strings.Join(list, " "))
}

// ErrNotRoot is returned by CheckRoot.
var ErrNotRoot = errors.New("must run as root: network namespaces, veths and routes need CAP_NET_ADMIN and CAP_SYS_ADMIN")

// CheckRoot fails unless the process runs as root.
func CheckRoot() error {
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	return nil
}
