//go:build !linux

package busypoll

import "runtime"

// yield gives the CPU to another goroutine ready to run, if any.
func yield() { runtime.Gosched() }
