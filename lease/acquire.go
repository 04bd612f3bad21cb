package lease

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrLeaseLost means another host now holds the subnet this host had leased
// (ours expired while etcd was out of reach, and the subnet was taken). The
// host must stop using the subnet; flanneld exits in this case.
var ErrLeaseLost = errors.New("subnet lease lost to another host")

// errRaced means another host created the key first; Acquire picks again.
var errRaced = errors.New("subnet taken by another host meanwhile")

// raceRetries bounds how often Acquire picks again after losing a race, as
// flannel's does (raceRetries = 10).
const raceRetries = 10

// candidates is how many free subnets a random pick chooses among. Like
// flannel, weft takes the first 100 free subnets from SubnetMin up and picks
// one at random: hosts starting together rarely collide, and the network
// still fills from the bottom.
const candidates = 100

// Origin says how a host came by its lease, for the log and `weft demo`.
type Origin int8

const (
	OriginPublicIP    Origin = iota + 1 // took back the lease that carries our PublicIP
	OriginSubnetFile                    // the previous subnet named in the subnet file
	OriginRandom                        // a free subnet picked at random
	OriginReservation                   // an operator's reservation (no etcd lease) with our PublicIP
)

func (o Origin) String() string {
	switch o {
	case OriginPublicIP:
		return "reused by PublicIP"
	case OriginSubnetFile:
		return "from subnet file"
	case OriginRandom:
		return "new"
	case OriginReservation:
		return "reservation"
	}
	return fmt.Sprintf("Origin(%d)", int8(o))
}

// Lease is this host's subnet, held in etcd under <prefix>/subnets/<subnet>.
type Lease struct {
	Subnet   netip.Prefix
	PublicIP netip.Addr
	Origin   Origin

	reg    *Registry
	key    string
	id     clientv3.LeaseID // 0 for a reservation; Keep owns it after Acquire
	expiry atomic.Int64     // unix nanoseconds; 0 for a reservation
}

