package engine

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sort"
	"sync/atomic"
)

// Route says which peer host carries the traffic for a subnet.
type Route struct {
	Subnet netip.Prefix   // an IPv4 prefix, masked
	Peer   netip.AddrPort // the peer's public address and UDP port
}

// Change is one edit of a route table: add (or replace) Route, or remove the
// route for Route.Subnet.
type Change struct {
	Route  Route
	Remove bool
}

// Table is an immutable IPv4 route table: a multibit trie with a stride of
// one octet, so a lookup is at most four array indexings. Each node keeps,
// for every value of its octet, the longest of its own prefixes covering it
// (controlled prefix expansion), so a lookup never backtracks.
//
// A Table is never modified once built: Apply copies the nodes on the paths it
// changes and shares the rest. The forwarding loops read the current Table
// through an atomic pointer with no lock, and a writer swaps in a new one.
type Table struct {
	root  *node
	peers map[netip.Addr]int     // routes per peer address, for the anti-spoofing check
	ports map[netip.AddrPort]int // routes per peer address and port: the only sources a peer's datagrams may come from
	size  int
}

type node struct {
	child  [256]*node
	best   [256]*Route // longest prefix of this node covering each octet value
	routes []*Route    // the prefixes whose last significant octet is this node's
	gen    uint64      // the Apply that made this copy; only it may change the node
}

// generation numbers the Apply calls so that each copies a node at most once.
var generation atomic.Uint64

// NewTable builds a table holding routes. Later routes for the same subnet
// replace earlier ones.
func NewTable(routes []Route) (*Table, error) {
	changes := make([]Change, len(routes))
	for i, r := range routes {
		changes[i] = Change{Route: r}
	}
	return (&Table{}).Apply(changes)
}

// Lookup returns the route with the longest prefix containing the IPv4
// address dst (big-endian), or nil.
func (t *Table) Lookup(dst uint32) *Route {
	var best *Route
	n := t.root
	for shift := 24; n != nil; shift -= 8 {
		b := byte(dst >> shift)
		if r := n.best[b]; r != nil {
			best = r
		}
		if shift == 0 {
			break
		}
		n = n.child[b]
	}
	return best
}

// LookupAddr is Lookup for a netip.Addr; it returns nil for non-IPv4 addresses.
func (t *Table) LookupAddr(a netip.Addr) *Route {
	if !a.Is4() {
		return nil
	}
	b := a.As4()
	return t.Lookup(binary.BigEndian.Uint32(b[:]))
}

// IsPeer reports whether some route leads to the peer address a.
func (t *Table) IsPeer(a netip.Addr) bool { return t.peers[a] > 0 }

// IsPeerPort reports whether some route leads to the peer address and port ap.
func (t *Table) IsPeerPort(ap netip.AddrPort) bool { return t.ports[ap] > 0 }

// Len is the number of routes in the table.
func (t *Table) Len() int { return t.size }

// Routes returns every route, ordered by subnet.
func (t *Table) Routes() []Route {
	out := make([]Route, 0, t.size)
	var walk func(n *node)
	walk = func(n *node) {
		if n == nil {
			return
		}
		for _, r := range n.routes {
			out = append(out, *r)
		}
		for _, c := range n.child {
			walk(c)
		}
	}
	walk(t.root)
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].Subnet, out[j].Subnet
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c < 0
		}
		return a.Bits() < b.Bits()
	})
	return out
}

