package masq

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/google/nftables"
)

// TableName names weft's table, of family ip: "nft list table ip weft"
// shows it. It holds one chain, ChainName, and nothing else of anyone's.
const (
	TableName = "weft"
	ChainName = "postrouting"
)

// Table is weft's nftables table in one network namespace: a nat chain on
// the postrouting hook, at source-NAT priority, holding Rules in order.
// Its methods are safe for concurrent use.
type Table struct {
	netns       int // fd of the network namespace; 0 is the caller's
	fullyRandom bool
	rules       []Rule

	mu sync.Mutex // one change at a time
}

// Option changes where or how a Table works.
type Option func(*Table)

// InNetNS makes the table live in the network namespace whose file
// descriptor is fd, instead of the caller's. The fd must stay open while
// the Table is used.
func InNetNS(fd int) Option { return func(t *Table) { t.netns = fd } }

// PlainMasquerade makes the table masquerade with the kernel's usual choice
// of source ports instead of fully random ones (flanneld's
// --ip-masq-random-fully-disable).
func PlainMasquerade() Option { return func(t *Table) { t.fullyRandom = false } }

// RemoveTable deletes weft's table from the network namespace whose fd is
// netns (0: the caller's), if there is one, touching nothing else: what a
// weftd started without --ip-masq, or weftd --cleanup, does.
func RemoveTable(netns int) error {
	return (&Table{netns: netns}).Remove()
}

// New describes weft's table for network and subnet (see Rules), with
// fully random masquerading unless PlainMasquerade is given; it does not
// touch the kernel until Install.
func New(network, subnet netip.Prefix, opts ...Option) (*Table, error) {
	t := &Table{fullyRandom: true}
	for _, o := range opts {
		o(t)
	}
	rules, err := Rules(network, subnet, t.fullyRandom)
	if err != nil {
		return nil, err
	}
	t.rules = rules
	return t, nil
}

// conn is a fresh connection for each operation: a Conn keeps the first
// error of a batch it could not build, and no operation here should inherit
// another's.
func (t *Table) conn() (*nftables.Conn, error) {
	c, err := nftables.New(nftables.WithNetNSFd(t.netns))
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	return c, nil
}

var (
	table  = &nftables.Table{Family: nftables.TableFamilyIPv4, Name: TableName}
	accept = nftables.ChainPolicyAccept
)

// Install puts the table into the kernel in one transaction: whatever weft
// table is there (one left by a crash, or damaged) is deleted and the table
// made anew, so the rules are never missing in between and Install can be
// called any number of times. An error here usually means the kernel has
// no nf_tables, nat or masquerade support, or the caller lacks
// CAP_NET_ADMIN.
func (t *Table) Install() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.install()
}

func (t *Table) install() error {
	c, err := t.conn()
	if err != nil {
		return err
	}
	c.AddTable(table) // so that the delete finds one
	c.DelTable(table)
	c.AddTable(table)
	ch := c.AddChain(&nftables.Chain{
		Name: ChainName, Table: table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &accept,
	})
	for _, r := range t.rules {
		c.AddRule(&nftables.Rule{Table: table, Chain: ch, Exprs: exprs(r)})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: install table ip %s: %w", TableName, err)
	}
	return nil
}

// Verify compares what the kernel holds with what Install puts there. It
// returns "" if the table is exactly as installed, else what differs (the
// first difference found), and changes nothing.
func (t *Table) Verify() (string, error) {
	c, err := t.conn()
	if err != nil {
		return "", err
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return "", fmt.Errorf("nftables: list tables: %w", err)
	}
	i := slices.IndexFunc(tables, func(x *nftables.Table) bool { return x.Name == TableName })
	if i < 0 {
		return fmt.Sprintf("table ip %s is missing", TableName), nil
	}
	if tables[i].Flags != 0 {
		// NFT_TABLE_F_DORMANT, for one, switches every chain off.
		return fmt.Sprintf("table ip %s has flags %#x", TableName, tables[i].Flags), nil
	}
	all, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return "", fmt.Errorf("nftables: list chains: %w", err)
	}
	var names []string
	var ch *nftables.Chain
	for _, x := range all {
		if x.Table != nil && x.Table.Name == TableName {
			names = append(names, x.Name)
			ch = x
		}
	}
	if len(names) != 1 || names[0] != ChainName {
		return fmt.Sprintf("table ip %s holds chains %q, want only %q", TableName, names, ChainName), nil
	}
	if ch.Type != nftables.ChainTypeNAT || !eq(ch.Hooknum, nftables.ChainHookPostrouting) ||
		!eq(ch.Priority, nftables.ChainPriorityNATSource) || !eq(ch.Policy, &accept) {
		return fmt.Sprintf("chain %s is not a nat chain on postrouting at priority srcnat with policy accept", ChainName), nil
	}
	got, err := c.GetRules(table, ch)
	if err != nil {
		return "", fmt.Errorf("nftables: list rules: %w", err)
	}
	if len(got) != len(t.rules) {
		return fmt.Sprintf("chain %s holds %d rules, want %d", ChainName, len(got), len(t.rules)), nil
	}
	for i, want := range t.rules {
		r, err := parseRule(got[i].Exprs)
		if err != nil {
			return fmt.Sprintf("rule %d is not weft's (%v), want %q", i+1, err, want), nil
		}
		if r != want {
			return fmt.Sprintf("rule %d is %q, want %q", i+1, r, want), nil
		}
	}
	return "", nil
}

func eq[T comparable](a, b *T) bool { return a != nil && b != nil && *a == *b }

// Check verifies the table and, if it is not exactly as installed (someone
// flushed the ruleset, deleted or edited a rule), installs it again. It
// returns what was wrong, "" if nothing was; with a nil error, a non-empty
// answer means the table has been repaired.
func (t *Table) Check() (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fault, err := t.Verify()
	if err != nil || fault == "" {
		return "", err
	}
	if err := t.install(); err != nil {
		return fault, err
	}
	return fault, nil
}

// Remove deletes weft's table, if there is one, in one transaction. It
// touches nothing else.
func (t *Table) Remove() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	c, err := t.conn()
	if err != nil {
		return err
	}
	c.AddTable(table) // so that the delete finds one
	c.DelTable(table)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: remove table ip %s: %w", TableName, err)
	}
	return nil
}
