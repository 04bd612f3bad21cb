package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/weft-dev/weft/engine"
	"github.com/weft-dev/weft/lease"
)

// cluster is weftd's membership of a flannel network kept in etcd: the
// network config, this host's subnet lease, and the other hosts' leases as
// routes.
type cluster struct {
	log   *slog.Logger
	etcd  *lease.Etcd // the embedded etcd, or nil
	reg   *lease.Registry
	cfg   lease.Config
	lease *lease.Lease
	// routes are the other hosts' leases, listed while this host's lease
	// is being acquired: on a restart the first table is then in sooner.
	routes <-chan lease.Batch

	watchEvents atomic.Uint64 // lease changes received, for status and metrics
}

// joinCluster starts the embedded etcd if asked, waits for the network
// config, and acquires a subnet lease for publicIP, retrying while etcd is
// out of reach. On error it releases what it started.
func joinCluster(ctx context.Context, c *config, publicIP netip.Addr, log *slog.Logger) (cl *cluster, err error) {
	cl = &cluster{log: log}
	started := cl // an error return sets cl to nil before this runs
	defer func() {
		if err != nil {
			started.close()
		}
	}()
	opts := c.etcd
	opts.Logger = log
	if c.embeddedEtcd != "" {
		cl.etcd, err = lease.StartEtcd(ctx, lease.EtcdOptions{Dir: c.embeddedEtcd, ClientURL: c.embeddedEtcdListen, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("--embedded-etcd %s: %w", c.embeddedEtcd, err)
		}
		if len(opts.Endpoints) == 0 {
			opts.Endpoints = []string{cl.etcd.ClientURL()}
		}
		log.Info("embedded etcd serving", "url", cl.etcd.ClientURL(), "dir", c.embeddedEtcd)
	}
	if cl.reg, err = lease.Open(opts); err != nil {
		return nil, err
	}
	if cl.etcd != nil {
		wrote, err := cl.reg.WriteDefaultConfig(ctx, c.network)
		if err != nil {
			return nil, err
		}
		if wrote {
			log.Info("wrote the default network config", "prefix", opts.Prefix, "network", c.network)
		}
	}
	if cl.cfg, err = cl.reg.WaitConfig(ctx); err != nil {
		return nil, err
	}
	cl.routes = cl.reg.WatchRoutes(ctx, cl.cfg)   // it waits, listed, until feedRoutes reads
	prev, _ := lease.PreviousSubnet(c.subnetFile) // none is fine: a first start
	for delay, logged := time.Second, false; ; delay = min(2*delay, 30*time.Second) {
		cl.lease, err = cl.reg.Acquire(ctx, cl.cfg, publicIP, prev)
		if err == nil || ctx.Err() != nil {
			break
		}
		if !logged {
			log.Warn("cannot acquire a subnet lease yet; retrying", "err", err)
			logged = true
		}
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
	}
	if err != nil {
		return nil, err
	}
	log.Info("subnet lease held", "subnet", cl.lease.Subnet, "how", cl.lease.Origin.String(),
		"public_ip", publicIP, "expires", cl.lease.Expiry())
	return cl, nil
}

// keep renews the lease until ctx is done, and puts its key back at once if
// it vanishes while the subnet is free (the TUN address, the routes and the
// pods' addresses all stay valid). If another host holds the subnet, weftd
// must stop using it: keep ends the daemon through stop, weftd exits non-zero,
// and systemd restarts it to acquire a subnet afresh.
func (cl *cluster) keep(ctx context.Context, stop context.CancelCauseFunc) {
	if err := cl.lease.Keep(ctx); err != nil {
		stop(err)
	}
}

// feedRoutes applies the other hosts' leases to the engine's table as etcd
// reports them, each batch as one new table, and calls ready once the first
// (the full list) is in. It returns when ctx is done.
func (cl *cluster) feedRoutes(ctx context.Context, eng *engine.Engine, ready func()) {
	feedBatches(ctx, eng, cl.routes, cl.lease.Subnet, cl.cfg.Port, &cl.watchEvents, cl.log, ready)
}

// feedBatches applies route batches (from etcd or from Kubernetes Nodes) to
// the engine's table, each as one new table, leaving out own, and calls
// ready once the first is in. events, if not nil, counts the routes received.
func feedBatches(ctx context.Context, eng *engine.Engine, batches <-chan lease.Batch, own netip.Prefix, port uint16,
	events *atomic.Uint64, log *slog.Logger, ready func()) {
	for b := range batches {
		if events != nil {
			events.Add(uint64(len(b.Routes)))
		}
		changes := make([]engine.Change, 0, len(b.Routes))
		for _, r := range b.Routes {
			if r.Subnet.Overlaps(own) {
				continue // our own subnet: its packets are the kernel's to route
			}
			changes = append(changes, engine.Change{
				Route:  engine.Route{Subnet: r.Subnet, Peer: netip.AddrPortFrom(r.PublicIP, port)},
				Remove: r.Op == lease.Remove,
			})
		}
		table, err := eng.Routes().Apply(changes)
		if err != nil {
			// The sources validate what they send; this would be a bug.
			log.Error("route batch refused", "revision", b.Revision, "err", err)
			continue
		}
		eng.SetRoutes(table)
		log.Debug("routes applied", "revision", b.Revision, "changes", len(changes), "routes", table.Len())
		if ready != nil {
			ready()
			ready = nil
		}
	}
}

// close stops the etcd client and the embedded etcd. The lease stays: a
// restart takes the same subnet back.
func (cl *cluster) close() {
	if cl.reg != nil {
		cl.reg.Close()
	}
	if cl.etcd != nil {
		cl.etcd.Close()
	}
}
