// Package forward keeps weft's accept rules for the overlay network in
// iptables' FORWARD chain, flanneld's --iptables-forward-rules: on a host
// whose FORWARD policy is DROP (Docker sets it so; hardened hosts do), pod
// traffic crossing the host would die there without them.
//
// The rules go into the chain that holds the DROP policy, not into a table
// of weft's own. nftables runs every base chain on the forward hook: an
// accept in one table ends only that table's chain, and a drop in another
// still drops the packet. iptables-nft keeps its FORWARD chain as the base
// chain FORWARD of table "ip filter"; weft appends its two rules there, as
// flanneld appends its own with iptables, and tags each with the comment
// Comment (nftables user data, which nft and iptables-nft both list) so that
// they can be found, checked and removed without touching anyone else's.
//
// A host without that chain has no iptables FORWARD policy to get past:
// then there is nothing to do, until something (Docker starting, say)
// creates it; Ensure, called periodically, adds the rules then.
//
// iptables-legacy's chains live outside nftables and are out of reach
// here: Ensure reports when the legacy filter table is loaded.
package forward

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
)

// Comment tags weft's rules in the FORWARD chain.
const Comment = "weft forward"

// The table and chain iptables-nft keeps iptables' filter FORWARD chain in.
const (
	TableName = "filter"
	ChainName = "FORWARD"
)

// Rules are weft's two accept rules for one overlay network in one network
// namespace: "ip saddr NETWORK accept" and "ip daddr NETWORK accept", at the
// end of the FORWARD chain. Its methods are safe for concurrent use.
type Rules struct {
	netns   int
	network netip.Prefix

	mu sync.Mutex // one change at a time
}

// Option changes where Rules work.
type Option func(*Rules)

// InNetNS makes the rules live in the network namespace whose file
// descriptor is fd, instead of the caller's. The fd must stay open while
// the Rules are used.
func InNetNS(fd int) Option { return func(r *Rules) { r.netns = fd } }

// New describes weft's accept rules for network, an IPv4 prefix without
// host bits; it does not touch the kernel until Ensure.
func New(network netip.Prefix, opts ...Option) (*Rules, error) {
	if !network.IsValid() || !network.Addr().Is4() || network != network.Masked() {
		return nil, fmt.Errorf("forward: network %v: not an IPv4 prefix without host bits", network)
	}
	r := &Rules{network: network}
	for _, o := range opts {
		o(r)
	}
	return r, nil
}

// rule is one accept rule: its address field and the network it matches.
type rule struct {
	dst    bool // daddr, else saddr
	prefix netip.Prefix
}

func (x rule) String() string {
	field := "saddr"
	if x.dst {
		field = "daddr"
	}
	return fmt.Sprintf("ip %s %v accept", field, x.prefix)
}

func (r *Rules) want() []rule {
	return []rule{{dst: false, prefix: r.network}, {dst: true, prefix: r.network}}
}

var forwardHook = nftables.ChainHookForward

func conn(netns int) (*nftables.Conn, error) {
	c, err := nftables.New(nftables.WithNetNSFd(netns))
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	return c, nil
}

// forwardChain returns iptables-nft's FORWARD chain, nil if there is none.
func forwardChain(c *nftables.Conn) (*nftables.Chain, error) {
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return nil, fmt.Errorf("nftables: list chains: %w", err)
	}
	for _, ch := range chains {
		if ch.Table != nil && ch.Table.Name == TableName && ch.Name == ChainName &&
			ch.Hooknum != nil && *ch.Hooknum == *forwardHook {
			return ch, nil
		}
	}
	return nil, nil
}

// ours returns the rules of ch tagged with Comment.
func ours(c *nftables.Conn, ch *nftables.Chain) ([]*nftables.Rule, error) {
	all, err := c.GetRules(ch.Table, ch)
	if err != nil {
		return nil, fmt.Errorf("nftables: list rules of %s %s: %w", TableName, ChainName, err)
	}
	var mine []*nftables.Rule
	for _, x := range all {
		if s, ok := userdata.GetString(x.UserData, userdata.TypeComment); ok && s == Comment {
			mine = append(mine, x)
		}
	}
	return mine, nil
}

// Ensure makes weft's two rules sit in the FORWARD chain, exactly once each,
// if the chain exists. It returns what it found wrong and repaired ("" if
// nothing was, or there is no FORWARD chain), and a warning when
// iptables-legacy's filter table is loaded too, whose FORWARD policy these
// rules cannot override.
func (r *Rules) Ensure() (fault, warning string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	warning = legacyWarning()
	c, err := conn(r.netns)
	if err != nil {
		return "", warning, err
	}
	ch, err := forwardChain(c)
	if err != nil || ch == nil {
		return "", warning, err
	}
	mine, err := ours(c, ch)
	if err != nil {
		return "", warning, err
	}
	fault = r.diff(mine)
	if fault == "" {
		return "", warning, nil
	}
	for _, x := range mine {
		if err := c.DelRule(x); err != nil {
			return fault, warning, fmt.Errorf("nftables: delete a stale weft rule: %w", err)
		}
	}
	for _, x := range r.want() {
		c.AddRule(&nftables.Rule{Table: ch.Table, Chain: ch, Exprs: exprs(x), UserData: userdata.AppendString(nil, userdata.TypeComment, Comment)})
	}
	if err := c.Flush(); err != nil {
		return fault, warning, fmt.Errorf("nftables: add weft's accept rules to %s %s: %w", TableName, ChainName, err)
	}
	return fault, warning, nil
}

