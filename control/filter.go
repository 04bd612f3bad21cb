package control

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// A filter picks the packets of a dump, in a small subset of tcpdump's
// language:
//
//	[src|dst] host ADDR     an IPv4 address, source or destination
//	[src|dst] net CIDR      an IPv4 network
//	[src|dst] port N        a TCP or UDP port
//	proto tcp|udp|icmp|N    the IP protocol (also tcp, udp, icmp alone)
//	not X, X and Y, X or Y  also !, &&, ||; "and" binds tighter than "or"
//	( X )                   grouping
//
// The empty filter takes everything. A filter is matched against the inner
// packet and, where the packet was seen as a datagram (the wire stages),
// against the outer headers too: the packet is taken if either matches, so
// that "host 100.96.2.2" follows a pod's packets at every stage and
// "host 192.0.2.2" a peer's datagrams.

// Filter is a parsed filter expression. Match is safe for concurrent use
// and allocates nothing.
type Filter struct {
	nodes []node // the expression tree; the root is the last; none: everything
	text  string
}

// String returns the filter as it was given.
func (f *Filter) String() string { return f.text }

// ParseFilter parses s; the error says where it went wrong and what was
// expected there.
func ParseFilter(s string) (*Filter, error) {
	toks, err := tokenize(s)
	if err != nil {
		return nil, err
	}
	f := &Filter{text: s}
	if len(toks) == 0 {
		return f, nil
	}
	p := &parser{toks: toks}
	if _, err = p.or(); err != nil {
		return nil, err
	}
	f.nodes = p.nodes
	if t := p.peek(); t.text != "" {
		return nil, p.errorf(t, "unexpected %q after a complete expression (missing \"and\" or \"or\"?)", t.text)
	}
	return f, nil
}

// Match reports whether the filter takes a packet: pkt begins with the
// inner IPv4 header; outerSrc and outerDst are the datagram's addresses if
// the packet was seen as one, else invalid.
func (f *Filter) Match(pkt []byte, outerSrc, outerDst netip.AddrPort) bool {
	if f == nil || len(f.nodes) == 0 {
		return true
	}
	root := len(f.nodes) - 1
	var v view
	v.inner(pkt)
	if f.eval(root, &v) {
		return true
	}
	if !outerSrc.IsValid() && !outerDst.IsValid() {
		return false
	}
	v.outer(outerSrc, outerDst)
	return f.eval(root, &v)
}

// view is the fields of a packet the primitives test.
type view struct {
	ok           bool // an IPv4 header was there to read
	src, dst     uint32
	proto        uint8
	hasPorts     bool
	sport, dport uint16
}

func (v *view) inner(p []byte) {
	*v = view{}
	if len(p) < 20 || p[0]>>4 != 4 {
		return
	}
	v.ok = true
	v.src, v.dst = binary.BigEndian.Uint32(p[12:]), binary.BigEndian.Uint32(p[16:])
	v.proto = p[9]
	hlen := int(p[0]&0x0f) * 4
	first := binary.BigEndian.Uint16(p[6:])&0x1fff == 0 // later fragments carry no ports
	if (v.proto == protoTCP || v.proto == protoUDP) && first && hlen >= 20 && len(p) >= hlen+4 {
		v.hasPorts = true
		v.sport, v.dport = binary.BigEndian.Uint16(p[hlen:]), binary.BigEndian.Uint16(p[hlen+2:])
	}
}

func (v *view) outer(src, dst netip.AddrPort) {
	*v = view{ok: true, proto: protoUDP, hasPorts: true, sport: src.Port(), dport: dst.Port()}
	v.src, v.dst = addr32(src.Addr()), addr32(dst.Addr())
}

