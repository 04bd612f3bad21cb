package version

import "testing"

func TestString(t *testing.T) {
	for _, tc := range []struct {
		in   Info
		want string
	}{
		{Info{Version: "v0.3.0", Commit: "abc", Go: "go1.26.8"}, "v0.3.0 commit abc go1.26.8"},
		{Info{Version: "v0.3.0-2-gabc-dirty", Commit: "abc", Modified: true, Go: "go1.26.8"}, "v0.3.0-2-gabc-dirty commit abc (modified) go1.26.8"},
		{Info{Version: "(devel)"}, "(devel)"},
	} {
		if got := tc.in.String(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestReadLinkTimeVersion(t *testing.T) {
	old := Version
	defer func() { Version = old }()
	Version = "v9.9.9-test"
	if got := Read().Version; got != "v9.9.9-test" {
		t.Errorf("Read().Version = %q, want the link-time one", got)
	}
	if got := Read().Go; got == "" {
		t.Error("Read().Go is empty: a test binary has build info")
	}
}
