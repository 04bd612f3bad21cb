package busypoll

import "golang.org/x/sys/unix"

// yield gives the CPU to another thread ready to run on it, if any
// (sched_yield(2)); it returns at once when there is none. RawSyscall: the
// call never blocks, so the Go scheduler need not hand this thread's P on.
func yield() { unix.RawSyscall(unix.SYS_SCHED_YIELD, 0, 0, 0) }
