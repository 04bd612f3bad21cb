package control

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestParseRequest(t *testing.T) {
	for _, tc := range []struct {
		line string
		want string // "" accepts; else a part of the error
	}{
		{`{"op":"status"}`, ""},
		{`{"op":"routes"}` + "\n", ""},
		{`{"op":"dump"}`, ""},
		{`{"op":"dump","dump":{"stages":["tun-in","drop"],"filter":"icmp and host 100.96.2.2","count":10,"duration_ms":5000,"snaplen":96}}`, ""},
		{`  {"op":"status"}  `, ""},

		{``, "request: EOF"},
		{`status`, "request: invalid character"},
		{`{"op":"status"`, "request: unexpected EOF"},
		{`{}`, `request: no "op"`},
		{`{"op":"reboot"}`, `unknown op "reboot"`},
		{`{"op":"status","dump":{}}`, `"status" takes no dump options`},
		{`{"op":"status","verbose":true}`, `unknown field "verbose"`},
		{`{"op":"status"}{"op":"routes"}`, "more than one JSON value"},
		{`{"op":"dump","dump":{"stages":["tun-in","tun-in"]}}`, `stage "tun-in" given twice`},
		{`{"op":"dump","dump":{"stages":["egress"]}}`, `unknown stage "egress"`},
		{`{"op":"dump","dump":{"count":-1}}`, "count -1 out of range"},
		{`{"op":"dump","dump":{"duration_ms":-5}}`, "duration -5 ms out of range"},
		{`{"op":"dump","dump":{"snaplen":70000}}`, "snaplen 70000 out of range"},
		{`{"op":"dump","dump":{"filter":"hots x"}}`, "filter: column 1"},
		{`{"op":"dump","dump":{"count":"ten"}}`, "cannot unmarshal string"},
		{`[1,2]`, "cannot unmarshal array"},
	} {
		req, err := ParseRequest([]byte(tc.line))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("ParseRequest(%s): %v", tc.line, err)
		case tc.want != "" && err == nil:
			t.Errorf("ParseRequest(%s) accepted: %+v", tc.line, req)
		case tc.want != "" && !strings.Contains(err.Error(), tc.want):
			t.Errorf("ParseRequest(%s) = %q, want it to contain %q", tc.line, err, tc.want)
		}
	}
}

func TestParseDumpRequest(t *testing.T) {
	req, err := ParseRequest([]byte(`{"op":"dump","dump":{"stages":["wire-in"],"filter":"udp","count":3,"duration_ms":1500}}`))
	if err != nil {
		t.Fatal(err)
	}
	d := req.Dump
	if d.Count != 3 || d.Duration() != 1500*time.Millisecond || d.ParsedFilter() == nil || d.ParsedFilter().String() != "udp" {
		t.Errorf("parsed %+v", d)
	}
	// A dump without options takes everything.
	req, err = ParseRequest([]byte(`{"op":"dump"}`))
	if err != nil || req.Dump == nil || !req.Dump.ParsedFilter().Match(pingOut, peer1, peer2) {
		t.Errorf("bare dump: %+v, %v", req, err)
	}
}

func TestReadRequest(t *testing.T) {
	long := `{"op":"dump","dump":{"filter":"` + strings.Repeat(" ", MaxRequest) + `"}}`
	for _, tc := range []struct{ in, want string }{
		{"{\"op\":\"status\"}\n and what follows is not read", ""},
		{`{"op":"routes"}`, ""}, // the client closed its side instead of a newline
		{"\n", "request: empty"},
		{"", "request: empty"},
		{long + "\n", "longer than"},
		{long, "longer than"},
	} {
		_, err := ReadRequest(strings.NewReader(tc.in))
		if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ReadRequest(%.40q) = %v, want %q", tc.in, err, tc.want)
		}
	}
}

// FuzzParseRequest is the control socket's parser of untrusted bytes: it
// must never panic, and what it accepts must be a request weftd can serve,
// which survives a round trip through JSON.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		`{"op":"status"}`,
		`{"op":"routes"}`,
		`{"op":"dump","dump":{"stages":["tun-in","wire-out","wire-in","tun-out","drop"],"filter":"not (icmp or port 53)","count":1,"duration_ms":1,"snaplen":1}}`,
		`{"op":"dump","dump":{"filter":"src net 10.0.0.0/8 && !tcp"}}`,
		`{"op":1}`, `{"op":"dump","dump":null}`, `null`, `{"op":"dump","dump":{"stages":null}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		req, err := ParseRequest(line)
		if err != nil {
			if req != nil {
				t.Fatal("a request and an error")
			}
			return
		}
		switch req.Op {
		case OpStatus, OpRoutes:
			if req.Dump != nil {
				t.Fatal("dump options accepted for", req.Op)
			}
		case OpDump:
			if req.Dump == nil || req.Dump.ParsedFilter() == nil {
				t.Fatal("dump without parsed options")
			}
			req.Dump.ParsedFilter().Match(line, peer1, peer2)
		default:
			t.Fatalf("op %q accepted", req.Op)
		}
		js, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseRequest(js)
		if err != nil {
			t.Fatalf("accepted %q, but not its re-encoding %s: %v", line, js, err)
		}
		js2, _ := json.Marshal(again)
		if !bytes.Equal(js, js2) {
			t.Fatalf("round trip changed %s to %s", js, js2)
		}
		// ReadRequest reads the same line the same way.
		if _, err := ReadRequest(bytes.NewReader(append(bytes.ReplaceAll(js, []byte("\n"), nil), '\n'))); err != nil {
			t.Fatalf("ReadRequest refused %s: %v", js, err)
		}
	})
}
