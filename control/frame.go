package control

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// After a dump's answer, the daemon sends frames: a 4-byte big-endian
// length, then that many bytes, the first of which says what the frame is:
//
//	'P' a packet: stage (1 byte, an index into StageNames), flags (1 byte:
//	    bit 0 = the data starts with outer IPv4/UDP headers), length of the
//	    drop reason (1 byte), capture time (8 bytes, Unix nanoseconds), the
//	    packet's full length (4 bytes), the reason, the data
//	'E' the end: a DumpEnd as JSON; nothing follows
//
// Fixed binary headers keep a busy dump cheap to write and to parse.

// StageNames are the stages of the data path a dump can capture, as a
// packet meets them from pod to pod.
var StageNames = []string{"tun-in", "wire-out", "wire-in", "tun-out", "drop"}

// Packet is one captured packet.
type Packet struct {
	Stage  string    // one of StageNames
	Reason string    // why it was dropped, at the drop stage
	Time   time.Time // when it was seen
	// Wire says Data starts with the outer IPv4 and UDP headers: the
	// packet was seen as a datagram.
	Wire bool
	// Length is the packet's full length; Data may hold fewer bytes.
	Length int
	Data   []byte
}

const (
	frameHeader  = 4
	packetHeader = 16 // kind, stage, flags, reason length, time, length
	// MaxFrame bounds a frame: a whole IPv4 packet behind outer headers,
	// with room for the header and a reason.
	MaxFrame = 1 << 17

	kindPacket = 'P'
	kindEnd    = 'E'
	flagWire   = 1
)

// WritePacket writes p as one frame. buf is scratch space, returned grown
// for the next call.
func WritePacket(w io.Writer, p *Packet, buf []byte) ([]byte, error) {
	stage := -1
	for i, n := range StageNames {
		if n == p.Stage {
			stage = i
		}
	}
	if stage < 0 {
		return buf, fmt.Errorf("frame: unknown stage %q", p.Stage)
	}
	if len(p.Reason) > 255 {
		return buf, fmt.Errorf("frame: reason longer than 255 bytes")
	}
	body := packetHeader + len(p.Reason) + len(p.Data)
	if body > MaxFrame {
		return buf, fmt.Errorf("frame: %d bytes, more than %d", body, MaxFrame)
	}
	buf = append(buf[:0], make([]byte, frameHeader+packetHeader)...)
	binary.BigEndian.PutUint32(buf, uint32(body))
	h := buf[frameHeader:]
	h[0], h[1], h[3] = kindPacket, byte(stage), byte(len(p.Reason))
	if p.Wire {
		h[2] = flagWire
	}
	binary.BigEndian.PutUint64(h[4:], uint64(p.Time.UnixNano()))
	binary.BigEndian.PutUint32(h[12:], uint32(p.Length))
	buf = append(buf, p.Reason...)
	buf = append(buf, p.Data...)
	_, err := w.Write(buf)
	return buf, err
}

// WriteEnd writes the frame that ends a dump.
func WriteEnd(w io.Writer, end DumpEnd) error {
	js, err := json.Marshal(end)
	if err != nil {
		return err
	}
	buf := make([]byte, frameHeader+1, frameHeader+1+len(js))
	binary.BigEndian.PutUint32(buf, uint32(1+len(js)))
	buf[frameHeader] = kindEnd
	_, err = w.Write(append(buf, js...))
	return err
}

// FrameReader reads a dump's frames.
type FrameReader struct {
	r   *bufio.Reader
	buf []byte
}

// NewFrameReader reads frames from r.
func NewFrameReader(r io.Reader) *FrameReader {
	return &FrameReader{r: bufio.NewReaderSize(r, 64<<10)}
}

// Next returns the next packet, or the dump's end. The packet's Data is
// valid until the next call. A stream that stops before its end frame is
// io.ErrUnexpectedEOF.
func (fr *FrameReader) Next() (*Packet, *DumpEnd, error) {
	var lb [frameHeader]byte
	if _, err := io.ReadFull(fr.r, lb[:]); err != nil {
		return nil, nil, noEOF(err)
	}
	n := int(binary.BigEndian.Uint32(lb[:]))
	if n < 1 || n > MaxFrame {
		return nil, nil, fmt.Errorf("frame: length %d out of range 1-%d", n, MaxFrame)
	}
	if cap(fr.buf) < n {
		fr.buf = make([]byte, n)
	}
	body := fr.buf[:n]
	if _, err := io.ReadFull(fr.r, body); err != nil {
		return nil, nil, noEOF(err)
	}
	p, end, err := ParseFrame(body)
	return p, end, err
}

// ParseFrame decodes one frame's body (after its length). A packet's Data
// points into body.
func ParseFrame(body []byte) (*Packet, *DumpEnd, error) {
	if len(body) == 0 {
		return nil, nil, errors.New("frame: empty")
	}
	switch body[0] {
	case kindEnd:
		var end DumpEnd
		if err := json.Unmarshal(body[1:], &end); err != nil {
			return nil, nil, fmt.Errorf("frame: end: %w", err)
		}
		return nil, &end, nil
	case kindPacket:
	default:
		return nil, nil, fmt.Errorf("frame: unknown kind %#02x", body[0])
	}
	if len(body) < packetHeader {
		return nil, nil, fmt.Errorf("frame: packet header cut short (%d bytes)", len(body))
	}
	stage, flags, rlen := int(body[1]), body[2], int(body[3])
	if stage >= len(StageNames) {
		return nil, nil, fmt.Errorf("frame: unknown stage %d", stage)
	}
	if packetHeader+rlen > len(body) {
		return nil, nil, fmt.Errorf("frame: reason of %d bytes beyond the frame", rlen)
	}
	p := &Packet{
		Stage:  StageNames[stage],
		Wire:   flags&flagWire != 0,
		Time:   time.Unix(0, int64(binary.BigEndian.Uint64(body[4:]))),
		Length: int(binary.BigEndian.Uint32(body[12:])),
		Reason: string(body[packetHeader : packetHeader+rlen]),
		Data:   body[packetHeader+rlen:],
	}
	if p.Length < len(p.Data) {
		return nil, nil, fmt.Errorf("frame: length %d below the %d bytes captured", p.Length, len(p.Data))
	}
	return p, nil, nil
}

func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
