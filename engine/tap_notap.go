//go:build weft_notap

package engine

// tapBuilt is false in this build: every tap call in the forwarding loops
// folds away, so that benchmarks measure the loops as if there were no tap.
const tapBuilt = false
