package masq

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/google/nftables/expr"
)

// Offsets of the addresses in the IPv4 header.
const (
	saddrOffset = 12
	daddrOffset = 16
)

// reg is the register every match loads into and compares from, as nft(8)
// does for a single match (NFT_REG_1; the kernel lists it back as 1).
const reg = 1

// exprs turns r into nftables expressions, as nft(8) would for
// "meta mark & B == B ip saddr N ip daddr != M masquerade fully-random":
// for the mark, a load, a mask and a comparison; per address, a load from
// the IPv4 header, a mask unless the prefix is a /32, a comparison; then
// the verdict.
func exprs(r Rule) []expr.Any {
	var es []expr.Any
	if r.Mark != 0 {
		es = append(es, markExprs(r.Mark)...)
	}
	es = append(es, matchExprs(saddrOffset, r.Src)...)
	es = append(es, matchExprs(daddrOffset, r.Dst)...)
	switch r.Action {
	case Return:
		es = append(es, &expr.Verdict{Kind: expr.VerdictReturn})
	case Masquerade:
		es = append(es, &expr.Masq{})
	case MasqueradeFullyRandom:
		es = append(es, &expr.Masq{FullyRandom: true})
	}
	return es
}

// markExprs tests that every bit of mark is set in the packet's firewall
// mark, which the kernel keeps in host byte order.
func markExprs(mark uint32) []expr.Any {
	m := binary.NativeEndian.AppendUint32(nil, mark)
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: reg},
		&expr.Bitwise{SourceRegister: reg, DestRegister: reg, Len: 4, Mask: m, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: m},
	}
}

// parseMark reads back what markExprs writes from the start of es.
func parseMark(es []expr.Any) (uint32, error) {
	meta := es[0].(*expr.Meta)
	b, okb := at[*expr.Bitwise](es, 1)
	c, okc := at[*expr.Cmp](es, 2)
	if meta.Key != expr.MetaKeyMARK || meta.Register != reg || meta.SourceRegister || !okb || !okc {
		return 0, errors.New("a meta load that is not a mark test")
	}
	if b.SourceRegister != reg || b.DestRegister != reg || b.Len != 4 || len(b.Mask) != 4 || !bytes.Equal(b.Xor, make([]byte, 4)) ||
		c.Register != reg || c.Op != expr.CmpOpEq || !bytes.Equal(c.Data, b.Mask) {
		return 0, errors.New("mark test is not \"mark & B == B\"")
	}
	mark := binary.NativeEndian.Uint32(b.Mask)
	if mark == 0 {
		return 0, errors.New("mark test with mask 0")
	}
	return mark, nil
}

func matchExprs(offset uint32, m Match) []expr.Any {
	if m.Any() {
		return nil
	}
	es := []expr.Any{&expr.Payload{
		OperationType: expr.PayloadLoad, DestRegister: reg,
		Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4,
	}}
	if bits := m.Prefix.Bits(); bits < 32 {
		es = append(es, &expr.Bitwise{
			SourceRegister: reg, DestRegister: reg, Len: 4,
			Mask: net.CIDRMask(bits, 32), Xor: make([]byte, 4),
		})
	}
	op := expr.CmpOpEq
	if m.Not {
		op = expr.CmpOpNeq
	}
	a := m.Prefix.Addr().As4()
	return append(es, &expr.Cmp{Op: op, Register: reg, Data: a[:]})
}

// parseRule reads back a rule the kernel lists, if it has exactly the shape
// exprs gives; anything else, even a rule that would match the same
// packets, is an error, since weft's table holds only what weft put there.
func parseRule(es []expr.Any) (Rule, error) {
	var r Rule
	for i := 0; i < len(es); {
		if r.Action != 0 {
			return Rule{}, fmt.Errorf("expression %d (%T) after the verdict", i, es[i])
		}
		switch e := es[i].(type) {
		case *expr.Meta:
			if i != 0 {
				return Rule{}, fmt.Errorf("expression %d: mark test not first", i)
			}
			m, err := parseMark(es)
			if err != nil {
				return Rule{}, fmt.Errorf("expression %d: %w", i, err)
			}
			r.Mark = m
			i += 3
		case *expr.Payload:
			m, n, err := parseMatch(es[i:])
			if err != nil {
				return Rule{}, err
			}
			field := &r.Src
			if e.Offset == daddrOffset {
				field = &r.Dst
			}
			if !field.Any() || (field == &r.Src && !r.Dst.Any()) {
				return Rule{}, fmt.Errorf("expression %d: address matched twice or out of order", i)
			}
			*field = m
			i += n
		case *expr.Verdict:
			if e.Kind != expr.VerdictReturn || e.Chain != "" {
				return Rule{}, fmt.Errorf("expression %d: verdict %v, want return", i, e.Kind)
			}
			r.Action = Return
			i++
		case *expr.Masq:
			switch *e {
			case expr.Masq{}:
				r.Action = Masquerade
			case expr.Masq{FullyRandom: true}:
				r.Action = MasqueradeFullyRandom
			default:
				return Rule{}, fmt.Errorf("expression %d: masquerade %+v, want plain or fully-random only", i, *e)
			}
			i++
		default:
			return Rule{}, fmt.Errorf("expression %d: unexpected %T", i, e)
		}
	}
	if r.Action == 0 {
		return Rule{}, errors.New("no verdict")
	}
	return r, nil
}

// parseMatch reads a load of the source or destination address, an
// optional prefix mask and a comparison from the start of es, and says how
// many expressions it took.
func parseMatch(es []expr.Any) (Match, int, error) {
	p := es[0].(*expr.Payload)
	if p.OperationType != expr.PayloadLoad || p.DestRegister != reg || p.Base != expr.PayloadBaseNetworkHeader ||
		(p.Offset != saddrOffset && p.Offset != daddrOffset) || p.Len != 4 || p.CsumType != 0 {
		return Match{}, 0, fmt.Errorf("payload %+v: not a load of the IPv4 source or destination", *p)
	}
	n, bits := 1, 32
	if b, ok := at[*expr.Bitwise](es, 1); ok {
		ones, size := net.IPMask(b.Mask).Size()
		if b.SourceRegister != reg || b.DestRegister != reg || b.Len != 4 || size != 32 || !bytes.Equal(b.Xor, make([]byte, 4)) {
			return Match{}, 0, fmt.Errorf("bitwise %+v: not a prefix mask", *b)
		}
		n, bits = 2, ones
	}
	c, ok := at[*expr.Cmp](es, n)
	if !ok {
		return Match{}, 0, errors.New("address load without a comparison")
	}
	if c.Register != reg || len(c.Data) != 4 || (c.Op != expr.CmpOpEq && c.Op != expr.CmpOpNeq) {
		return Match{}, 0, fmt.Errorf("cmp %+v: not an address (in)equality", *c)
	}
	pfx := netip.PrefixFrom(netip.AddrFrom4([4]byte(c.Data)), bits)
	if pfx != pfx.Masked() {
		return Match{}, 0, fmt.Errorf("cmp with %v: host bits set", pfx)
	}
	return Match{Prefix: pfx, Not: c.Op == expr.CmpOpNeq}, n + 1, nil
}

// at returns es[i] as a T, if there is one.
func at[T expr.Any](es []expr.Any, i int) (T, bool) {
	var zero T
	if i >= len(es) {
		return zero, false
	}
	e, ok := es[i].(T)
	return e, ok
}
