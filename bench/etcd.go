package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
)

// EtcdSubcommand is the hidden `weft bench` subcommand that runs ServeEtcd:
// the flannel mode starts it inside a host namespace, since an etcd in the
// harness's own process would listen in the wrong namespace.
const EtcdSubcommand = "serve-etcd"

// etcdReadyLine is printed once etcd serves clients and holds its seed keys.
const etcdReadyLine = "etcd ready"

// ServeEtcdMain runs a single-member etcd until SIGTERM or SIGINT, with
// arguments --listen URL --dir DIR [--peer URL] [--put KEY=VALUE ...]. It prints
// etcdReadyLine on stdout once the keys are in.
func ServeEtcdMain(args []string) error {
	fs := flag.NewFlagSet(EtcdSubcommand, flag.ContinueOnError)
	listen := fs.String("listen", "", "client `URL`")
	// In the host namespace the harness runs it in, loopback is private to
	// that host, so the fixed default port cannot clash.
	peer := fs.String("peer", "http://127.0.0.1:2380", "peer `URL`; a single member has no peers, but etcd wants one")
	dir := fs.String("dir", "", "data `DIR`")
	var puts []string
	fs.Func("put", "`KEY=VALUE` to store once ready (repeatable)", func(s string) error {
		puts = append(puts, s)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *listen == "" || *dir == "" {
		return errors.New("serve-etcd: --listen and --dir are required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	return serveEtcd(ctx, *listen, *peer, *dir, puts, os.Stdout)
}

func serveEtcd(ctx context.Context, listen, peer, dir string, puts []string, ready io.Writer) error {
	cu, err := url.Parse(listen)
	if err != nil {
		return fmt.Errorf("serve-etcd: %w", err)
	}
	pu, err := url.Parse(peer)
	if err != nil {
		return fmt.Errorf("serve-etcd: %w", err)
	}
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir = "bench", dir
	cfg.LogLevel = "error"
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("serve-etcd: %w", err)
	}
	defer e.Close()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		return fmt.Errorf("serve-etcd: %w", err)
	case <-time.After(30 * time.Second):
		return errors.New("serve-etcd: not ready after 30s")
	case <-ctx.Done():
		return nil
	}
	cli := v3client.New(e.Server)
	defer cli.Close()
	for _, kv := range puts {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Errorf("serve-etcd: --put %q: want KEY=VALUE", kv)
		}
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := cli.Put(pctx, k, v)
		cancel()
		if err != nil {
			return fmt.Errorf("serve-etcd: put %s: %w", k, err)
		}
	}
	fmt.Fprintln(ready, etcdReadyLine)
	select {
	case <-ctx.Done():
		return nil
	case err := <-e.Err():
		return fmt.Errorf("serve-etcd: %w", err)
	}
}
