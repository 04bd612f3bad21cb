package lease_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/weft-dev/weft/lease"
)

// Two hosts join a network served by an embedded etcd, as `weft demo` does.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "weft-example")
	defer os.RemoveAll(dir)
	quiet := slog.New(slog.DiscardHandler)

	etcd, err := lease.StartEtcd(ctx, lease.EtcdOptions{
		Dir: filepath.Join(dir, "etcd"), ClientURL: "http://127.0.0.1:0", Logger: quiet,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer etcd.Close()
	reg, err := lease.Open(lease.Options{Endpoints: []string{etcd.ClientURL()}, Logger: quiet})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer reg.Close()
	if _, err := reg.WriteDefaultConfig(ctx, netip.MustParsePrefix("100.96.0.0/16")); err != nil {
		fmt.Println(err)
		return
	}
	cfg, err := reg.WaitConfig(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}

	// Host 1 had 100.96.1.0/24 before (its subnet file says so); host 2 is new.
	for _, h := range []struct{ ip, prev string }{{"192.0.2.1", "100.96.1.0/24"}, {"192.0.2.2", "100.96.1.0/24"}} {
		l, err := reg.Acquire(ctx, cfg, netip.MustParseAddr(h.ip), netip.MustParsePrefix(h.prev))
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%s: %s\n", h.ip, l.Origin)
	}

	wctx, stop := context.WithCancel(ctx)
	defer stop()
	b := <-reg.WatchRoutes(wctx, cfg)
	fmt.Println(len(b.Routes), "routes")

	path := filepath.Join(dir, "subnet.env")
	if err := lease.WriteSubnetFile(path, lease.SubnetFile{
		Network: cfg.Network, Subnet: netip.MustParsePrefix("100.96.1.0/24"), MTU: 1472,
	}); err != nil {
		fmt.Println(err)
		return
	}
	env, _ := os.ReadFile(path)
	fmt.Print(string(env))
	// Output:
	// 192.0.2.1: from subnet file
	// 192.0.2.2: new
	// 2 routes
	// FLANNEL_NETWORK=100.96.0.0/16
	// FLANNEL_SUBNET=100.96.1.1/24
	// FLANNEL_MTU=1472
	// FLANNEL_IPMASQ=false
}