// Apply returns a new table: t with changes made in order. t is unchanged.
// Removing a subnet that has no route is not an error.
func (t *Table) Apply(changes []Change) (*Table, error) {
	for _, c := range changes {
		p := c.Route.Subnet
		if !p.IsValid() || !p.Addr().Is4() {
			return nil, fmt.Errorf("route %v: not an IPv4 prefix", p)
		}
		if !c.Remove && !c.Route.Peer.Addr().Is4() {
			return nil, fmt.Errorf("route %v: peer %v is not an IPv4 address", p, c.Route.Peer)
		}
	}
	gen := generation.Add(1)
	nt := &Table{root: t.root, size: t.size,
		peers: make(map[netip.Addr]int, len(t.peers)+1),
		ports: make(map[netip.AddrPort]int, len(t.ports)+1)}
	for a, n := range t.peers {
		nt.peers[a] = n
	}
	for ap, n := range t.ports {
		nt.ports[ap] = n
	}
	if nt.root == nil {
		nt.root = &node{gen: gen}
	}
	nt.root = own(nt.root, gen)
	dirty := map[*node]bool{}
	for _, c := range changes {
		nt.apply(c, gen, dirty)
	}
	for n := range dirty {
		n.repaint()
	}
	return nt, nil
}

// own returns n if the Apply numbered gen made it, else a copy for it to change.
func own(n *node, gen uint64) *node {
	if n.gen == gen {
		return n
	}
	c := *n
	c.routes = append([]*Route(nil), n.routes...)
	c.gen = gen
	return &c
}

func (t *Table) apply(c Change, gen uint64, dirty map[*node]bool) {
	p := c.Route.Subnet.Masked()
	a := p.Addr().As4()
	depth := 0
	if p.Bits() > 8 {
		depth = (p.Bits() - 1) / 8
	}
	// Walk down, copying the path. path[i] is the node at depth i.
	var path [4]*node
	path[0] = t.root
	for d := 0; d < depth; d++ {
		n := path[d]
		next := n.child[a[d]]
		if next == nil {
			if c.Remove {
				return
			}
			next = &node{gen: gen}
		} else {
			next = own(next, gen)
		}
		n.child[a[d]] = next
		path[d+1] = next
	}
	n := path[depth]
	i := n.find(p)
	if c.Remove {
		if i < 0 {
			return
		}
		t.dropPeer(n.routes[i].Peer)
		n.routes = append(n.routes[:i], n.routes[i+1:]...)
		t.size--
		dirty[n] = true
		// Prune nodes left with nothing in them.
		for d := depth; d > 0 && path[d].empty(); d-- {
			path[d-1].child[a[d-1]] = nil
			delete(dirty, path[d])
		}
		return
	}
	r := &Route{Subnet: p, Peer: c.Route.Peer}
	if i >= 0 {
		t.dropPeer(n.routes[i].Peer)
		n.routes[i] = r
	} else {
		n.routes = append(n.routes, r)
		t.size++
	}
	t.peers[r.Peer.Addr()]++
	t.ports[r.Peer]++
	dirty[n] = true
}

func (t *Table) dropPeer(ap netip.AddrPort) {
	if a := ap.Addr(); t.peers[a] <= 1 {
		delete(t.peers, a)
	} else {
		t.peers[a]--
	}
	if t.ports[ap] <= 1 {
		delete(t.ports, ap)
	} else {
		t.ports[ap]--
	}
}

func (n *node) find(p netip.Prefix) int {
	for i, r := range n.routes {
		if r.Subnet == p {
			return i
		}
	}
	return -1
}

func (n *node) empty() bool {
	if len(n.routes) > 0 {
		return false
	}
	for _, c := range n.child {
		if c != nil {
			return false
		}
	}
	return true
}

// repaint recomputes best from routes: shorter prefixes first, so that each
// longer one overwrites the octet values it covers.
func (n *node) repaint() {
	n.best = [256]*Route{}
	sort.Slice(n.routes, func(i, j int) bool { return n.routes[i].Subnet.Bits() < n.routes[j].Subnet.Bits() })
	for _, r := range n.routes {
		bits := r.Subnet.Bits()
		depth := 0
		if bits > 8 {
			depth = (bits - 1) / 8
		}
		inStride := bits - 8*depth // 0..8 significant bits in this node's octet
		first := int(r.Subnet.Addr().As4()[depth])
		for v := first; v < first+1<<(8-inStride); v++ {
			n.best[v] = r
		}
	}
}
