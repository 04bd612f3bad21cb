package lease

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"path"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// DefaultPrefix is flannel's etcd prefix (flanneld --etcd-prefix).
const DefaultPrefix = "/coreos.com/network"

// DefaultEndpoint is flanneld's default --etcd-endpoints.
const DefaultEndpoint = "http://127.0.0.1:2379"

// ErrNoConfig means <prefix>/config does not exist (yet).
var ErrNoConfig = errors.New("network config not found in etcd")

// Options says how to reach etcd and how to hold a lease there. The zero value
// works against a local etcd with flannel's defaults.
type Options struct {
	Endpoints []string // default DefaultEndpoint
	Prefix    string   // default DefaultPrefix

	// TLS, as flanneld's --etcd-cafile, --etcd-certfile, --etcd-keyfile. TLS is
	// used when any of the three is set or an endpoint is https://; without
	// CAFile the system roots verify the server. CertFile and KeyFile go together.
	CAFile, CertFile, KeyFile string
	// Username and Password, as flanneld's --etcd-username/--etcd-password. With
	// them, Open has to reach etcd to get a token, so it fails while etcd is down.
	Username, Password string

	DialTimeout    time.Duration // to connect (and authenticate); default 5s
	RequestTimeout time.Duration // for each single request; default 5s

	// LeaseTTL is the TTL of the etcd lease under this host's subnet key;
	// default 24h, as flannel's.
	LeaseTTL time.Duration
	// RenewMargin is how long before expiry the lease is renewed; default 60m.
	// flanneld's --subnet-lease-renew-margin gives it in minutes. It must be
	// shorter than LeaseTTL.
	RenewMargin time.Duration
	// ProbeInterval is how often WatchRoutes checks that etcd answers while the
	// watch is quiet, so that an outage shows in Connected and the log even
	// when nothing changes; default 10s.
	ProbeInterval time.Duration

	Logger *slog.Logger // default slog.Default()

	// Retry backoff bounds; tests shorten them. Defaults 250ms and 10s.
	retryMin, retryMax time.Duration
}

func (o *Options) setDefaults() error {
	if len(o.Endpoints) == 0 {
		o.Endpoints = []string{DefaultEndpoint}
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	// Keys are built as flannel builds them, with path.Join, so that even an
	// unusual prefix ("coreos.com/network/", no leading slash) names the same keys.
	o.Prefix = path.Clean(o.Prefix)
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.DialTimeout, 5*time.Second)
	def(&o.RequestTimeout, 5*time.Second)
	def(&o.LeaseTTL, 24*time.Hour)
	def(&o.RenewMargin, 60*time.Minute)
	def(&o.ProbeInterval, 10*time.Second)
	def(&o.retryMin, 250*time.Millisecond)
	def(&o.retryMax, 10*time.Second)
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.LeaseTTL < 2*time.Second {
		return fmt.Errorf("lease TTL %s: etcd counts TTLs in whole seconds, at least 2", o.LeaseTTL)
	}
	if o.RenewMargin >= o.LeaseTTL {
		return fmt.Errorf("renew margin %s must be shorter than the lease TTL %s", o.RenewMargin, o.LeaseTTL)
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return errors.New("etcd client certificate: the cert file and the key file go together")
	}
	return nil
}

func (o *Options) tlsConfig() (*tls.Config, error) {
	https := false
	for _, ep := range o.Endpoints {
		if len(ep) > 8 && ep[:8] == "https://" {
			https = true
		}
	}
	if o.CAFile == "" && o.CertFile == "" && !https {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("etcd client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("etcd CA file: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("etcd CA file %s: no PEM certificate in it", o.CAFile)
		}
	}
	return c, nil
}