// Expiry is when the etcd lease runs out unless renewed (zero for a
// reservation, which never expires). Safe to call while Keep runs.
func (l *Lease) Expiry() time.Time {
	n := l.expiry.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

func (l *Lease) setExpiry(t time.Time) { l.expiry.Store(t.UnixNano()) }

// entry is one key under <prefix>/subnets/ as Acquire and WatchRoutes see it.
type entry struct {
	key      string
	subnet   netip.Prefix // invalid if the key's name does not parse
	publicIP netip.Addr   // invalid if the value does not parse
	lease    clientv3.LeaseID
	modRev   int64
	err      error // why subnet or publicIP is invalid
}

func (r *Registry) parseKV(kv *mvccpb.KeyValue) entry {
	e := entry{key: string(kv.Key), lease: clientv3.LeaseID(kv.Lease), modRev: kv.ModRevision}
	e.subnet, e.err = ParseSubnetKey(e.key[min(len(e.key), len(r.subnetsDir())):])
	if e.err == nil {
		e.publicIP, e.err = parseLeaseValue(kv.Value)
	}
	return e
}

func (r *Registry) list(ctx context.Context) ([]entry, int64, error) {
	rctx, cancel := r.request(ctx)
	defer cancel()
	resp, err := r.cli.Get(rctx, r.subnetsDir(), clientv3.WithPrefix())
	r.observe(ctx, err)
	if err != nil {
		return nil, 0, fmt.Errorf("list %s: %w", r.subnetsDir(), err)
	}
	es := make([]entry, len(resp.Kvs))
	for i, kv := range resp.Kvs {
		es[i] = r.parseKV(kv)
	}
	return es, resp.Header.Revision, nil
}

// Acquire gets this host a subnet lease, trying in flannel's order:
//
//  1. the key whose value carries publicIP, if its subnet fits cfg: a leased
//     one is taken back onto a fresh etcd lease (OriginPublicIP); a reservation
//     is used as it is, with no etcd lease (OriginReservation). A leased one
//     that no longer fits cfg is deleted, as flannel does; a reservation never is.
//  2. previous (the subnet file's subnet; the zero Prefix for none), if it fits
//     cfg and no key overlaps it (OriginSubnetFile);
//  3. a free subnet between SubnetMin and SubnetMax at random (OriginRandom).
//
// New keys are created by a transaction that succeeds only if the key does
// not exist, so of two hosts racing for a subnet exactly one gets it; the
// other picks again (up to 10 times). Keys with an etcd lease get one with
// Options.LeaseTTL; call Keep to renew it.
func (r *Registry) Acquire(ctx context.Context, cfg Config, publicIP netip.Addr, previous netip.Prefix) (*Lease, error) {
	if !publicIP.Is4() {
		return nil, fmt.Errorf("acquire a subnet: public IP %v is not IPv4", publicIP)
	}
	for range raceRetries {
		l, err := r.tryAcquire(ctx, cfg, publicIP, previous)
		if !errors.Is(err, errRaced) {
			if err != nil {
				return nil, fmt.Errorf("acquire a subnet for %s: %w", publicIP, err)
			}
			r.log.Info("subnet lease acquired", "subnet", l.Subnet, "public_ip", publicIP, "origin", l.Origin.String(), "expires", l.Expiry())
			return l, nil
		}
	}
	return nil, fmt.Errorf("acquire a subnet for %s: lost the race for a subnet %d times", publicIP, raceRetries)
}

func (r *Registry) tryAcquire(ctx context.Context, cfg Config, publicIP netip.Addr, previous netip.Prefix) (*Lease, error) {
	entries, _, err := r.list(ctx)
	if err != nil {
		return nil, err
	}
	mine := slices.DeleteFunc(slices.Clone(entries), func(e entry) bool { return e.err != nil || e.publicIP != publicIP })
	// Reservations (lease 0) first: an operator's word beats a lease left
	// from before.
	slices.SortStableFunc(mine, func(a, b entry) int { return cmp.Compare(a.lease, b.lease) })
	for _, e := range mine {
		switch {
		case !cfg.Fits(e.subnet) && e.lease == 0:
			r.log.Warn("a reservation carries our PublicIP but does not fit the network config; leaving it alone",
				"subnet", e.subnet, "public_ip", publicIP, "network", cfg.Network, "subnet_len", cfg.SubnetLen)
		case !cfg.Fits(e.subnet):
			r.log.Info("our previous lease does not fit the network config; deleting it", "subnet", e.subnet, "public_ip", publicIP)
			if err := r.deleteUnchanged(ctx, e); err != nil {
				return nil, err
			}
		case e.lease == 0:
			return &Lease{Subnet: e.subnet, PublicIP: publicIP, Origin: OriginReservation, reg: r, key: e.key}, nil
		default:
			return r.takeBack(ctx, e, publicIP)
		}
	}

	taken := occupied(entries, cfg.SubnetLen)
	if previous.IsValid() {
		prev := previous.Masked()
		switch {
		case !cfg.Fits(prev):
			r.log.Info("previous subnet does not fit the network config; ignoring it", "subnet", prev, "network", cfg.Network, "subnet_len", cfg.SubnetLen)
		case taken.has(prev):
			r.log.Info("previous subnet is taken by another host; picking a free one", "subnet", prev)
		default:
			return r.create(ctx, prev, publicIP, OriginSubnetFile)
		}
	}
	subnet, err := pick(cfg, taken)
	if err != nil {
		return nil, err
	}
	return r.create(ctx, subnet, publicIP, OriginRandom)
}

// taken is the set of subnets that keys under <prefix>/subnets/ name, whatever
// their value: a key with a bad value still blocks its subnet.
type taken struct {
	exact map[netip.Prefix]bool // of the config's SubnetLen: one lookup
	other []netip.Prefix        // any other length (reservations, old configs): overlap test
}

func occupied(entries []entry, subnetLen int) taken {
	t := taken{exact: make(map[netip.Prefix]bool, len(entries))}
	for _, e := range entries {
		switch {
		case !e.subnet.IsValid():
		case e.subnet.Bits() == subnetLen:
			t.exact[e.subnet] = true
		default:
			t.other = append(t.other, e.subnet)
		}
	}
	return t
}

func (t taken) has(p netip.Prefix) bool {
	if t.exact[p] {
		return true
	}
	for _, o := range t.other {
		if o.Overlaps(p) {
			return true
		}
	}
	return false
}

func pick(cfg Config, t taken) (netip.Prefix, error) {
	size := uint32(1) << (32 - cfg.SubnetLen)
	var free []netip.Prefix
	for a, last := u32(cfg.SubnetMin), u32(cfg.SubnetMax); ; a += size {
		if p := netip.PrefixFrom(addr4(a), cfg.SubnetLen); !t.has(p) {
			if free = append(free, p); len(free) == candidates {
				break
			}
		}
		if a >= last { // checked before a += size, which could wrap past 255.255.255.255
			break
		}
	}
	if len(free) == 0 {
		return netip.Prefix{}, fmt.Errorf("no free /%d subnet between %s and %s", cfg.SubnetLen, cfg.SubnetMin, cfg.SubnetMax)
	}
	return free[rand.IntN(len(free))], nil
}

// grant makes an etcd lease of Options.LeaseTTL and says when it expires,
// counted from before the request so that the estimate errs early.
func (r *Registry) grant(ctx context.Context) (clientv3.LeaseID, time.Time, error) {
	start := time.Now()
	rctx, cancel := r.request(ctx)
	defer cancel()
	resp, err := r.cli.Grant(rctx, int64(r.opts.LeaseTTL/time.Second))
	r.observe(ctx, err)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("grant an etcd lease: %w", err)
	}
	return resp.ID, start.Add(time.Duration(resp.TTL) * time.Second), nil
}

