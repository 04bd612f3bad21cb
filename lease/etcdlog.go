package lease

import (
	"context"
	"log/slog"
	"sync/atomic"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// etcdLog carries etcd's own zap logging into weft's slog logger, so that
// weftd has one log, and demotes etcd's errors to debug once Close has begun:
// etcd reports its listeners closing as errors ("http: Server closed"), which
// on a clean stop are no news at all. It also demotes the warnings every start
// of a single in-process member gives (see benign).
type etcdLog struct {
	log     *slog.Logger
	min     zapcore.Level
	attrs   []slog.Attr
	closing *atomic.Bool
}

func newEtcdLogger(log *slog.Logger, min zapcore.Level, closing *atomic.Bool) *zap.Logger {
	return zap.New(&etcdLog{log: log.With("component", "etcd"), min: min, closing: closing})
}

func (c *etcdLog) Enabled(l zapcore.Level) bool { return l >= c.min }

func (c *etcdLog) With(fields []zapcore.Field) zapcore.Core {
	d := *c
	d.attrs = append(append([]slog.Attr(nil), c.attrs...), attrs(fields)...)
	return &d
}

func (c *etcdLog) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *etcdLog) Write(e zapcore.Entry, fields []zapcore.Field) error {
	level := slog.LevelError
	switch {
	case c.closing.Load(), benign(e.Message):
		level = slog.LevelDebug
	case e.Level <= zapcore.DebugLevel:
		level = slog.LevelDebug
	case e.Level == zapcore.InfoLevel:
		level = slog.LevelInfo
	case e.Level == zapcore.WarnLevel:
		level = slog.LevelWarn
	}
	c.log.LogAttrs(context.Background(), level, e.Message, append(c.attrs, attrs(fields)...)...)
	return nil
}

func (c *etcdLog) Sync() error { return nil }

// benign tells the etcd warnings about production set-ups that an embedded
// member, started by weftd for one host or a demo, always gives and that
// nobody can act on.
func benign(msg string) bool {
	switch msg {
	case "Running http and grpc server on single port. This is not recommended for production.",
		// The default auth token; weftd does not turn etcd auth on.
		"simple token is not cryptographically signed":
		return true
	}
	return false
}

func attrs(fields []zapcore.Field) []slog.Attr {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range fields {
		f.AddTo(enc)
	}
	out := make([]slog.Attr, 0, len(enc.Fields))
	for k, v := range enc.Fields {
		out = append(out, slog.Any(k, v))
	}
	return out
}