// diff says how mine, weft's tagged rules found in the chain, differ from
// what they should be; "" if they do not.
func (r *Rules) diff(mine []*nftables.Rule) string {
	want := r.want()
	if len(mine) == 0 {
		return fmt.Sprintf("weft's rules are missing from %s %s", TableName, ChainName)
	}
	if len(mine) != len(want) {
		return fmt.Sprintf("%s %s holds %d rules tagged %q, want %d", TableName, ChainName, len(mine), Comment, len(want))
	}
	for i, x := range mine {
		got, err := parse(x.Exprs)
		if err != nil {
			return fmt.Sprintf("rule %d tagged %q is not weft's (%v), want %q", i+1, Comment, err, want[i])
		}
		if got != want[i] {
			return fmt.Sprintf("rule %d tagged %q is %q, want %q", i+1, Comment, got, want[i])
		}
	}
	return ""
}

// Remove deletes every rule tagged with Comment from iptables-nft's FORWARD
// chain in the network namespace whose fd is netns (0: the caller's), in
// one transaction, and touches nothing else. It returns how many it
// deleted.
func Remove(netns int) (int, error) {
	c, err := conn(netns)
	if err != nil {
		return 0, err
	}
	ch, err := forwardChain(c)
	if err != nil || ch == nil {
		return 0, err
	}
	mine, err := ours(c, ch)
	if err != nil {
		return 0, err
	}
	for _, x := range mine {
		if err := c.DelRule(x); err != nil {
			return 0, fmt.Errorf("nftables: delete weft's rule: %w", err)
		}
	}
	if len(mine) > 0 {
		if err := c.Flush(); err != nil {
			return 0, fmt.Errorf("nftables: delete weft's rules from %s %s: %w", TableName, ChainName, err)
		}
	}
	return len(mine), nil
}

// Offsets of the addresses in the IPv4 header.
const (
	saddrOffset = 12
	daddrOffset = 16
)

// exprs turns x into what iptables-nft writes for "-s|-d NETWORK -j
// ACCEPT": a load of the address, a mask unless a /32, a comparison, a
// counter (iptables keeps one per rule), the verdict.
func exprs(x rule) []expr.Any {
	off := uint32(saddrOffset)
	if x.dst {
		off = daddrOffset
	}
	es := []expr.Any{&expr.Payload{OperationType: expr.PayloadLoad, DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 4}}
	if x.prefix.Bits() < 32 {
		es = append(es, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: net.CIDRMask(x.prefix.Bits(), 32), Xor: make([]byte, 4)})
	}
	a := x.prefix.Addr().As4()
	return append(es, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a[:]}, &expr.Counter{}, &expr.Verdict{Kind: expr.VerdictAccept})
}

// parse reads back a rule in exactly the shape exprs writes.
func parse(es []expr.Any) (rule, error) {
	var x rule
	i := 0
	p, ok := at[*expr.Payload](es, i)
	if !ok || p.OperationType != expr.PayloadLoad || p.Base != expr.PayloadBaseNetworkHeader || p.Len != 4 ||
		(p.Offset != saddrOffset && p.Offset != daddrOffset) {
		return rule{}, fmt.Errorf("expression %d: not a load of the IPv4 source or destination", i)
	}
	x.dst = p.Offset == daddrOffset
	i++
	bits := 32
	if b, ok := at[*expr.Bitwise](es, i); ok {
		ones, size := net.IPMask(b.Mask).Size()
		if size != 32 || b.SourceRegister != p.DestRegister || b.DestRegister != p.DestRegister {
			return rule{}, fmt.Errorf("expression %d: not a prefix mask", i)
		}
		bits = ones
		i++
	}
	c, ok := at[*expr.Cmp](es, i)
	if !ok || c.Op != expr.CmpOpEq || c.Register != p.DestRegister || len(c.Data) != 4 {
		return rule{}, fmt.Errorf("expression %d: not an address comparison", i)
	}
	x.prefix = netip.PrefixFrom(netip.AddrFrom4([4]byte(c.Data)), bits)
	i++
	if _, ok := at[*expr.Counter](es, i); !ok {
		return rule{}, fmt.Errorf("expression %d: not a counter", i)
	}
	i++
	v, ok := at[*expr.Verdict](es, i)
	if !ok || v.Kind != expr.VerdictAccept {
		return rule{}, fmt.Errorf("expression %d: not accept", i)
	}
	if i+1 != len(es) {
		return rule{}, fmt.Errorf("expression %d after the verdict", i+1)
	}
	return x, nil
}

func at[T expr.Any](es []expr.Any, i int) (T, bool) {
	var zero T
	if i >= len(es) {
		return zero, false
	}
	e, ok := es[i].(T)
	return e, ok
}

// legacyWarning says so when iptables-legacy's filter table is loaded in
// the caller's network namespace: its FORWARD chain, if its policy is
// DROP, drops pod traffic whatever nftables accepts.
func legacyWarning() string {
	b, err := os.ReadFile("/proc/net/ip_tables_names")
	if err != nil || !slices.Contains(strings.Fields(string(b)), "filter") {
		return ""
	}
	return "iptables-legacy's filter table is loaded: weft's accept rules are in nftables (iptables-nft) and cannot override a legacy FORWARD policy of DROP; add \"-A FORWARD -s NETWORK -j ACCEPT\" and \"-d NETWORK\" with iptables-legacy, or use iptables-nft"
}
