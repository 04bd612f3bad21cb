package bench

import (
	"context"
	"fmt"
	"os/exec"
)

// runCmd runs one command and returns its combined output; the error names
// the command and carries the output.
func runCmd(ctx context.Context, name string, args ...string) ([]byte, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s %v: %w: %s", name, args, err, trimOutput(out))
	}
	return out, nil
}

// trimOutput keeps an error message readable when a tool prints a lot.
func trimOutput(b []byte) string {
	const max = 2048
	if len(b) > max {
		b = append(b[:max:max], "..."...)
	}
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return string(b)
}
