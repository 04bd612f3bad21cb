package roottest

import (
	"fmt"
	"strings"
	"testing"
)

// verdict records what need did to a test instead of doing it.
type verdict struct {
	testing.TB
	outcome string // "", "fatal" or "skip"
	msg     string
}

func (v *verdict) Helper() {}
func (v *verdict) Fatal(args ...any) {
	v.outcome, v.msg = "fatal", fmt.Sprint(args...)
	panic(v)
}
func (v *verdict) Fatalf(format string, args ...any) {
	v.outcome, v.msg = "fatal", fmt.Sprintf(format, args...)
	panic(v)
}
func (v *verdict) Skip(args ...any) {
	v.outcome, v.msg = "skip", fmt.Sprint(args...)
	panic(v)
}

// run calls need and catches the panic that stands in for runtime.Goexit.
func run(root, ci bool, tools ...string) (v *verdict) {
	v = &verdict{}
	defer func() {
		if r := recover(); r != nil && r != any(v) {
			panic(r)
		}
	}()
	need(v, root, ci, tools)
	return v
}

func TestNeed(t *testing.T) {
	tests := []struct {
		name    string
		root    bool
		ci      bool
		tools   []string
		outcome string
		msgHas  string
	}{
		{"not root: skip", false, false, nil, "skip", "needs root"},
		{"not root under CI: fail", false, true, nil, "fatal", "CI=true"},
		{"root", true, false, []string{"sh"}, "", ""},
		{"root under CI", true, true, nil, "", ""},
		{"root, tool missing: fail", true, false, []string{"sh", "weft-no-such-tool"}, "fatal", "weft-no-such-tool"},
		{"not root, tool missing: skip", false, false, []string{"weft-no-such-tool"}, "skip", "needs root"},
	}
	for _, tt := range tests {
		v := run(tt.root, tt.ci, tt.tools...)
		if v.outcome != tt.outcome || !strings.Contains(v.msg, tt.msgHas) {
			t.Errorf("%s: got %q %q, want %q containing %q", tt.name, v.outcome, v.msg, tt.outcome, tt.msgHas)
		}
	}
}
