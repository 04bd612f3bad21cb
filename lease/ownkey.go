package lease

import (
	"context"
	"fmt"
	"net/netip"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ownKey is what etcd last said of this host's subnet key.
type ownKey struct {
	present  bool
	lease    clientv3.LeaseID
	publicIP netip.Addr // invalid if the value does not parse
}

// ours reports whether the key is this host's: present, on etcd lease id,
// with our PublicIP.
func (k ownKey) ours(id clientv3.LeaseID, publicIP netip.Addr) bool {
	return k.present && k.lease == id && k.publicIP == publicIP
}

func ownKeyOf(kv *mvccpb.KeyValue) ownKey {
	ip, _ := parseLeaseValue(kv.Value)
	return ownKey{present: true, lease: clientv3.LeaseID(kv.Lease), publicIP: ip}
}

// watchOwnKey tells Keep, through changes, what becomes of this host's key,
// until ctx is done: first its state when the watch starts, then its state
// after each change. Keep, which alone knows the current etcd lease, judges
// whether the key is still ours. Only the latest state matters, so an
// unread one is replaced. Without this watch, a deleted or taken-over key
// would be noticed only at the next renewal, up to a day later, while
// another host may lease the same subnet.
func (l *Lease) watchOwnKey(ctx context.Context, changes chan ownKey) {
	r := l.reg
	b := r.backoff(r.opts.retryMax)
	for ctx.Err() == nil {
		rev, err := l.lookOwnKey(ctx, changes)
		if err == nil {
			err = l.followOwnKey(ctx, rev, changes, b.reset)
		}
		if err != nil && ctx.Err() == nil {
			r.log.Debug("watch of our subnet key ended; resuming", "key", l.key, "err", err)
			sleep(ctx, b.next())
		}
	}
}

// lookOwnKey reads the key once, so that nothing between Acquire (or a
// broken watch) and the watch goes unseen, and returns the revision read.
func (l *Lease) lookOwnKey(ctx context.Context, changes chan ownKey) (int64, error) {
	r := l.reg
	rctx, cancel := r.request(ctx)
	defer cancel()
	resp, err := r.cli.Get(rctx, l.key)
	r.observe(ctx, err)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", l.key, err)
	}
	k := ownKey{}
	if len(resp.Kvs) > 0 {
		k = ownKeyOf(resp.Kvs[0])
	}
	offer(changes, k)
	return resp.Header.Revision, nil
}

// followOwnKey watches the key from after rev until ctx is done or the watch
// ends (a compacted revision ends it too: the caller reads the key again).
func (l *Lease) followOwnKey(ctx context.Context, rev int64, changes chan ownKey, progressed func()) error {
	r := l.reg
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for resp := range r.cli.Watch(wctx, l.key, clientv3.WithRev(rev+1)) {
		if resp.CompactRevision != 0 {
			return fmt.Errorf("watch %s: revision %d compacted", l.key, rev+1)
		}
		if err := resp.Err(); err != nil {
			return fmt.Errorf("watch %s: %w", l.key, err)
		}
		progressed()
		if len(resp.Events) == 0 {
			continue
		}
		ev := resp.Events[len(resp.Events)-1]
		if ev.Type == mvccpb.DELETE {
			offer(changes, ownKey{})
		} else {
			offer(changes, ownKeyOf(ev.Kv))
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("watch %s: channel closed", l.key)
}

// offer puts k in changes (capacity 1), replacing a state not yet read.
// The watch is the only sender.
func offer(changes chan ownKey, k ownKey) {
	for {
		select {
		case changes <- k:
			return
		default:
		}
		select {
		case <-changes:
		default:
		}
	}
}
