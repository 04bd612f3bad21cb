package control

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
)

// MaxRequest bounds a request line: the longest filter and every stage
// fit many times over.
const MaxRequest = 8 << 10

// Limits of a dump request, to refuse nonsense with a message rather than
// run it.
const (
	maxCount    = 1 << 30
	maxDuration = 7 * 24 * 3600 * 1000 // a week, in milliseconds
	maxSnaplen  = 65535
)

// ReadRequest reads one request line from r and parses it. It reads at
// most MaxRequest bytes, never waits for more than the line.
func ReadRequest(r io.Reader) (*Request, error) {
	br := bufio.NewReaderSize(io.LimitReader(r, MaxRequest+1), MaxRequest+1)
	line, err := br.ReadSlice('\n')
	switch {
	case len(line) > MaxRequest:
		return nil, fmt.Errorf("request: longer than %d bytes", MaxRequest)
	case err != nil && !errors.Is(err, io.EOF):
		return nil, fmt.Errorf("request: %w", err)
	case len(bytes.TrimSpace(line)) == 0:
		return nil, errors.New("request: empty")
	}
	return ParseRequest(line)
}

// ParseRequest decodes one request (a JSON object) and checks it: the
// operation is known, a dump's stages and filter are valid and its limits
// in range. Unknown fields are errors, so that a typo is not ignored.
func ParseRequest(line []byte) (*Request, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	var req Request
	if err := dec.Decode(&req); err != nil {
		return nil, fmt.Errorf("request: %w", err)
	}
	if rest := bytes.TrimSpace(line[dec.InputOffset():]); len(rest) > 0 {
		return nil, errors.New("request: more than one JSON value on the line")
	}
	switch req.Op {
	case OpStatus, OpRoutes:
		if req.Dump != nil {
			return nil, fmt.Errorf("request: %q takes no dump options", req.Op)
		}
	case OpDump:
		if req.Dump == nil {
			req.Dump = &DumpRequest{}
		}
		if err := req.Dump.check(); err != nil {
			return nil, err
		}
	case "":
		return nil, errors.New(`request: no "op"`)
	default:
		return nil, fmt.Errorf("request: unknown op %q (want %s, %s or %s)", req.Op, OpStatus, OpRoutes, OpDump)
	}
	return &req, nil
}

func (d *DumpRequest) check() error {
	seen := map[string]bool{}
	for _, s := range d.Stages {
		if !slices.Contains(StageNames, s) {
			return fmt.Errorf("dump: unknown stage %q (want one of %v)", s, StageNames)
		}
		if seen[s] {
			return fmt.Errorf("dump: stage %q given twice", s)
		}
		seen[s] = true
	}
	if d.Count < 0 || d.Count > maxCount {
		return fmt.Errorf("dump: count %d out of range 0-%d", d.Count, maxCount)
	}
	if d.DurationMS < 0 || d.DurationMS > maxDuration {
		return fmt.Errorf("dump: duration %d ms out of range 0-%d", d.DurationMS, maxDuration)
	}
	if d.Snaplen < 0 || d.Snaplen > maxSnaplen {
		return fmt.Errorf("dump: snaplen %d out of range 0-%d", d.Snaplen, maxSnaplen)
	}
	f, err := ParseFilter(d.Filter)
	if err != nil {
		return err
	}
	d.filter = f
	return nil
}
