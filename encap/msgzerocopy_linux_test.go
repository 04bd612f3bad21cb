package encap

import (
	"errors"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// BenchmarkSendSuperDatagram measures what MSG_ZEROCOPY would buy weft's
// sends (a lever is kept only if it wins): one 64 KiB UDP_SEGMENT send of
// 44 datagrams of 1472 bytes, copied into the kernel as weft sends today,
// against the same send with MSG_ZEROCOPY, which pins the pages instead and
// must wait for the kernel's completion on the error queue before the
// buffer is used again (weft reuses its TUN read buffers batch after
// batch). The receiver is another socket of this host, as a pod's peer is
// in weft's namespaces and on any host where the datagram is delivered
// locally: there the kernel copies zero-copy pages anyway when it queues
// them to the receiving socket.
func BenchmarkSendSuperDatagram(b *testing.B) {
	for _, zc := range []bool{false, true} {
		name := "copy"
		if zc {
			name = "msg_zerocopy"
		}
		b.Run(name, func(b *testing.B) { benchSuperSend(b, zc) })
	}
}

func benchSuperSend(b *testing.B, zeroCopy bool) {
	const seg, segs = 1472, 44
	rfd, port := benchSocket(b)
	if err := unix.SetsockoptInt(rfd, unix.SOL_UDP, unix.UDP_GRO, 1); err != nil {
		b.Skipf("UDP_GRO: %v", err)
	}
	unix.SetsockoptInt(rfd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20)
	done := make(chan struct{})
	go func() { // drain, so that the receiver's copy happens as in weft
		defer close(done)
		buf := make([]byte, 1<<16)
		for {
			n, _, err := unix.Recvfrom(rfd, buf, 0)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil || n == 0 { // 0: shut down
				return
			}
		}
	}()
	sfd, _ := benchSocket(b)
	if zeroCopy {
		if err := unix.SetsockoptInt(sfd, unix.SOL_SOCKET, unix.SO_ZEROCOPY, 1); err != nil {
			b.Skipf("SO_ZEROCOPY: %v", err)
		}
	}
	payload := make([]byte, seg*segs)
	oob := make([]byte, unix.CmsgSpace(2))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	*(*uint16)(unsafe.Pointer(&oob[unix.CmsgLen(0)])) = seg
	to := &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: port}
	flags := 0
	if zeroCopy {
		flags = unix.MSG_ZEROCOPY
	}
	errq := make([]byte, 128)
	copied := 0
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		if err := unix.Sendmsg(sfd, payload, oob, to, flags); err != nil {
			if errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.EAGAIN) {
				continue
			}
			b.Fatal(err)
		}
		if !zeroCopy {
			continue
		}
		// The buffer is the next batch's: wait until the kernel lets go.
		for {
			_, oobn, _, _, err := unix.Recvmsg(sfd, nil, errq, unix.MSG_ERRQUEUE)
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				b.Fatal(err)
			}
			if zeroCopyCopied(errq[:oobn]) {
				copied++
			}
			break
		}
	}
	b.StopTimer()
	if zeroCopy {
		b.ReportMetric(float64(copied)/float64(b.N), "kernel-copied/op")
	}
	unix.Shutdown(rfd, unix.SHUT_RDWR)
	<-done
}

// zeroCopyCopied reports whether a MSG_ZEROCOPY completion says the kernel
// copied the data after all (SO_EE_CODE_ZEROCOPY_COPIED).
func zeroCopyCopied(oob []byte) bool {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return false
	}
	for _, m := range msgs {
		if len(m.Data) >= int(unsafe.Sizeof(unix.SockExtendedErr{})) {
			ee := (*unix.SockExtendedErr)(unsafe.Pointer(&m.Data[0]))
			if ee.Origin == unix.SO_EE_ORIGIN_ZEROCOPY && ee.Code&1 != 0 {
				return true
			}
		}
	}
	return false
}

// benchSocket opens a blocking UDP socket on 127.0.0.1, closed at the end.
func benchSocket(b *testing.B) (fd, port int) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		b.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		b.Fatal(err)
	}
	return fd, sa.(*unix.SockaddrInet4).Port
}
