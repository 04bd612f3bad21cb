package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/weft-dev/weft/control"
)

// controlServer answers `weft status`, `weft routes` and `weft dump` on a
// unix socket only root can reach (mode 0600). Each connection carries one
// request (package control). A bad request gets an error answer; nothing a
// client sends reaches the forwarding loops but the dump's filter, which
// the tap runs as it is.
type controlServer struct {
	ln     *net.UnixListener
	path   string
	host   *hostState
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	slots  chan struct{} // bounds the connections served at once
}

const (
	// maxControlConns bounds the connections served at once, dumps
	// included: a runaway script cannot pile up goroutines and buffers.
	maxControlConns = 16
	// requestTimeout bounds the wait for a client's request line.
	requestTimeout = 5 * time.Second
	// answerTimeout bounds the write of a status or routes answer.
	answerTimeout = 10 * time.Second
	// shutdownGrace is what a connection gets to finish when weftd stops.
	shutdownGrace = time.Second
)

// errSocketInUse is startControl's error when another weftd answers on the path.
var errSocketInUse = errors.New("another weftd is serving it")

// serveControl starts the control server on path, or none if path is
// empty. Several weftds on one machine (in network namespaces: weft demo,
// weft bench, the tests) share the default path; the first one serves it,
// and the others go on without a control socket, saying so, rather than
// fail. A path given explicitly must be served.
func serveControl(path string, host *hostState, log *slog.Logger) (*controlServer, error) {
	if path == "" {
		return nil, nil
	}
	s, err := startControl(path, host, log)
	if errors.Is(err, errSocketInUse) && path == control.DefaultSocket {
		log.Warn("another weftd serves the default control socket; weft status, routes and dump will not reach this one (give it its own --control-socket)", "path", path)
		return nil, nil
	}
	return s, err
}

// startControl listens on path. An existing file there is removed only if
// it is a socket nobody answers on: a stale one from a weftd that died.
func startControl(path string, host *hostState, log *slog.Logger) (*controlServer, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("--control-socket %s: %w", path, err)
	}
	if err := removeStale(path); err != nil {
		return nil, fmt.Errorf("--control-socket %s: %w", path, err)
	}
	ln, err := listenPrivate(path)
	if err != nil {
		return nil, fmt.Errorf("--control-socket: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &controlServer{ln: ln, path: path, host: host, log: log, ctx: ctx, cancel: cancel, slots: make(chan struct{}, maxControlConns)}
	s.wg.Add(1)
	go s.accept()
	log.Info("serving the control socket", "path", path)
	return s, nil
}

// umaskMu serialises weftd's own umask changes, so that one cannot restore
// the umask another has just narrowed.
var umaskMu sync.Mutex

// listenPrivate creates the socket file at path with mode 0600 and listens on
// it. Connecting needs write permission on the socket, so only root may talk
// to weftd. bind(2) creates the file with 0777 less the umask and has no mode
// argument, so the umask is narrowed to 0177 around it: the file is private
// from its first instant, where a chmod after it would leave a window.
//
// The umask is the whole process's. That is safe here: weftd's own changes
// are serialised by umaskMu, and the window is one bind(2) at start, before
// weftd writes the subnet file. A file or directory that another goroutine
// (the embedded etcd, a log reopen) happens to create in it comes out
// narrower than asked (at most 0600), never wider, which stops no root process.
func listenPrivate(path string) (*net.UnixListener, error) {
	umaskMu.Lock()
	defer umaskMu.Unlock()
	old := syscall.Umask(0o177)
	defer syscall.Umask(old)
	return net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
}

// removeStale removes path if it is a socket nothing listens on.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return errors.New("exists and is not a socket; not removing it")
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return errSocketInUse
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("checking whether the socket is in use: %w", err)
	}
	return os.Remove(path)
}

// close stops accepting, ends running dumps, waits for the connections to
// finish, and removes the socket file.
func (s *controlServer) close() {
	s.cancel()
	s.ln.Close() // unlinks the socket file: the listener created it
	s.wg.Wait()
}

func (s *controlServer) accept() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.AcceptUnix()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.log.Error("control socket stopped accepting", "err", err)
			}
			return
		}
		select {
		case s.slots <- struct{}{}:
		default:
			s.refuse(conn, fmt.Sprintf("busy: %d connections already", maxControlConns))
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() { <-s.slots }()
			s.serve(conn)
		}()
	}
}

func (s *controlServer) refuse(conn *net.UnixConn, msg string) {
	conn.SetWriteDeadline(time.Now().Add(time.Second))
	json.NewEncoder(conn).Encode(control.Response{Error: msg})
	conn.Close()
}

// serve answers one connection.
func (s *controlServer) serve(conn *net.UnixConn) {
	defer conn.Close()
	// A bug here must cost one connection, never the daemon.
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("control request failed", "panic", r)
		}
	}()
	// Shutting down: unblock whatever waits on this connection, leaving a
	// dump the time to send its end.
	stop := context.AfterFunc(s.ctx, func() { conn.SetDeadline(time.Now().Add(shutdownGrace)) })
	defer stop()

	conn.SetReadDeadline(time.Now().Add(requestTimeout))
	req, err := control.ReadRequest(conn)
	if err != nil {
		s.answer(conn, control.Response{Error: err.Error()})
		return
	}
	conn.SetReadDeadline(time.Time{})
	switch req.Op {
	case control.OpStatus:
		s.answer(conn, control.Response{Status: s.host.status()})
	case control.OpRoutes:
		s.answer(conn, control.Response{Routes: s.host.routes()})
	case control.OpDump:
		s.dump(conn, req.Dump)
	}
}

func (s *controlServer) answer(conn *net.UnixConn, resp control.Response) {
	conn.SetWriteDeadline(time.Now().Add(answerTimeout))
	if err := json.NewEncoder(conn).Encode(resp); err != nil {
		s.log.Debug("control answer not delivered", "err", err)
	}
}
