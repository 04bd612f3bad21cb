//go:build (!amd64 && !arm64) || purego

package ipv4

// sumLE is the unfolded one's-complement sum of b in little-endian words;
// see sumLEGeneric. The purego tag builds this one on amd64 and arm64 too.
func sumLE(b []byte) uint64 { return sumLEGeneric(b) }