// Registry is this host's handle on flannel's subnet registry in etcd: the
// network config, the subnet leases, and whether etcd currently answers.
// Its methods may be called from several goroutines.
type Registry struct {
	cli  *clientv3.Client
	opts Options
	log  *slog.Logger
	tls  *tls.Config // nil without TLS

	keyConfig  string // <prefix>/config
	keySubnets string // <prefix>/subnets/

	malformed atomic.Uint64 // lease values and key names skipped by WatchRoutes
	ignored   ignoredCounts // well-formed leases the config rules out (rejected.go)
	connected atomic.Bool

	mu    sync.Mutex // serialises state changes so each is logged once
	state connState
}

type connState int8

const (
	stateUnknown connState = iota
	stateUp
	stateDown
)

// Open makes an etcd client from opts. It does not wait for etcd (unless a
// username is given, see Options); the first requests do.
func Open(opts Options) (*Registry, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, fmt.Errorf("etcd options: %w", err)
	}
	tlsc, err := opts.tlsConfig()
	if err != nil {
		return nil, err
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   opts.Endpoints,
		DialTimeout: opts.DialTimeout,
		TLS:         tlsc,
		Username:    opts.Username,
		Password:    opts.Password,
		// The client would log every retry; Registry reports connectivity
		// itself, once per change, through slog.
		Logger: zap.NewNop(),
		// gRPC's default reconnect backoff grows to 120 s: after an outage
		// of half a minute, renewals and watches came back only 8-15 s
		// after etcd did. At most 5 s between attempts keeps that short.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           grpcbackoff.Config{BaseDelay: 250 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 5 * time.Second},
			MinConnectTimeout: 5 * time.Second,
		})},
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client for %v: %w", opts.Endpoints, err)
	}
	r := newRegistry(cli, opts)
	r.tls = tlsc
	return r, nil
}

func newRegistry(cli *clientv3.Client, opts Options) *Registry {
	return &Registry{
		cli: cli, opts: opts, log: opts.Logger,
		keyConfig:  path.Join(opts.Prefix, "config"),
		keySubnets: path.Join(opts.Prefix, "subnets") + "/",
	}
}

// Close closes the etcd client. It does not touch the lease: a host that
// restarts takes the same subnet back.
func (r *Registry) Close() error {
	return r.cli.Close()
}

// Connected reports whether etcd answered the last request made through r
// (false until the first answer). For a health endpoint or a metric.
func (r *Registry) Connected() bool { return r.connected.Load() }

// Malformed counts the subnet keys WatchRoutes skipped because their name or
// value does not parse; each (key, revision) counts once.
func (r *Registry) Malformed() uint64 { return r.malformed.Load() }

func (r *Registry) configKey() string  { return r.keyConfig }
func (r *Registry) subnetsDir() string { return r.keySubnets }
func (r *Registry) subnetKey(p netip.Prefix) string {
	return r.subnetsDir() + SubnetKey(p)
}

// observe records the outcome of an etcd request. An answer from the server,
// even a refusal, means etcd is reachable; a transport failure, a timeout or
// "no leader" means it is not. A request cut short by the caller's own ctx says
// nothing. Only changes are logged.
func (r *Registry) observe(ctx context.Context, err error) {
	if err != nil && ctx.Err() != nil {
		return
	}
	next := stateUp
	if err != nil && !answered(err) {
		next = stateDown
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state == next {
		return
	}
	prev := r.state
	r.state = next
	r.connected.Store(next == stateUp)
	switch {
	case next == stateDown:
		r.log.Warn("etcd unreachable; retrying, the last known routes stay in place", "endpoints", r.opts.Endpoints, "err", err)
	case prev == stateDown:
		r.log.Info("etcd reachable again", "endpoints", r.opts.Endpoints)
	default:
		r.log.Info("connected to etcd", "endpoints", r.opts.Endpoints)
	}
}

func answered(err error) bool {
	code := codes.Unknown
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		code = ee.Code()
	} else if s, ok := status.FromError(err); ok {
		code = s.Code()
	}
	switch code {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return false
	case codes.Unknown:
		// No gRPC status at all (a context error, a closed client): nothing
		// came back from a server.
		return false
	}
	return true
}

