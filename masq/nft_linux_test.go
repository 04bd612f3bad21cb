package masq

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/nftables/expr"
)

func TestExprsRoundTrip(t *testing.T) {
	rules, err := Rules(netip.MustParsePrefix("100.96.0.0/16"), netip.MustParsePrefix("100.96.1.0/24"), true)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := Rules(netip.MustParsePrefix("100.96.0.0/16"), netip.MustParsePrefix("100.96.1.0/24"), false)
	if err != nil {
		t.Fatal(err)
	}
	rules = append(rules, plain...)
	rules = append(rules,
		Rule{Mark: 0x80000001, Src: in(netip.MustParsePrefix("192.0.2.0/24")), Action: Masquerade},
		Rule{Src: in(netip.MustParsePrefix("192.0.2.9/32")), Action: Return},
		Rule{Dst: notIn(netip.MustParsePrefix("0.0.0.0/0")), Action: Masquerade},
		Rule{Action: Return},
	)
	for _, r := range rules {
		got, err := parseRule(exprs(r))
		if err != nil {
			t.Errorf("%q: %v", r, err)
			continue
		}
		if got != r {
			t.Errorf("%q came back as %q", r, got)
		}
	}
}

func TestExprsShape(t *testing.T) {
	r := Rule{Src: in(netip.MustParsePrefix("100.96.0.0/16")), Dst: notIn(netip.MustParsePrefix("192.0.2.7/32")), Action: MasqueradeFullyRandom}
	es := exprs(r)
	// saddr: load, mask, compare; daddr (/32): load, compare; masquerade.
	if len(es) != 6 {
		t.Fatalf("%d expressions, want 6: %#v", len(es), es)
	}
	if p := es[0].(*expr.Payload); p.Offset != 12 || p.Len != 4 || p.Base != expr.PayloadBaseNetworkHeader {
		t.Errorf("source load %+v", *p)
	}
	if b := es[1].(*expr.Bitwise); string(b.Mask) != "\xff\xff\x00\x00" {
		t.Errorf("mask % x, want ff ff 00 00", b.Mask)
	}
	if c := es[2].(*expr.Cmp); c.Op != expr.CmpOpEq || string(c.Data) != "\x64\x60\x00\x00" {
		t.Errorf("source cmp %+v", *c)
	}
	if p := es[3].(*expr.Payload); p.Offset != 16 {
		t.Errorf("destination load %+v", *p)
	}
	if c := es[4].(*expr.Cmp); c.Op != expr.CmpOpNeq || string(c.Data) != "\xc0\x00\x02\x07" {
		t.Errorf("destination cmp %+v", *c)
	}
	if m := es[5].(*expr.Masq); !m.FullyRandom || m.Random || m.Persistent {
		t.Errorf("masq %+v", *m)
	}
}

// TestParseRuleRefuses lists rules that are not weft's, or not in the shape
// weft writes them: Verify must report each, not take it for a match.
func TestParseRuleRefuses(t *testing.T) {
	src := func() []expr.Any { return matchExprs(saddrOffset, in(netip.MustParsePrefix("100.96.0.0/16"))) }
	dst := func() []expr.Any { return matchExprs(daddrOffset, in(netip.MustParsePrefix("100.96.0.0/16"))) }
	ret := &expr.Verdict{Kind: expr.VerdictReturn}
	masq := &expr.Masq{FullyRandom: true}
	cat := func(parts ...[]expr.Any) []expr.Any {
		var es []expr.Any
		for _, p := range parts {
			es = append(es, p...)
		}
		return es
	}
	one := func(e ...expr.Any) []expr.Any { return e }
	cases := []struct {
		name    string
		es      []expr.Any
		wantErr string
	}{
		{"empty", nil, "no verdict"},
		{"no verdict", src(), "no verdict"},
		{"accept instead of return", cat(src(), one(&expr.Verdict{Kind: expr.VerdictAccept})), "want return"},
		{"jump", cat(src(), one(&expr.Verdict{Kind: expr.VerdictJump, Chain: "x"})), "want return"},
		{"masquerade random (not fully)", cat(src(), one(&expr.Masq{Random: true})), "want plain or fully-random only"},
		{"masquerade random and fully-random", cat(src(), one(&expr.Masq{Random: true, FullyRandom: true})), "want plain or fully-random only"},
		{"mark test after an address", cat(src(), markExprs(0x4000), one(ret)), "mark test not first"},
		{"a meta load of something else", one(&expr.Meta{Key: expr.MetaKeyIIF, Register: 1}, &expr.Bitwise{}, &expr.Cmp{}, ret), "not a mark test"},
		{"mark compared with another value", one(markExprs(0x4000)[0], markExprs(0x4000)[1], &expr.Cmp{Register: 1, Data: []byte{0, 0, 0, 0}}, ret), `not "mark & B == B"`},
		{"mark test without its compare", one(markExprs(0x4000)[0], markExprs(0x4000)[1], ret), "not a mark test"},
		{"a counter", cat(src(), one(&expr.Counter{}, masq)), "unexpected *expr.Counter"},
		{"after the verdict", cat(src(), one(ret), dst()), "after the verdict"},
		{"destination before source", cat(dst(), src(), one(ret)), "out of order"},
		{"source twice", cat(src(), src(), one(ret)), "out of order"},
		{"load without compare", cat(src()[:2], one(ret)), "without a comparison"},
		{"load of the protocol", one(&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 9, Len: 1}, ret), "not a load"},
		{"load from the transport header", one(&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 12, Len: 4}, ret), "not a load"},
		{"mask not a prefix", cat(src()[:1], one(&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{255, 0, 255, 0}, Xor: make([]byte, 4)}), src()[2:], one(ret)), "not a prefix mask"},
		{"mask with xor", cat(src()[:1], one(&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{255, 255, 0, 0}, Xor: []byte{0, 0, 0, 1}}), src()[2:], one(ret)), "not a prefix mask"},
		{"greater-than compare", cat(src()[:2], one(&expr.Cmp{Op: expr.CmpOpGt, Register: 1, Data: []byte{100, 96, 0, 0}}, ret)), "not an address"},
		{"compare with host bits", cat(src()[:2], one(&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{100, 96, 0, 1}}, ret)), "host bits set"},
		{"other register", cat(one(&expr.Payload{DestRegister: 2, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4}, &expr.Cmp{Register: 2, Data: []byte{1, 2, 3, 4}}, ret)), "not a load"},
	}
	for _, c := range cases {
		_, err := parseRule(c.es)
		if err == nil || !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.wantErr)
		}
	}
}
