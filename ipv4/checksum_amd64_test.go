//go:build !purego

package ipv4

// eachLoop calls f with each loop sumLE can take on this machine, named:
// the ADCQ chain, and the AVX2 one if the CPU has it.
func eachLoop(f func(loop string)) {
	saved := useAVX2
	defer func() { useAVX2 = saved }()
	if saved {
		f("avx2")
	}
	useAVX2 = false
	f("adc")
}