func addr32(a netip.Addr) uint32 {
	a = a.Unmap()
	if !a.Is4() {
		return 0
	}
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

const (
	protoICMP = 1
	protoTCP  = 6
	protoUDP  = 17
)

// dir says which address or port of a packet a primitive tests.
type dir uint8

const (
	either dir = iota
	srcOnly
	dstOnly
)

// node is one operator or primitive of the tree, its operands indexes into
// Filter.nodes. A tree of concrete nodes, not interfaces, keeps Match free
// of allocations: the view never escapes.
type node struct {
	op         opKind
	a, b       int // operands of and, or, not
	d          dir
	base, mask uint32 // net (host is a /32)
	port       uint16
	proto      uint8
}

type opKind uint8

const (
	opOr opKind = iota
	opAnd
	opNot
	opNet
	opPort
	opProto
)

func (f *Filter) eval(i int, v *view) bool {
	n := &f.nodes[i]
	switch n.op {
	case opOr:
		return f.eval(n.a, v) || f.eval(n.b, v)
	case opAnd:
		return f.eval(n.a, v) && f.eval(n.b, v)
	case opNot:
		return !f.eval(n.a, v)
	case opNet:
		if !v.ok {
			return false
		}
		return n.d.pick(v.src&n.mask == n.base, v.dst&n.mask == n.base)
	case opPort:
		return v.hasPorts && n.d.pick(v.sport == n.port, v.dport == n.port)
	case opProto:
		return v.ok && v.proto == n.proto
	}
	return false
}

// pick combines a primitive's result on the source and on the destination.
func (d dir) pick(src, dst bool) bool {
	switch d {
	case srcOnly:
		return src
	case dstOnly:
		return dst
	}
	return src || dst
}

// token is a word of the expression and where it starts (1-based column).
type token struct {
	text string
	col  int
}

// maxFilterLen bounds the expression: a filter runs per packet, and the
// parser recurses per parenthesis.
const maxFilterLen = 1024

func tokenize(s string) ([]token, error) {
	if len(s) > maxFilterLen {
		return nil, fmt.Errorf("filter: longer than %d characters", maxFilterLen)
	}
	var toks []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(' || c == ')':
			toks = append(toks, token{s[i : i+1], i + 1})
			i++
		case c == '!':
			toks = append(toks, token{"!", i + 1})
			i++
		case strings.HasPrefix(s[i:], "&&") || strings.HasPrefix(s[i:], "||"):
			toks = append(toks, token{s[i : i+2], i + 1})
			i += 2
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t\n\r()!&|", rune(s[j])) {
				j++
			}
			if j == i {
				return nil, fmt.Errorf("filter: column %d: unexpected %q", i+1, s[i:i+1])
			}
			toks = append(toks, token{s[i:j], i + 1})
			i = j
		}
	}
	return toks, nil
}

type parser struct {
	toks  []token
	pos   int
	depth int
	nodes []node
}

// add appends n to the tree and returns its index.
func (p *parser) add(n node) int {
	p.nodes = append(p.nodes, n)
	return len(p.nodes) - 1
}

// maxDepth bounds nesting, so that a hostile expression cannot exhaust the stack.
const maxDepth = 64

func (p *parser) peek() token {
	if p.pos < len(p.toks) {
		return p.toks[p.pos]
	}
	return token{}
}

func (p *parser) next() token {
	t := p.peek()
	if t.text != "" {
		p.pos++
	}
	return t
}

func (p *parser) errorf(t token, format string, args ...any) error {
	where := "at the end"
	if t.text != "" {
		where = fmt.Sprintf("column %d", t.col)
	}
	return fmt.Errorf("filter: %s: %s", where, fmt.Sprintf(format, args...))
}

func (p *parser) or() (int, error) {
	a, err := p.and()
	if err != nil {
		return 0, err
	}
	for t := p.peek(); t.text == "or" || t.text == "||"; t = p.peek() {
		p.next()
		b, err := p.and()
		if err != nil {
			return 0, err
		}
		a = p.add(node{op: opOr, a: a, b: b})
	}
	return a, nil
}

