package control

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func TestFrameRoundTrip(t *testing.T) {
	now := time.Unix(1700000000, 123456789)
	sent := []Packet{
		{Stage: "tun-in", Time: now, Length: 28, Data: pingOut},
		{Stage: "wire-out", Time: now.Add(time.Microsecond), Wire: true, Length: 1500, Data: bytes.Repeat([]byte{9}, 96)},
		{Stage: "drop", Reason: "spoofed-source", Time: now, Wire: true, Length: 56, Data: append(make([]byte, 28), webIn...)},
		{Stage: "tun-out", Time: now, Length: 0, Data: nil},
	}
	var buf bytes.Buffer
	var scratch []byte
	for i := range sent {
		var err error
		if scratch, err = WritePacket(&buf, &sent[i], scratch); err != nil {
			t.Fatal(err)
		}
	}
	end := DumpEnd{Packets: 4, Dropped: 2, Reason: "count"}
	if err := WriteEnd(&buf, end); err != nil {
		t.Fatal(err)
	}
	fr := NewFrameReader(&buf)
	for i, want := range sent {
		p, e, err := fr.Next()
		if err != nil || e != nil {
			t.Fatalf("frame %d: %v, end %v", i, err, e)
		}
		if p.Stage != want.Stage || p.Reason != want.Reason || !p.Time.Equal(want.Time) || p.Wire != want.Wire || p.Length != want.Length || !bytes.Equal(p.Data, want.Data) {
			t.Errorf("frame %d: %+v, want %+v", i, p, want)
		}
	}
	p, e, err := fr.Next()
	if err != nil || p != nil || e == nil || *e != end {
		t.Fatalf("end: %v %v %v, want %+v", p, e, err, end)
	}
	if _, _, err := fr.Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("after the end: %v, want unexpected EOF", err)
	}
}

func TestWritePacketRefuses(t *testing.T) {
	for _, p := range []Packet{
		{Stage: "egress"},
		{Stage: "drop", Reason: strings.Repeat("x", 256)},
		{Stage: "tun-in", Data: make([]byte, MaxFrame)},
	} {
		if _, err := WritePacket(io.Discard, &p, nil); err == nil {
			t.Errorf("WritePacket accepted stage %q, %d reason bytes, %d data bytes", p.Stage, len(p.Reason), len(p.Data))
		}
	}
}

func TestFrameErrors(t *testing.T) {
	frame := func(body []byte) []byte {
		b := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
		return append(b, body...)
	}
	good := make([]byte, packetHeader)
	good[0] = kindPacket
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"cut in the length", []byte{0, 0}, "unexpected EOF"},
		{"zero length", []byte{0, 0, 0, 0}, "length 0 out of range"},
		{"huge length", []byte{0xff, 0, 0, 0}, "out of range"},
		{"cut in the body", frame(good)[:10], "unexpected EOF"},
		{"unknown kind", frame([]byte{'Z'}), "unknown kind"},
		{"short header", frame(good[:5]), "packet header cut short"},
		{"bad stage", frame(append([]byte{kindPacket, 9}, good[2:]...)), "unknown stage 9"},
		{"reason beyond", frame(append([]byte{kindPacket, 0, 0, 9}, good[4:]...)), "reason of 9 bytes beyond"},
		{"length below data", frame(append(append([]byte(nil), good...), 1, 2)), "length 0 below the 2 bytes"},
		{"bad end", frame([]byte("E{")), "frame: end"},
	} {
		_, _, err := NewFrameReader(bytes.NewReader(tc.in)).Next()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// FuzzParseFrame: the CLI parses what comes over the socket; no frame panics it.
func FuzzParseFrame(f *testing.F) {
	var buf bytes.Buffer
	WritePacket(&buf, &Packet{Stage: "drop", Reason: "unknown-peer", Wire: true, Length: 40, Data: pingOut}, nil)
	f.Add(buf.Bytes()[frameHeader:])
	f.Add([]byte(`E{"packets":1}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		p, end, err := ParseFrame(body)
		if err == nil && (p == nil) == (end == nil) {
			t.Fatal("want exactly one of a packet and an end")
		}
		if p != nil && p.Length < len(p.Data) {
			t.Fatal("length below the data")
		}
	})
}
