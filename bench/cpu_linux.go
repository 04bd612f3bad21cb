package bench

import (
	"fmt"
	"os"
)

// readCPU samples the daemons' CPU time and the machine's softirq time.
func readCPU(pids []int) (cpuSample, error) {
	var s cpuSample
	for _, pid := range pids {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return s, fmt.Errorf("daemon %d: %w", pid, err)
		}
		t, err := parseProcPIDStat(data)
		if err != nil {
			return s, fmt.Errorf("daemon %d: %w", pid, err)
		}
		s.daemons += t
	}
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s, err
	}
	s.softirq, err = parseProcStatSoftirq(data)
	return s, err
}