func (p *parser) and() (int, error) {
	a, err := p.unary()
	if err != nil {
		return 0, err
	}
	for t := p.peek(); t.text == "and" || t.text == "&&"; t = p.peek() {
		p.next()
		b, err := p.unary()
		if err != nil {
			return 0, err
		}
		a = p.add(node{op: opAnd, a: a, b: b})
	}
	return a, nil
}

const expectPrimitive = `expected host, net, port, proto, tcp, udp, icmp, src, dst, not or "("`

func (p *parser) unary() (int, error) {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > maxDepth {
		return 0, p.errorf(p.peek(), "nested more than %d deep", maxDepth)
	}
	t := p.next()
	switch t.text {
	case "not", "!":
		a, err := p.unary()
		if err != nil {
			return 0, err
		}
		return p.add(node{op: opNot, a: a}), nil
	case "(":
		a, err := p.or()
		if err != nil {
			return 0, err
		}
		if c := p.next(); c.text != ")" {
			return 0, p.errorf(c, `expected ")" to close the "(" at column %d`, t.col)
		}
		return a, nil
	case "src", "dst":
		d := srcOnly
		if t.text == "dst" {
			d = dstOnly
		}
		return p.primitive(p.next(), d)
	case "":
		return 0, p.errorf(t, "%s", expectPrimitive)
	}
	return p.primitive(t, either)
}

func (p *parser) primitive(t token, d dir) (int, error) {
	if d != either && t.text != "host" && t.text != "net" && t.text != "port" {
		return 0, p.errorf(t, "expected host, net or port after src or dst")
	}
	switch t.text {
	case "host":
		arg := p.next()
		a, err := netip.ParseAddr(arg.text)
		if err != nil || !a.Is4() {
			return 0, p.errorf(arg, "host wants an IPv4 address, got %q", arg.text)
		}
		return p.add(node{op: opNet, d: d, base: addr32(a), mask: ^uint32(0)}), nil
	case "net":
		arg := p.next()
		pfx, err := netip.ParsePrefix(arg.text)
		if err != nil || !pfx.Addr().Is4() {
			return 0, p.errorf(arg, "net wants an IPv4 network as ADDR/LEN, got %q", arg.text)
		}
		if pfx != pfx.Masked() {
			return 0, p.errorf(arg, "net %s has host bits set (did you mean %s?)", arg.text, pfx.Masked())
		}
		mask := uint32(0)
		if pfx.Bits() > 0 {
			mask = ^uint32(0) << (32 - pfx.Bits())
		}
		return p.add(node{op: opNet, d: d, base: addr32(pfx.Addr()), mask: mask}), nil
	case "port":
		arg := p.next()
		n, err := strconv.ParseUint(arg.text, 10, 16)
		if err != nil {
			return 0, p.errorf(arg, "port wants a number from 0 to 65535, got %q", arg.text)
		}
		return p.add(node{op: opPort, d: d, port: uint16(n)}), nil
	}
	switch t.text {
	case "proto":
		arg := p.next()
		if n, ok := protoNames[arg.text]; ok {
			return p.add(node{op: opProto, proto: n}), nil
		}
		n, err := strconv.ParseUint(arg.text, 10, 8)
		if err != nil {
			return 0, p.errorf(arg, "proto wants tcp, udp, icmp or a number from 0 to 255, got %q", arg.text)
		}
		return p.add(node{op: opProto, proto: uint8(n)}), nil
	case "tcp", "udp", "icmp":
		return p.add(node{op: opProto, proto: protoNames[t.text]}), nil
	}
	if t.text == "" {
		return 0, p.errorf(t, "%s", expectPrimitive)
	}
	return 0, p.errorf(t, "%s; got %q", expectPrimitive, t.text)
}

var protoNames = map[string]uint8{"icmp": protoICMP, "tcp": protoTCP, "udp": protoUDP}