// revoke drops an etcd lease no key uses any more. Best effort: if it fails,
// the lease just runs out on its own.
func (r *Registry) revoke(ctx context.Context, id clientv3.LeaseID) {
	rctx, cancel := r.request(context.WithoutCancel(ctx))
	defer cancel()
	if _, err := r.cli.Revoke(rctx, id); err != nil {
		r.log.Debug("revoke unused etcd lease", "lease", int64(id), "err", err)
	}
}

// create puts a new key for subnet on a fresh etcd lease, only if no key exists.
func (r *Registry) create(ctx context.Context, subnet netip.Prefix, publicIP netip.Addr, origin Origin) (*Lease, error) {
	id, exp, err := r.grant(ctx)
	if err != nil {
		return nil, err
	}
	l := &Lease{Subnet: subnet, PublicIP: publicIP, Origin: origin, reg: r, key: r.subnetKey(subnet), id: id}
	ok, err := r.putIfAbsent(ctx, l.key, publicIP, id)
	if err != nil || !ok {
		r.revoke(ctx, id)
		if err == nil {
			r.log.Debug("lost the race for a subnet; picking again", "subnet", subnet)
			err = errRaced
		}
		return nil, err
	}
	l.setExpiry(exp)
	return l, nil
}

func (r *Registry) putIfAbsent(ctx context.Context, key string, publicIP netip.Addr, id clientv3.LeaseID) (bool, error) {
	rctx, cancel := r.request(ctx)
	defer cancel()
	resp, err := r.cli.Txn(rctx).
		If(clientv3.Compare(clientv3.Version(key), "=", 0)).
		Then(clientv3.OpPut(key, leaseValue(publicIP), clientv3.WithLease(id))).
		Commit()
	r.observe(ctx, err)
	if err != nil {
		return false, fmt.Errorf("create %s: %w", key, err)
	}
	return resp.Succeeded, nil
}

// takeBack moves our old key onto a fresh etcd lease, with weft's value,
// provided nobody changed the key since we listed it.
func (r *Registry) takeBack(ctx context.Context, e entry, publicIP netip.Addr) (*Lease, error) {
	id, exp, err := r.grant(ctx)
	if err != nil {
		return nil, err
	}
	rctx, cancel := r.request(ctx)
	defer cancel()
	resp, err := r.cli.Txn(rctx).
		If(clientv3.Compare(clientv3.ModRevision(e.key), "=", e.modRev)).
		Then(clientv3.OpPut(e.key, leaseValue(publicIP), clientv3.WithLease(id))).
		Commit()
	r.observe(ctx, err)
	if err != nil || !resp.Succeeded {
		r.revoke(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("take back %s: %w", e.key, err)
		}
		return nil, errRaced
	}
	// The old etcd lease now holds no key (unless someone attached others to
	// it, which flannel never does): drop it rather than let it linger a day.
	if ttl, err := r.cli.TimeToLive(rctx, e.lease, clientv3.WithAttachedKeys()); err == nil && len(ttl.Keys) == 0 {
		r.revoke(ctx, e.lease)
	}
	l := &Lease{Subnet: e.subnet, PublicIP: publicIP, Origin: OriginPublicIP, reg: r, key: e.key, id: id}
	l.setExpiry(exp)
	return l, nil
}

func (r *Registry) deleteUnchanged(ctx context.Context, e entry) error {
	rctx, cancel := r.request(ctx)
	defer cancel()
	_, err := r.cli.Txn(rctx).
		If(clientv3.Compare(clientv3.ModRevision(e.key), "=", e.modRev)).
		Then(clientv3.OpDelete(e.key)).
		Commit()
	r.observe(ctx, err)
	if err != nil {
		return fmt.Errorf("delete %s: %w", e.key, err)
	}
	return nil
}

