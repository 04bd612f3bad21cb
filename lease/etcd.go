package lease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"sync/atomic"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap/zapcore"
)

// EtcdOptions configures an in-process etcd (weftd --embedded-etcd).
type EtcdOptions struct {
	Dir string // data directory; created if missing, reused on restart
	// ClientURL is where clients connect; default DefaultEndpoint. Port 0
	// picks a free port: ask Etcd.ClientURL for the one chosen.
	ClientURL string
	// PeerURL is for raft peers; default a free port on 127.0.0.1. A single
	// member has no peers, but etcd wants the URL all the same.
	PeerURL string
	// Logger receives etcd's own logging; default slog.Default().
	Logger *slog.Logger
	// LogLevel of etcd's own logging (debug, info, warn, error); default warn,
	// so that etcd stays quiet beside weftd's log.
	LogLevel string

	// Set by tests only: a member of a multi-member cluster, and any other
	// etcd setting (fast elections, no fsync, TLS).
	name           string
	initialCluster string
	tweak          func(*embed.Config)
}

// Etcd is a running in-process etcd server.
type Etcd struct {
	e         *embed.Etcd
	clientURL string
	closing   *atomic.Bool // quiets etcd's shutdown noise, see etcdLog
	closeOnce sync.Once
}

// StartEtcd starts a single-member etcd in this process and returns once it
// serves clients (or fails, or ctx is done).
func StartEtcd(ctx context.Context, opts EtcdOptions) (*Etcd, error) {
	if opts.Dir == "" {
		return nil, errors.New("embedded etcd: no data directory")
	}
	cfg := embed.NewConfig()
	cfg.Dir = opts.Dir
	cfg.Name = "weft"
	if opts.name != "" {
		cfg.Name = opts.name
	}
	cfg.InitialClusterToken = "weft"
	if opts.LogLevel == "" {
		opts.LogLevel = "warn"
	}
	level, err := zapcore.ParseLevel(opts.LogLevel)
	if err != nil {
		return nil, fmt.Errorf("embedded etcd: log level: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	closing := new(atomic.Bool)
	cfg.Logger = "zap"
	cfg.LogLevel = level.String()
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(newEtcdLogger(opts.Logger, level, closing))

	if opts.ClientURL == "" {
		opts.ClientURL = DefaultEndpoint
	}
	cu, err := url.Parse(opts.ClientURL)
	if err != nil {
		return nil, fmt.Errorf("embedded etcd: client URL: %w", err)
	}
	if opts.PeerURL == "" {
		port, err := freePort()
		if err != nil {
			return nil, fmt.Errorf("embedded etcd: peer port: %w", err)
		}
		opts.PeerURL = fmt.Sprintf("http://127.0.0.1:%d", port)
	}
	pu, err := url.Parse(opts.PeerURL)
	if err != nil {
		return nil, fmt.Errorf("embedded etcd: peer URL: %w", err)
	}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	if opts.initialCluster != "" {
		cfg.InitialCluster = opts.initialCluster
	}
	if opts.tweak != nil {
		opts.tweak(cfg)
	}

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("embedded etcd in %s: %w", opts.Dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		closing.Store(true)
		e.Close()
		return nil, fmt.Errorf("embedded etcd in %s: %w", opts.Dir, err)
	case <-ctx.Done():
		closing.Store(true)
		e.Close()
		return nil, fmt.Errorf("embedded etcd in %s: not ready: %w", opts.Dir, ctx.Err())
	}
	return &Etcd{e: e, clientURL: cu.Scheme + "://" + e.Clients[0].Addr().String(), closing: closing}, nil
}

// ClientURL is the URL clients reach the server at, with the actual port.
func (e *Etcd) ClientURL() string { return e.clientURL }

// Err reports a failure of the running server; it is closed after Close.
func (e *Etcd) Err() <-chan error { return e.e.Err() }

// Close stops the server cleanly; later calls do nothing. Requests still open
// (watches) get etcd's request timeout (some seconds) to finish, so close
// clients first.
func (e *Etcd) Close() {
	e.closeOnce.Do(func() {
		e.closing.Store(true)
		e.e.Close()
	})
}

// freePort asks the kernel for a free loopback port. Another process could
// take it before etcd binds it; that fails loudly, and is rare.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
