package netlab

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// Listening reports whether the network namespace of process pid has a TCP
// socket listening on port. Looking in /proc/PID/net/tcp, rather than
// connecting, leaves no stray connection for iperf3 to complain about.
func Listening(pid, port int) bool {
	f, err := os.Open(fmt.Sprintf("/proc/%d/net/tcp", pid))
	if err != nil {
		return false
	}
	defer f.Close()
	want := fmt.Sprintf(":%04X", port)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// "sl local_address rem_address st ...": st 0A is LISTEN.
		fs := strings.Fields(sc.Text())
		if len(fs) > 3 && strings.HasSuffix(fs[1], want) && fs[3] == "0A" {
			return true
		}
	}
	return false
}