// Keep renews the lease RenewMargin before it expires until ctx is done, then
// returns nil. It never revokes the lease: a host that restarts within the
// TTL takes the same subnet back, as with flannel. While etcd is unreachable it
// retries with backoff (up to a minute apart, as flanneld). If the lease ran
// out meanwhile, or the key was deleted, it re-creates the key if the subnet
// is still free, and returns ErrLeaseLost if another host holds it.
//
// Keep also watches the key, and checks it at once when it changes (deleted,
// its etcd lease revoked, taken over), not at the next renewal. It takes the
// subnet back, atomically and only if no key exists, rather than give it up
// as flanneld does: this host's pods have addresses in the subnet and the
// subnet file names it, so keeping it keeps them working. If another host
// holds it, the caller must stop using it (weftd exits).
//
// For a reservation there is nothing to renew: Keep just waits for ctx.
// Call it once, typically in its own goroutine.
func (l *Lease) Keep(ctx context.Context) error {
	r := l.reg
	if l.id == 0 {
		<-ctx.Done()
		return nil
	}
	wctx, stopWatch := context.WithCancel(ctx)
	changes := make(chan ownKey, 1)
	var watching sync.WaitGroup
	watching.Go(func() { l.watchOwnKey(wctx, changes) })
	defer watching.Wait()
	defer stopWatch()

	b := r.backoff(time.Minute)
	failures := 0
	for {
		if !l.waitRenewal(ctx, changes) {
			return nil
		}
		err := l.renew(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, ErrLeaseLost):
			r.log.Error("subnet lease lost: another host holds the subnet now", "subnet", l.Subnet, "err", err)
			return err
		case err == nil:
			if failures > 0 {
				r.log.Info("subnet lease renewed after failures", "subnet", l.Subnet, "failures", failures, "expires", l.Expiry())
			}
			failures = 0
			b.reset()
			continue
		}
		if failures++; failures == 1 {
			r.log.Warn("subnet lease renewal failed; retrying", "subnet", l.Subnet, "expires", l.Expiry(), "err", err)
		}
		if !sleep(ctx, b.next()) {
			return nil
		}
	}
}

// waitRenewal waits until the lease is due for renewal, or the watch says
// the key is no longer ours; it reports whether ctx is still live.
func (l *Lease) waitRenewal(ctx context.Context, changes <-chan ownKey) bool {
	t := time.NewTimer(max(time.Until(l.Expiry())-l.reg.opts.RenewMargin, 0))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case k := <-changes:
			if !k.ours(l.id, l.PublicIP) {
				l.reg.log.Debug("our subnet key changed in etcd; checking it now", "key", l.key, "present", k.present)
				return true
			}
		}
	}
}

func (l *Lease) renew(ctx context.Context) error {
	r := l.reg
	start := time.Now()
	rctx, cancel := r.request(ctx)
	defer cancel()
	resp, err := r.cli.KeepAliveOnce(rctx, l.id)
	r.observe(ctx, err)
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		// Expired (etcd was out of reach for longer than the TTL) or revoked:
		// etcd deleted our key with it.
		return l.recreate(ctx, 0)
	}
	if err != nil {
		return fmt.Errorf("renew lease on %s: %w", l.key, err)
	}
	l.setExpiry(start.Add(time.Duration(resp.TTL) * time.Second))

	// A live etcd lease does not prove the key is still on it: an operator may
	// have deleted the key, and then any host could take the subnet.
	get, err := r.cli.Get(rctx, l.key)
	r.observe(ctx, err)
	if err != nil {
		return fmt.Errorf("check %s: %w", l.key, err)
	}
	if len(get.Kvs) == 0 {
		return l.recreate(ctx, l.id)
	}
	switch k := ownKeyOf(get.Kvs[0]); {
	case k.lease != l.id:
		return fmt.Errorf("%w: %s is on another etcd lease now", ErrLeaseLost, l.key)
	case k.publicIP != l.PublicIP:
		return fmt.Errorf("%w: %s names %v now", ErrLeaseLost, l.key, k.publicIP)
	}
	return nil
}

// recreate puts our key back after it vanished, on lease id, or on a fresh
// etcd lease if id is 0.
func (l *Lease) recreate(ctx context.Context, id clientv3.LeaseID) error {
	r := l.reg
	exp := l.Expiry()
	if id == 0 {
		var err error
		if id, exp, err = r.grant(ctx); err != nil {
			return err
		}
	}
	ok, err := r.putIfAbsent(ctx, l.key, l.PublicIP, id)
	if err != nil || !ok {
		if id != l.id {
			r.revoke(ctx, id)
		}
		if err != nil {
			return err
		}
		return fmt.Errorf("%w: %s was re-created by someone else", ErrLeaseLost, l.key)
	}
	r.log.Warn("subnet key had vanished from etcd; re-created it", "subnet", l.Subnet, "key", l.key)
	l.id = id
	l.setExpiry(exp)
	return nil
}
