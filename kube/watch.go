package kube

import (
	"context"
	"errors"
	"io"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	"github.com/weft-dev/weft/lease"
)

// WatchRoutes reports the peers as route changes, in lease's types so that
// the caller applies them as it does etcd's: the first batch is the full
// table once the informer has listed every Node; each later one holds what
// changed since. A Node whose kube-subnet-manager turns false, or that is
// deleted, or whose annotations turn bad, is removed. This host's own Node
// is left out. The informer re-lists when its watch expires and reconnects
// after an outage, while the last table stays in use; the channel closes
// when ctx is done.
func (c *Client) WatchRoutes(ctx context.Context) <-chan lease.Batch {
	w := &routeWatch{c: c, peers: map[string]Peer{}, errs: map[string]string{}, wake: make(chan struct{}, 1)}
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			l, err := c.cs.CoreV1().Nodes().List(ctx, o)
			w.reachable(err)
			return l, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			wi, err := c.cs.CoreV1().Nodes().Watch(ctx, o)
			w.reachable(err)
			return wi, err
		},
	}
	// The wrapper tells the reflector whether the clientset streams the
	// initial list (an API server does; client-go's in-memory one does not).
	inf := cache.NewSharedIndexInformer(cache.ToListWatcherWithWatchListSemantics(lw, c.cs), &corev1.Node{}, 0, cache.Indexers{})
	_ = inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		switch {
		case apierrors.IsResourceExpired(err) || apierrors.IsGone(err):
			c.log.Debug("node watch expired; re-listing", "err", err)
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			c.log.Debug("node watch closed; re-watching", "err", err)
		default:
			w.reachable(err)
		}
	})
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { w.update(obj) },
		UpdateFunc: func(_, obj any) { w.update(obj) },
		DeleteFunc: func(obj any) { w.remove(obj) },
	})
	out := make(chan lease.Batch)
	go inf.RunWithContext(ctx)
	go w.probe(ctx)
	go w.run(ctx, inf, out)
	return out
}

// routeWatch turns Node events into route changes. Handlers record what
// changed (pending) and wake run, which sends it as one batch: the
// informer never waits on the caller.
type routeWatch struct {
	c *Client

	mu      sync.Mutex
	peers   map[string]Peer   // by Node name: the routes the caller holds
	errs    map[string]string // by Node name: the last error logged for it
	pending []lease.Route
	rev     int64
	down    bool // an outage has been logged and not yet its end

	wake chan struct{}
}

func (w *routeWatch) run(ctx context.Context, inf cache.SharedIndexInformer, out chan<- lease.Batch) {
	defer close(out)
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return
	}
	first := true
	for {
		w.mu.Lock()
		b := lease.Batch{Routes: w.pending, Revision: w.rev}
		w.pending = nil
		w.mu.Unlock()
		if len(b.Routes) > 0 || first {
			select {
			case out <- b:
			case <-ctx.Done():
				return
			}
			first = false
		}
		select {
		case <-w.wake:
		case <-ctx.Done():
			return
		}
	}
}

func (w *routeWatch) update(obj any) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return
	}
	w.c.events.Add(1)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.setRev(n)
	if n.Name == w.c.node {
		return // this host's own subnet is the kernel's to route
	}
	p, err := w.c.ann.Peer(n)
	if err != nil {
		w.drop(n.Name)
		w.refused(n.Name, err)
		return
	}
	delete(w.errs, n.Name)
	old, had := w.peers[n.Name]
	if had && old == p {
		return
	}
	if had && old.Subnet != p.Subnet {
		w.pending = append(w.pending, lease.Route{Op: lease.Remove, Subnet: old.Subnet, PublicIP: old.PublicIP})
	}
	w.peers[n.Name] = p
	w.pending = append(w.pending, lease.Route{Op: lease.Add, Subnet: p.Subnet, PublicIP: p.PublicIP})
	w.c.log.Info("peer node", "node", n.Name, "subnet", p.Subnet, "public_ip", p.PublicIP)
	w.signal()
}

func (w *routeWatch) remove(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	n, ok := obj.(*corev1.Node)
	if !ok {
		return
	}
	w.c.events.Add(1)
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.errs, n.Name)
	if w.drop(n.Name) {
		w.c.log.Info("peer node deleted", "node", n.Name)
	}
}

// drop removes name's route, if it has one; w.mu is held.
func (w *routeWatch) drop(name string) bool {
	old, had := w.peers[name]
	if !had {
		return false
	}
	delete(w.peers, name)
	w.pending = append(w.pending, lease.Route{Op: lease.Remove, Subnet: old.Subnet, PublicIP: old.PublicIP})
	w.signal()
	return true
}

// refused logs why a Node is not a peer, once per distinct reason: a Node
// flannel does not run on (unmanaged) at debug level, a broken one as a
// warning that names it. w.mu is held.
func (w *routeWatch) refused(name string, err error) {
	msg := err.Error()
	if w.errs[name] == msg {
		return
	}
	w.errs[name] = msg
	if errors.Is(err, ErrUnmanaged) {
		w.c.log.Debug("node is not a peer", "node", name, "err", err)
		return
	}
	w.c.malformed.Add(1)
	w.c.log.Warn("node refused as a peer; no route to it", "node", name, "err", err)
}

func (w *routeWatch) setRev(n *corev1.Node) {
	if v, err := strconv.ParseInt(n.ResourceVersion, 10, 64); err == nil && v > w.rev {
		w.rev = v
	}
}

func (w *routeWatch) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// reachable records the outcome of a list or watch: an error starts an
// outage, logged once with the table kept; the first success after one
// ends it, logged once too.
func (w *routeWatch) reachable(err error) {
	w.c.connected.Store(err == nil)
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case err != nil && !w.down:
		w.down = true
		w.c.log.Warn("API server unreachable; forwarding on the last table and reconnecting", "err", err)
	case err == nil && w.down:
		w.down = false
		w.c.log.Info("API server reachable again; watching nodes")
	}
}

// probe asks the API server for its version every 2 s while an outage
// lasts, so that its end is noticed (and logged) even while the informer
// waits out its backoff.
func (w *routeWatch) probe(ctx context.Context) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		w.mu.Lock()
		down := w.down
		w.mu.Unlock()
		if !down {
			continue
		}
		_, err := w.c.cs.Discovery().ServerVersion()
		if err == nil {
			w.reachable(nil)
		}
	}
}