// request bounds one etcd request by RequestTimeout.
func (r *Registry) request(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.opts.RequestTimeout)
}

func (r *Registry) getConfig(ctx context.Context) (raw []byte, err error) {
	rctx, cancel := r.request(ctx)
	defer cancel()
	resp, err := r.cli.Get(rctx, r.configKey())
	r.observe(ctx, err)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", r.configKey(), err)
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("%s: %w", r.configKey(), ErrNoConfig)
	}
	return resp.Kvs[0].Value, nil
}

// Config reads and validates <prefix>/config once. A missing key is ErrNoConfig.
func (r *Registry) Config(ctx context.Context) (Config, error) {
	raw, err := r.getConfig(ctx)
	if err != nil {
		return Config{}, err
	}
	c, err := ParseConfig(raw)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", r.configKey(), err)
	}
	return c, nil
}

// WaitConfig returns the network config as soon as <prefix>/config exists,
// retrying with backoff while it is absent or etcd is unreachable (each logged
// once, not per retry), as flanneld waits for its config. An invalid config is
// returned as an error at once: it needs an operator, not a retry.
func (r *Registry) WaitConfig(ctx context.Context) (Config, error) {
	b := r.backoff(r.opts.retryMax)
	logged := false
	for {
		raw, err := r.getConfig(ctx)
		if err == nil {
			c, err := ParseConfig(raw)
			if err != nil {
				return Config{}, fmt.Errorf("%s: %w", r.configKey(), err)
			}
			if logged {
				r.log.Info("network config found", "key", r.configKey())
			}
			return c, nil
		}
		if errors.Is(err, ErrNoConfig) && !logged {
			r.log.Warn("waiting for the network config; write it with etcdctl put", "key", r.configKey())
			logged = true
		}
		if !errors.Is(err, ErrNoConfig) && r.tls != nil {
			// etcd's client reports a TLS refusal as a timeout: ask the
			// servers directly, so that a bad certificate is an error to
			// fix, not an outage to wait out.
			if err := tlsRefusal(ctx, r.opts.Endpoints, r.tls); err != nil {
				return Config{}, err
			}
		}
		if !sleep(ctx, b.next()) {
			return Config{}, fmt.Errorf("waiting for %s: %w", r.configKey(), ctx.Err())
		}
	}
}

// WriteDefaultConfig writes DefaultConfigJSON(network) to <prefix>/config
// unless the key exists, in one transaction, so that of several hosts
// starting together exactly one writes it and nobody's config is overwritten.
// It reports whether it wrote.
func (r *Registry) WriteDefaultConfig(ctx context.Context, network netip.Prefix) (bool, error) {
	val, err := DefaultConfigJSON(network)
	if err != nil {
		return false, err
	}
	key := r.configKey()
	rctx, cancel := r.request(ctx)
	defer cancel()
	resp, err := r.cli.Txn(rctx).
		If(clientv3.Compare(clientv3.Version(key), "=", 0)).
		Then(clientv3.OpPut(key, string(val))).
		Commit()
	r.observe(ctx, err)
	if err != nil {
		return false, fmt.Errorf("write default config to %s: %w", key, err)
	}
	return resp.Succeeded, nil
}

// backoff is a capped exponential delay with jitter, so that many hosts
// retrying after one etcd outage do not come back in step.
type backoff struct {
	min, max, cur time.Duration
}

func (r *Registry) backoff(max time.Duration) backoff {
	return backoff{min: r.opts.retryMin, max: max}
}

func (b *backoff) next() time.Duration {
	switch {
	case b.cur == 0:
		b.cur = b.min
	case b.cur < b.max:
		b.cur = min(2*b.cur, b.max)
	}
	return b.cur - time.Duration(rand.Int64N(int64(b.cur)/5+1))
}

func (b *backoff) reset() { b.cur = 0 }

// sleep waits d or until ctx is done; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
