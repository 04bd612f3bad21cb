package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"syscall"
)

// Client talks to a weftd over its control socket, one connection per call.
type Client struct {
	// Path is the socket, e.g. DefaultSocket.
	Path string
}

// Status asks for the daemon's state and counters.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	resp, _, err := c.call(ctx, Request{Op: OpStatus})
	if err != nil {
		return nil, err
	}
	if resp.Status == nil {
		return nil, errors.New("weftd answered without a status")
	}
	return resp.Status, nil
}

// Routes asks for the forwarding table.
func (c *Client) Routes(ctx context.Context) ([]Route, error) {
	resp, _, err := c.call(ctx, Request{Op: OpRoutes})
	if err != nil {
		return nil, err
	}
	return resp.Routes, nil
}

// Dump starts a dump. Read it with Next until the end frame; Stop asks the
// daemon to end it early. ctx bounds only the start: cancel a running dump
// with Stop or Close.
func (c *Client) Dump(ctx context.Context, req DumpRequest) (*DumpStream, error) {
	resp, conn, err := c.call(ctx, Request{Op: OpDump, Dump: &req})
	if err != nil {
		return nil, err
	}
	if resp.Dump == nil {
		conn.Close()
		return nil, errors.New("weftd answered a dump request without starting one")
	}
	return &DumpStream{Started: *resp.Dump, conn: conn.conn, fr: NewFrameReader(conn.rest)}, nil
}

// DumpStream is a running dump's frames.
type DumpStream struct {
	Started DumpStarted
	conn    *net.UnixConn
	fr      *FrameReader
}

// Next returns the next packet, or the end of the dump.
func (s *DumpStream) Next() (*Packet, *DumpEnd, error) { return s.fr.Next() }

// Stop asks the daemon to end the dump: it sends what it holds, then the end.
func (s *DumpStream) Stop() error { return s.conn.CloseWrite() }

// Close drops the connection.
func (s *DumpStream) Close() error { return s.conn.Close() }

// answered is a connection after its answer: rest reads what follows it.
type answered struct {
	conn *net.UnixConn
	rest io.Reader
}

func (a answered) Close() error { return a.conn.Close() }

// call sends req and reads the answer. For a dump that started, the
// connection stays open and is returned; otherwise it is closed.
func (c *Client) call(ctx context.Context, req Request) (*Response, answered, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", c.Path)
	if err != nil {
		return nil, answered{}, dialError(c.Path, err)
	}
	conn := nc.(*net.UnixConn)
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	line, err := json.Marshal(req)
	if err != nil {
		conn.Close()
		return nil, answered{}, err
	}
	if _, err := conn.Write(append(line, '\n')); err != nil {
		conn.Close()
		return nil, answered{}, fmt.Errorf("send request to %s: %w", c.Path, ctxErr(ctx, err))
	}
	dec := json.NewDecoder(conn)
	var resp Response
	if err := dec.Decode(&resp); err != nil {
		conn.Close()
		return nil, answered{}, fmt.Errorf("read answer from %s: %w", c.Path, ctxErr(ctx, err))
	}
	if resp.Error != "" {
		conn.Close()
		return nil, answered{}, fmt.Errorf("weftd: %s", resp.Error)
	}
	if req.Op != OpDump {
		conn.Close()
		return &resp, answered{}, nil
	}
	if !stop() {
		conn.Close()
		return nil, answered{}, ctx.Err()
	}
	// The answer line ends with a newline; the frames start after it.
	rest := bufio.NewReader(io.MultiReader(dec.Buffered(), conn))
	if nl, err := rest.ReadByte(); err != nil || nl != '\n' {
		conn.Close()
		return nil, answered{}, fmt.Errorf("read answer from %s: no newline after it", c.Path)
	}
	return &resp, answered{conn: conn, rest: rest}, nil
}

func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// dialError says what a failed connection most likely means.
func dialError(path string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("no weftd listening on %s (is it running? is --control-socket the same as weftd's?)", path)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%s: permission denied (the control socket is root's: run weft as root)", path)
	}
	return fmt.Errorf("connect to %s: %w", path, err)
}
