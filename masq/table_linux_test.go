package masq

import (
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netns"

	"github.com/weft-dev/weft/internal/roottest"
)

// newNetNS makes an unnamed network namespace for the test and returns its
// fd; the namespace goes when the fd is closed at the end of the test. The
// host's own ruleset is never touched.
func newNetNS(t *testing.T) int {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New() // also moves this thread into it
	if err != nil {
		t.Fatalf("new network namespace: %v", err)
	}
	if err := netns.Set(orig); err != nil {
		runtime.LockOSThread() // a thread in the wrong namespace dies with its goroutine
		t.Fatalf("back to the original namespace: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	return int(ns)
}

func TestTableInNetNS(t *testing.T) {
	roottest.NeedRoot(t)
	fd := newNetNS(t)
	conn, err := nftables.New(nftables.WithNetNSFd(fd))
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := New(netip.MustParsePrefix("100.96.0.0/16"), netip.MustParsePrefix("100.96.1.0/24"), InNetNS(fd))
	if err != nil {
		t.Fatal(err)
	}
	// Another program's NAT table, which nothing here may touch.
	other := conn.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "other"})
	otherChain := conn.AddChain(&nftables.Chain{Name: "post", Table: other, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	conn.AddRule(&nftables.Rule{Table: other, Chain: otherChain, Exprs: []expr.Any{&expr.Masq{}}})
	if err := conn.Flush(); err != nil {
		t.Fatalf("nftables in a fresh namespace: %v", err)
	}
	otherIntact := func() {
		t.Helper()
		rules, err := conn.GetRules(other, otherChain)
		if err != nil || len(rules) != 1 {
			t.Fatalf("the other table's chain: %d rules, %v; want its 1 rule untouched", len(rules), err)
		}
	}
	mustExact := func() {
		t.Helper()
		fault, err := tbl.Verify()
		if err != nil || fault != "" {
			t.Fatalf("verify: %q, %v; want the table exactly as installed", fault, err)
		}
	}

	if fault, err := tbl.Verify(); err != nil || !strings.Contains(fault, "missing") {
		t.Fatalf("before Install: %q, %v; want the table missing", fault, err)
	}
	if err := tbl.Install(); err != nil {
		t.Fatal(err)
	}
	mustExact()
	if err := tbl.Install(); err != nil {
		t.Fatalf("second Install: %v", err)
	}
	mustExact()
	otherIntact()

	t.Run("Install replaces a stale table left by a crash", func(t *testing.T) {
		stale, err := New(netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("10.1.0.0/16"), InNetNS(fd))
		if err != nil {
			t.Fatal(err)
		}
		if err := stale.Install(); err != nil {
			t.Fatal(err)
		}
		weft := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: TableName}
		conn.AddChain(&nftables.Chain{Name: "leftover", Table: weft})
		if err := conn.Flush(); err != nil {
			t.Fatal(err)
		}
		if fault, _ := tbl.Verify(); fault == "" {
			t.Fatal("a table for another network passed Verify")
		}
		if err := tbl.Install(); err != nil {
			t.Fatal(err)
		}
		mustExact()
	})

	weft := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: TableName}
	chain := &nftables.Chain{Name: ChainName, Table: weft}
	rules := func() []*nftables.Rule {
		t.Helper()
		rs, err := conn.GetRules(weft, chain)
		if err != nil {
			t.Fatal(err)
		}
		return rs
	}
	damages := []struct {
		name  string
		do    func()
		fault string
	}{
		{"table deleted (nft delete table ip weft)", func() { conn.DelTable(weft) }, "missing"},
		{"ruleset flushed (nft flush ruleset, this namespace only)", func() { conn.FlushRuleset() }, "missing"},
		{"chain flushed", func() { conn.FlushChain(chain) }, "holds 0 rules, want 6"},
		{"one rule deleted", func() {
			if err := conn.DelRule(rules()[1]); err != nil {
				t.Fatal(err)
			}
		}, "holds 5 rules, want 6"},
		{"a rule changed: masquerade without fully-random", func() {
			r := rules()[4]
			r.Exprs[len(r.Exprs)-1] = &expr.Masq{}
			conn.ReplaceRule(r)
		}, `rule 5 is "ip saddr 100.96.0.0/16 ip daddr != 224.0.0.0/4 masquerade", want "ip saddr 100.96.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random"`},
		{"a rule changed: the masquerade action swapped for a counter", func() {
			r := rules()[4]
			r.Exprs[len(r.Exprs)-1] = &expr.Counter{}
			conn.ReplaceRule(r)
		}, "rule 5 is not weft's"},
		{"kube-proxy's exemption deleted", func() {
			if err := conn.DelRule(rules()[0]); err != nil {
				t.Fatal(err)
			}
		}, "holds 5 rules, want 6"},
		{"a rule changed: another network", func() {
			r := rules()[0]
			r.Exprs = exprs(Rule{Src: in(netip.MustParsePrefix("100.97.0.0/16")), Dst: in(netip.MustParsePrefix("100.97.0.0/16")), Action: Return})
			conn.ReplaceRule(r)
		}, `rule 1 is "ip saddr 100.97.0.0/16`},
		{"a rule added in front", func() {
			conn.InsertRule(&nftables.Rule{Table: weft, Chain: chain, Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}})
		}, "holds 7 rules, want 6"},
		{"a chain added", func() {
			conn.AddChain(&nftables.Chain{Name: "extra", Table: weft})
		}, `holds chains`},
		{"chain replaced by a filter chain", func() {
			conn.DelTable(weft)
			conn.AddTable(weft)
			conn.AddChain(&nftables.Chain{Name: ChainName, Table: weft, Type: nftables.ChainTypeFilter,
				Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
		}, "is not a nat chain"},
	}
	for _, d := range damages {
		t.Run("Check repairs: "+d.name, func(t *testing.T) {
			d.do()
			if err := conn.Flush(); err != nil {
				t.Fatalf("damaging: %v", err)
			}
			fault, err := tbl.Check()
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(fault, d.fault) {
				t.Errorf("Check reported %q, want it to say %q", fault, d.fault)
			}
			t.Logf("Check found and repaired: %s", fault)
			mustExact()
			if fault, err := tbl.Check(); err != nil || fault != "" {
				t.Errorf("Check after the repair: %q, %v; want nothing to repair", fault, err)
			}
		})
	}
	if !t.Failed() {
		// The flush above took the other table with it; put it back to
		// check that Remove leaves it alone.
		conn.AddTable(other)
		conn.AddChain(otherChain)
		conn.AddRule(&nftables.Rule{Table: other, Chain: otherChain, Exprs: []expr.Any{&expr.Masq{}}})
		if err := conn.Flush(); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("Remove deletes weft's table only, and may be repeated", func(t *testing.T) {
		if err := tbl.Remove(); err != nil {
			t.Fatal(err)
		}
		if err := tbl.Remove(); err != nil {
			t.Fatalf("second Remove: %v", err)
		}
		tables, err := conn.ListTablesOfFamily(nftables.TableFamilyIPv4)
		if err != nil {
			t.Fatal(err)
		}
		names := []string{}
		for _, x := range tables {
			names = append(names, x.Name)
		}
		if slices.Contains(names, TableName) || !slices.Contains(names, "other") {
			t.Errorf("tables after Remove: %q, want \"other\" and no %q", names, TableName)
		}
		otherIntact()
	})
}
