//go:build !amd64 || purego

package ipv4

// eachLoop calls f once: sumLE has one loop here.
func eachLoop(f func(loop string)) { f("") }
