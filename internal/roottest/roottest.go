// Package roottest holds the one rule for tests that need root (network
// namespaces, TUN devices, nftables): they run as root; otherwise they skip
// with a message saying so, except under CI=true, where a skip would hide
// that the test never ran, so they fail.
package roottest

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// NeedRoot applies the rule to t, and as root fails t unless every program
// in tools (such as "ip") is on PATH: a root test with a tool missing is a
// broken machine, not a reason to skip.
func NeedRoot(t testing.TB, tools ...string) {
	t.Helper()
	need(t, os.Geteuid() == 0, os.Getenv("CI") == "true", tools)
}

func need(t testing.TB, root, ci bool, tools []string) {
	t.Helper()
	if !root {
		if ci {
			t.Fatal("this test needs root (network namespaces, devices, firewall rules), and CI=true forbids skipping it")
		}
		t.Skip("this test needs root (network namespaces, devices, firewall rules): run it as root, e.g. sudo go test ./...")
	}
	var missing []string
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("this test needs %s on PATH", strings.Join(missing, ", "))
	}
}
