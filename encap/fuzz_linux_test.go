package encap

import (
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// groCmsg builds the control message the kernel attaches to a UDP_GRO
// buffer: the segment size as a native uint16.
func groCmsg(seg uint16) []byte {
	b := make([]byte, unix.CmsgSpace(2))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = unix.SOL_UDP, unix.UDP_GRO
	h.SetLen(unix.CmsgLen(2))
	*(*uint16)(unsafe.Pointer(&b[unix.CmsgLen(0)])) = seg
	return b
}

func TestGROSegmentSize(t *testing.T) {
	other := make([]byte, unix.CmsgSpace(4))
	oh := (*unix.Cmsghdr)(unsafe.Pointer(&other[0]))
	oh.Level, oh.Type = unix.SOL_IP, unix.IP_TOS
	oh.SetLen(unix.CmsgLen(4))
	for _, tc := range []struct {
		name string
		oob  []byte
		want int
	}{
		{"none", nil, 0},
		{"segment size", groCmsg(1400), 1400},
		{"after another message", append(append([]byte(nil), other...), groCmsg(1472)...), 1472},
		{"cut short", groCmsg(1400)[:unix.SizeofCmsghdr+1], 0},
		{"garbage", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0, 0, 0, 0, 0}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := groSegmentSize(tc.oob); got != tc.want {
				t.Errorf("groSegmentSize = %d, want %d", got, tc.want)
			}
		})
	}
}

// FuzzGROSegmentSize: whatever the control bytes, no panic and no size
// outside a uint16.
func FuzzGROSegmentSize(f *testing.F) {
	f.Add(groCmsg(1400))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, oob []byte) {
		if n := groSegmentSize(oob); n < 0 || n > 65535 {
			t.Fatalf("segment size %d", n)
		}
	})
}
