package forward

import (
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/vishvananda/netns"
)

// needRoot skips a test that needs CAP_NET_ADMIN when not root, except
// under CI=true, where a skip would hide that nothing was tested.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("this test needs root (a network namespace and nftables), and CI=true forbids skipping it")
	}
	t.Skip("this test needs root (a network namespace and nftables); run as root, e.g. sudo make test")
}

// newNetNS makes an unnamed network namespace that lives as long as the
// test, and returns its fd.
func newNetNS(t *testing.T) int {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		t.Fatalf("new network namespace: %v", err)
	}
	if err := netns.Set(orig); err != nil {
		runtime.LockOSThread()
		t.Fatalf("back to the original namespace: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	return int(ns)
}

func TestParseRoundTrip(t *testing.T) {
	for _, p := range []string{"100.96.0.0/16", "10.0.0.0/8", "192.0.2.7/32"} {
		for _, dst := range []bool{false, true} {
			x := rule{dst: dst, prefix: netip.MustParsePrefix(p)}
			got, err := parse(exprs(x))
			if err != nil || got != x {
				t.Errorf("%v came back as %v, %v", x, got, err)
			}
		}
	}
	drop := exprs(rule{prefix: netip.MustParsePrefix("100.96.0.0/16")})
	drop[len(drop)-1] = &expr.Verdict{Kind: expr.VerdictDrop}
	if _, err := parse(drop); err == nil || !strings.Contains(err.Error(), "not accept") {
		t.Errorf("a drop rule parsed: %v", err)
	}
	noCounter := exprs(rule{prefix: netip.MustParsePrefix("100.96.0.0/16")})
	noCounter = append(noCounter[:3], noCounter[4])
	if _, err := parse(noCounter); err == nil {
		t.Error("a rule without the counter parsed")
	}
}

// iptablesFilter makes the table and chain iptables-nft makes for
// "iptables -P FORWARD DROP", with another program's rule in the chain.
func iptablesFilter(t *testing.T, c *nftables.Conn) *nftables.Chain {
	t.Helper()
	drop := nftables.ChainPolicyDrop
	tbl := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: TableName})
	ch := c.AddChain(&nftables.Chain{Name: ChainName, Table: tbl, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &drop})
	c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: exprs(rule{prefix: netip.MustParsePrefix("198.51.100.0/24")}),
		UserData: userdata.AppendString(nil, userdata.TypeComment, "someone else's")})
	if err := c.Flush(); err != nil {
		t.Fatalf("nftables in a fresh namespace: %v", err)
	}
	return ch
}

func TestRulesInNetNS(t *testing.T) {
	needRoot(t)
	fd := newNetNS(t)
	c, err := nftables.New(nftables.WithNetNSFd(fd))
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(netip.MustParsePrefix("100.96.0.0/16"), InNetNS(fd))
	if err != nil {
		t.Fatal(err)
	}
	if fault, _, err := r.Ensure(); err != nil || fault != "" {
		t.Fatalf("Ensure without a FORWARD chain: %q, %v; want nothing done", fault, err)
	}
	if tables, _ := c.ListTablesOfFamily(nftables.TableFamilyIPv4); len(tables) != 0 {
		t.Fatalf("Ensure without a FORWARD chain made tables: %v", tables)
	}
	ch := iptablesFilter(t, c)
	all := func() []*nftables.Rule {
		t.Helper()
		rs, err := c.GetRules(ch.Table, ch)
		if err != nil {
			t.Fatal(err)
		}
		return rs
	}
	mustExact := func() {
		t.Helper()
		rs := all()
		if len(rs) != 3 {
			t.Fatalf("chain holds %d rules, want the other's and weft's 2", len(rs))
		}
		if s, _ := userdata.GetString(rs[0].UserData, userdata.TypeComment); s != "someone else's" {
			t.Errorf("rule 1 is %q's, want the other program's first, untouched", s)
		}
		mine, err := ours(c, ch)
		if err != nil {
			t.Fatal(err)
		}
		if d := r.diff(mine); d != "" {
			t.Fatal(d)
		}
	}
	fault, _, err := r.Ensure()
	if err != nil || !strings.Contains(fault, "missing") {
		t.Fatalf("first Ensure: %q, %v; want the rules reported missing and added", fault, err)
	}
	mustExact()
	if fault, _, err := r.Ensure(); err != nil || fault != "" {
		t.Fatalf("second Ensure: %q, %v; want nothing to repair", fault, err)
	}
	mustExact()

	damages := []struct {
		name  string
		do    func()
		fault string
	}{
		{"one deleted", func() {
			mine, _ := ours(c, ch)
			c.DelRule(mine[1])
		}, "holds 1 rules"},
		{"chain flushed (iptables -F FORWARD)", func() {
			c.FlushChain(ch)
			c.AddRule(&nftables.Rule{Table: ch.Table, Chain: ch, Exprs: exprs(rule{prefix: netip.MustParsePrefix("198.51.100.0/24")}),
				UserData: userdata.AppendString(nil, userdata.TypeComment, "someone else's")})
		}, "missing"},
		{"one changed to another network", func() {
			mine, _ := ours(c, ch)
			mine[0].Exprs = exprs(rule{prefix: netip.MustParsePrefix("100.97.0.0/16")})
			c.ReplaceRule(mine[0])
		}, `rule 1 tagged "weft forward" is "ip saddr 100.97.0.0/16 accept"`},
		{"one changed to drop", func() {
			mine, _ := ours(c, ch)
			mine[1].Exprs[len(mine[1].Exprs)-1] = &expr.Verdict{Kind: expr.VerdictDrop}
			c.ReplaceRule(mine[1])
		}, "not weft's"},
	}
	for _, d := range damages {
		t.Run("Ensure repairs: "+d.name, func(t *testing.T) {
			d.do()
			if err := c.Flush(); err != nil {
				t.Fatalf("damaging: %v", err)
			}
			fault, _, err := r.Ensure()
			if err != nil || !strings.Contains(fault, d.fault) {
				t.Fatalf("Ensure: %q, %v; want it to say %q", fault, err, d.fault)
			}
			mustExact()
		})
	}

	t.Run("Remove deletes weft's rules only", func(t *testing.T) {
		n, err := Remove(fd)
		if err != nil || n != 2 {
			t.Fatalf("Remove: %d, %v; want 2 removed", n, err)
		}
		rs := all()
		if len(rs) != 1 {
			t.Fatalf("chain holds %d rules after Remove, want the other program's 1", len(rs))
		}
		if n, err := Remove(fd); err != nil || n != 0 {
			t.Fatalf("second Remove: %d, %v", n, err)
		}
	})
}
