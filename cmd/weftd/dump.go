package main

import (
	"bufio"
	"io"
	"net"
	"time"

	"github.com/weft-dev/weft/control"
	"github.com/weft-dev/weft/engine"
)

// dump streams a dump's packets to conn as frames until the request's
// count or duration is reached, the client closes its side, or weftd
// stops; then it sends the end frame. The forwarding loops never wait for
// it: when this goroutine or the client falls behind, the tap drops and
// counts (engine.Dump.Dropped).
func (s *controlServer) dump(conn *net.UnixConn, req *control.DumpRequest) {
	cfg := engine.DumpConfig{Snaplen: req.Snaplen}
	for _, name := range req.Stages {
		st, ok := engine.ParseStage(name)
		if !ok { // the protocol and the engine name the same stages
			s.answer(conn, control.Response{Error: "stage " + name + " unknown to the engine"})
			return
		}
		cfg.Stages |= engine.StagesOf(st)
	}
	if f := req.ParsedFilter(); f != nil && f.String() != "" {
		cfg.Match = f.Match
	}
	d := s.host.eng.StartDump(cfg)
	defer d.Close()

	started := &control.DumpStarted{Filter: req.Filter}
	for st := range engine.StageDrop + 1 {
		if cfg.Stages == 0 || cfg.Stages.Has(st) {
			started.Stages = append(started.Stages, st.String())
		}
	}
	s.answer(conn, control.Response{Dump: started})

	// The client says it is done by closing its side (or the connection).
	clientDone := make(chan struct{})
	go func() {
		io.Copy(io.Discard, conn)
		close(clientDone)
	}()
	var timeout <-chan time.Time
	if req.DurationMS > 0 {
		t := time.NewTimer(req.Duration())
		defer t.Stop()
		timeout = t.C
	}

	w := bufio.NewWriterSize(conn, 64<<10)
	end := control.DumpEnd{Reason: "shutdown"}
	var (
		frame []byte
		pkt   control.Packet
		err   error
	)
loop:
	for req.Count == 0 || end.Packets < uint64(req.Count) {
		select {
		case c := <-d.Packets():
			pkt.Stage, pkt.Time, pkt.Wire = c.Stage.String(), c.Time, c.Wire()
			pkt.Reason = ""
			if c.Stage == engine.StageDrop {
				pkt.Reason = c.Reason.String()
			}
			pkt.Data, pkt.Length = c.Data()
			// A client that stays connected but stops reading must not
			// hold its dump slot for ever.
			conn.SetWriteDeadline(time.Now().Add(answerTimeout))
			frame, err = control.WritePacket(w, &pkt, frame)
			d.Release(c)
			if err == nil && len(d.Packets()) == 0 {
				err = w.Flush() // nothing more waiting: let the client see it now
			}
			if err != nil {
				end.Reason, end.Error = "error", err.Error()
				break loop
			}
			end.Packets++
		case <-timeout:
			end.Reason = "duration"
			break loop
		case <-clientDone:
			end.Reason = "client"
			break loop
		case <-s.ctx.Done():
			break loop
		}
	}
	if req.Count > 0 && end.Packets >= uint64(req.Count) {
		end.Reason = "count"
	}
	d.Close()
	end.Dropped = d.Dropped()
	if end.Reason != "error" {
		wait := answerTimeout
		if s.ctx.Err() != nil {
			wait = shutdownGrace // weftd is stopping: do not hold it up
		}
		conn.SetWriteDeadline(time.Now().Add(wait))
		if control.WriteEnd(w, end) == nil {
			w.Flush()
		}
	}
	s.log.Debug("dump ended", "packets", end.Packets, "dropped", end.Dropped, "reason", end.Reason)
}
