package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"time"

	"github.com/weft-dev/weft/engine"
	"github.com/weft-dev/weft/kube"
	"github.com/weft-dev/weft/lease"
)

// kubeMember is weftd's membership of a Kubernetes cluster in flanneld's
// --kube-subnet-mgr mode: the network config from net-conf.json, this
// host's subnet from its Node's podCIDR, the other Nodes as routes.
type kubeMember struct {
	log      *slog.Logger
	client   *kube.Client
	cfg      lease.Config
	subnet   netip.Prefix
	publicIP netip.Addr // as published on the Node
	markUp   bool       // --set-node-network-unavailable
}

// joinKube reads the network config, finds this host's Node, waits for its
// podCIDR and publishes the annotations, retrying while the API server is
// out of reach.
func joinKube(ctx context.Context, c *config, publicIP netip.Addr, log *slog.Logger) (*kubeMember, error) {
	cfg, err := kube.ReadNetConf(c.netConfPath)
	if err != nil {
		return nil, err
	}
	cl, err := kube.Connect(ctx, kube.Options{
		APIURL: c.kubeAPIURL, Kubeconfig: c.kubeconfigFile, AnnotationPrefix: c.kubeAnnotationPrefix,
		Logger: log, Getenv: os.Getenv,
	})
	if err != nil {
		return nil, err
	}
	k := &kubeMember{log: log, client: cl, cfg: cfg, markUp: c.setNodeNetworkUnavailable}
	if k.subnet, err = cl.WaitSubnet(ctx, cfg.Network); err != nil {
		return nil, err
	}
	err = retry(ctx, log, "cannot annotate this node yet", func() (err error) {
		k.publicIP, err = cl.Publish(ctx, publicIP)
		return err
	})
	if err != nil {
		return nil, err
	}
	log.Info("subnet from the node's podCIDR", "node", cl.NodeName(), "subnet", k.subnet,
		"network", cfg.Network, "public_ip", k.publicIP)
	return k, nil
}

// up tells Kubernetes this node's network is ready: the NetworkUnavailable
// condition, False, as flanneld sets it once its backend runs.
func (k *kubeMember) up(ctx context.Context) {
	if !k.markUp {
		return
	}
	err := retry(ctx, k.log, "cannot set the node's NetworkUnavailable condition yet", func() error {
		return k.client.MarkNetworkAvailable(ctx)
	})
	if err != nil && ctx.Err() == nil {
		k.log.Error("node condition", "err", err)
	}
}

// feedRoutes applies the other Nodes to the engine's table as the watch
// reports them and calls ready once the first batch (every Node) is in.
func (k *kubeMember) feedRoutes(ctx context.Context, eng *engine.Engine, ready func()) {
	feedBatches(ctx, eng, k.client.WatchRoutes(ctx), k.subnet, k.cfg.Port, nil, k.log, ready)
}

// leaseState reports the Kubernetes side for status and metrics: the link
// to the API server and the Node events received. There is no lease expiry:
// the podCIDR is the Node's for its life.
func (k *kubeMember) leaseState() leaseState {
	return leaseState{Mode: "kube", Etcd: &etcdState{Connected: k.client.Connected(), WatchEvents: k.client.Events()}}
}

// retry calls f until it succeeds or ctx ends, backing off from 1 s to 30 s
// and logging the first failure only.
func retry(ctx context.Context, log *slog.Logger, what string, f func() error) error {
	logged := false
	for delay := time.Second; ; delay = min(2*delay, 30*time.Second) {
		err := f()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if !logged {
			log.Warn(what+"; retrying", "err", err)
			logged = true
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, err)
		case <-time.After(delay):
		}
	}
}
