package bench

import (
	"bytes"
	"fmt"
	"strconv"
)

// userHZ is the unit of the tick counts in /proc/stat and /proc/PID/stat.
// The kernel fixes it at 100 for user space on every architecture Linux
// runs weft on, whatever CONFIG_HZ is.
const userHZ = 100

// parseProcPIDStat returns utime+stime, in ticks, from /proc/PID/stat. The
// command name in parentheses may hold spaces and ')' itself, so fields are
// counted from the last ')'.
func parseProcPIDStat(data []byte) (uint64, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("proc stat: no ')' in %q", data)
	}
	f := bytes.Fields(data[i+1:])
	// After the name: state(3) ppid(4) ... utime(14) stime(15), so utime is
	// the 12th field and stime the 13th.
	if len(f) < 13 {
		return 0, fmt.Errorf("proc stat: %d fields after the name", len(f))
	}
	ut, err := strconv.ParseUint(string(f[11]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("proc stat utime: %w", err)
	}
	st, err := strconv.ParseUint(string(f[12]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("proc stat stime: %w", err)
	}
	return ut + st, nil
}

// parseProcStatSoftirq returns the softirq ticks of all CPUs from the first
// line of /proc/stat: "cpu user nice system idle iowait irq softirq ...".
func parseProcStatSoftirq(data []byte) (uint64, error) {
	line, _, _ := bytes.Cut(data, []byte{'\n'})
	f := bytes.Fields(line)
	if len(f) < 8 || string(f[0]) != "cpu" {
		return 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	v, err := strconv.ParseUint(string(f[7]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("/proc/stat softirq: %w", err)
	}
	return v, nil
}

// cpuSample is the CPU counters at one instant, in ticks.
type cpuSample struct {
	daemons uint64 // utime+stime of the forwarding daemons
	softirq uint64 // softirq time of the whole machine
}

// cpuCost is CPU seconds per GB (1e9 bytes) moved between two samples.
func cpuCost(ticks uint64, bytes int64) float64 {
	if bytes <= 0 {
		return 0
	}
	return float64(ticks) / userHZ / (float64(bytes) / 1e9)
}
