package netlab

import (
	"bytes"
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

// stdoutOf runs one command and returns only what it wrote to stdout, for
// output that is parsed. Tools print diagnostics to stderr that have nothing
// to do with the question asked (iproute2 complains about other namespaces
// being added or deleted while it lists links), so stderr only ever goes
// into the error.
func stdoutOf(ctx context.Context, name string, args ...string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %v: %w: %s", name, args, err, trimOutput(append(stderr.Bytes(), stdout.Bytes()...)))
	}
	return stdout.Bytes(), nil
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
