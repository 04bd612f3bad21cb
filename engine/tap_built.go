//go:build !weft_notap

package engine

// tapBuilt is false only in builds tagged weft_notap, which compile the tap
// out of the forwarding loops entirely: they exist to measure what the idle
// tap costs (see tap_bench_test.go), not to be shipped.
const tapBuilt = true
