package engine

import (
	"cmp"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"testing"
)

// bruteTable is the oracle for Table: a plain map, searched by scanning
// every route for the longest prefix that contains the address.
type bruteTable map[netip.Prefix]netip.AddrPort

func (b bruteTable) apply(changes []Change) {
	for _, c := range changes {
		p := c.Route.Subnet.Masked()
		if c.Remove {
			delete(b, p)
		} else {
			b[p] = c.Route.Peer
		}
	}
}

// scanRoute is a route with its prefix as integers, for a fast scan.
type scanRoute struct {
	base, mask uint32
	bits       int
	route      Route
}

func (b bruteTable) scanner() []scanRoute {
	s := make([]scanRoute, 0, len(b))
	for p, peer := range b {
		s = append(s, scanRoute{base: u32(p.Addr()), mask: maskOf(p.Bits()), bits: p.Bits(), route: Route{Subnet: p, Peer: peer}})
	}
	return s
}

// lookup scans every route and keeps the longest prefix containing a.
func lookup(s []scanRoute, a uint32) (Route, bool) {
	best := -1
	var r Route
	for i := range s {
		if a&s[i].mask == s[i].base && s[i].bits > best {
			best, r = s[i].bits, s[i].route
		}
	}
	return r, best >= 0
}

func (b bruteTable) sorted() []Route {
	out := make([]Route, 0, len(b))
	for p, peer := range b {
		out = append(out, Route{Subnet: p, Peer: peer})
	}
	slices.SortFunc(out, compareRoutes)
	return out
}

func (b bruteTable) isPeer(a netip.Addr) bool {
	for _, peer := range b {
		if peer.Addr() == a {
			return true
		}
	}
	return false
}

func compareRoutes(x, y Route) int {
	if c := x.Subnet.Addr().Compare(y.Subnet.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(x.Subnet.Bits(), y.Subnet.Bits())
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func addrOf(a uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)})
}

func maskOf(bits int) uint32 {
	if bits == 0 {
		return 0
	}
	return ^uint32(0) << (32 - bits)
}

// prefixGen draws random prefixes clustered around a few bases, so that
// prefixes nest inside each other and share trie nodes.
type prefixGen struct {
	rng   *rand.Rand
	bases []uint32
}

func newPrefixGen(rng *rand.Rand, clusters int) *prefixGen {
	g := &prefixGen{rng: rng}
	for range clusters {
		g.bases = append(g.bases, rng.Uint32())
	}
	return g
}

func (g *prefixGen) prefix() netip.Prefix {
	a := g.rng.Uint32()
	if g.rng.IntN(10) < 8 {
		// Share the top 4..28 bits of a cluster base.
		keep := 4 + g.rng.IntN(25)
		a = g.bases[g.rng.IntN(len(g.bases))]&maskOf(keep) | a&^maskOf(keep)
	}
	bits := g.rng.IntN(33)
	if g.rng.IntN(3) == 0 {
		bits = 16 + g.rng.IntN(17) // more of the long prefixes subnets are
	}
	return netip.PrefixFrom(addrOf(a), bits).Masked()
}

// addrs draws n addresses: most inside the given prefixes (including their
// first and last addresses, and the ones just outside), the rest anywhere.
func (g *prefixGen) addrs(prefixes []netip.Prefix, n int) []uint32 {
	out := make([]uint32, 0, n)
	for len(out) < n {
		if len(prefixes) == 0 || g.rng.IntN(5) == 0 {
			out = append(out, g.rng.Uint32())
			continue
		}
		p := prefixes[g.rng.IntN(len(prefixes))]
		base, mask := u32(p.Addr()), maskOf(p.Bits())
		switch g.rng.IntN(6) {
		case 0:
			out = append(out, base)
		case 1:
			out = append(out, base|^mask)
		case 2:
			out = append(out, base-1, base|^mask+1)
		default:
			out = append(out, base|g.rng.Uint32()&^mask)
		}
	}
	return out
}

// peerPool is the peers routes point at: fewer than routes, so that most
// peers carry several.
func peerPool(n int) []netip.AddrPort {
	out := make([]netip.AddrPort, n)
	for i := range out {
		out[i] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), 8285)
	}
	return out
}

// checkTable compares t with the oracle on every route and on addrs.
func checkTable(t *testing.T, tbl *Table, want bruteTable, addrs []uint32, peers []netip.AddrPort) {
	t.Helper()
	if tbl.Len() != len(want) {
		t.Fatalf("Len() = %d, want %d", tbl.Len(), len(want))
	}
	got := tbl.Routes()
	if !slices.IsSortedFunc(got, compareRoutes) {
		t.Fatalf("Routes() not sorted by subnet")
	}
	if w := want.sorted(); !slices.Equal(got, w) {
		t.Fatalf("Routes() differ from the oracle: %d routes, want %d", len(got), len(w))
	}
	scan := want.scanner()
	for _, a := range addrs {
		w, ok := lookup(scan, a)
		r := tbl.Lookup(a)
		switch {
		case r == nil && ok:
			t.Fatalf("Lookup(%v) = nil, want %v", addrOf(a), w)
		case r != nil && !ok:
			t.Fatalf("Lookup(%v) = %v, want nil", addrOf(a), *r)
		case r != nil && *r != w:
			t.Fatalf("Lookup(%v) = %v, want %v", addrOf(a), *r, w)
		}
		if ra := tbl.LookupAddr(addrOf(a)); ra != r {
			t.Fatalf("LookupAddr(%v) = %v, Lookup = %v", addrOf(a), ra, r)
		}
	}
	for _, p := range peers {
		if got, w := tbl.IsPeer(p.Addr()), want.isPeer(p.Addr()); got != w {
			t.Fatalf("IsPeer(%v) = %v, want %v", p.Addr(), got, w)
		}
	}
	checkTrie(t, tbl)
}

// checkTrie checks what the API cannot show: every route sits in the node
// of its last significant octet, and removals leave no empty node behind.
func checkTrie(t *testing.T, tbl *Table) {
	t.Helper()
	var walk func(n *node, depth int, path [4]byte)
	walk = func(n *node, depth int, path [4]byte) {
		if depth > 0 && n.empty() {
			t.Fatalf("empty node left at %v/%d", netip.AddrFrom4(path), 8*depth)
		}
		for _, r := range n.routes {
			a := r.Subnet.Addr().As4()
			if max(0, (r.Subnet.Bits()-1)/8) != depth || string(a[:depth]) != string(path[:depth]) {
				t.Fatalf("route %v stored at depth %d under %v", r.Subnet, depth, netip.AddrFrom4(path))
			}
		}
		for b, c := range n.child {
			if c != nil {
				next := path
				next[depth] = byte(b)
				walk(c, depth+1, next)
			}
		}
	}
	if tbl.root != nil {
		walk(tbl.root, 0, [4]byte{})
	}
}

func TestLookupMatchesBruteForce(t *testing.T) {
	for _, tc := range []struct {
		routes, clusters int
	}{
		{routes: 1, clusters: 1},
		{routes: 50, clusters: 2},
		{routes: 1000, clusters: 4},
		{routes: 5000, clusters: 16},
	} {
		t.Run(fmt.Sprintf("routes=%d", tc.routes), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(tc.routes)))
			g := newPrefixGen(rng, tc.clusters)
			peers := peerPool(40)
			want := bruteTable{}
			var routes []Route
			for len(want) < tc.routes {
				r := Route{Subnet: g.prefix(), Peer: peers[rng.IntN(len(peers))]}
				routes = append(routes, r) // duplicates too: the later one wins
				want[r.Subnet] = r.Peer
			}
			tbl, err := NewTable(routes)
			if err != nil {
				t.Fatal(err)
			}
			prefixes := slices.SortedFunc(maps.Keys(want), netip.Prefix.Compare)
			checkTable(t, tbl, want, g.addrs(prefixes, 20000), peers)
		})
	}
}

func TestLookupEdges(t *testing.T) {
	tbl, err := NewTable([]Route{
		{Subnet: netip.MustParsePrefix("0.0.0.0/0"), Peer: h3},
		{Subnet: netip.MustParsePrefix("100.96.0.0/16"), Peer: h2},
		{Subnet: netip.MustParsePrefix("100.96.2.0/23"), Peer: h3},
		{Subnet: netip.MustParsePrefix("100.96.2.0/24"), Peer: h2},
		{Subnet: netip.MustParsePrefix("100.96.2.128/25"), Peer: h3},
		{Subnet: netip.MustParsePrefix("100.96.2.7/32"), Peer: h2},
		{Subnet: netip.MustParsePrefix("255.255.255.255/32"), Peer: h2},
		{Subnet: netip.MustParsePrefix("128.0.0.0/1"), Peer: h2},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		addr string
		want string // the subnet matched
	}{
		{"1.2.3.4", "0.0.0.0/0"},
		{"100.95.255.255", "0.0.0.0/0"},
		{"100.96.0.0", "100.96.0.0/16"},
		{"100.96.1.1", "100.96.0.0/16"},
		{"100.96.2.0", "100.96.2.0/24"},
		{"100.96.2.6", "100.96.2.0/24"},
		{"100.96.2.7", "100.96.2.7/32"},
		{"100.96.2.8", "100.96.2.0/24"},
		{"100.96.2.127", "100.96.2.0/24"},
		{"100.96.2.128", "100.96.2.128/25"},
		{"100.96.2.255", "100.96.2.128/25"},
		{"100.96.3.0", "100.96.2.0/23"},
		{"100.96.4.0", "100.96.0.0/16"},
		{"100.96.255.255", "100.96.0.0/16"},
		{"100.97.0.0", "0.0.0.0/0"},
		{"127.255.255.255", "0.0.0.0/0"},
		{"128.0.0.0", "128.0.0.0/1"},
		{"255.255.255.254", "128.0.0.0/1"},
		{"255.255.255.255", "255.255.255.255/32"},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			r := tbl.LookupAddr(netip.MustParseAddr(tc.addr))
			if r == nil || r.Subnet.String() != tc.want {
				t.Fatalf("LookupAddr(%s) = %v, want %s", tc.addr, r, tc.want)
			}
		})
	}
	for _, a := range []netip.Addr{{}, netip.MustParseAddr("::1"), netip.MustParseAddr("::ffff:100.96.2.7")} {
		if r := tbl.LookupAddr(a); r != nil {
			t.Errorf("LookupAddr(%v) = %v, want nil for a non-IPv4 address", a, r)
		}
	}
	var empty Table
	if r := empty.Lookup(0x64600202); r != nil || empty.Len() != 0 || empty.IsPeer(h2.Addr()) || len(empty.Routes()) != 0 {
		t.Errorf("zero Table is not empty")
	}
}

// snapshot is what a table held when it was made, to check later that it
// still holds exactly that.
type snapshot struct {
	tbl     *Table
	routes  []Route
	addrs   []uint32
	lookups []*Route // the pointers returned then
	values  []Route  // and what they pointed at
	peers   map[netip.Addr]bool
}

func takeSnapshot(tbl *Table, addrs []uint32, peers []netip.AddrPort) snapshot {
	s := snapshot{tbl: tbl, routes: tbl.Routes(), addrs: addrs, peers: map[netip.Addr]bool{}}
	for _, a := range addrs {
		r := tbl.Lookup(a)
		s.lookups = append(s.lookups, r)
		if r != nil {
			s.values = append(s.values, *r)
		} else {
			s.values = append(s.values, Route{})
		}
	}
	for _, p := range peers {
		s.peers[p.Addr()] = tbl.IsPeer(p.Addr())
	}
	return s
}

func (s snapshot) check(t *testing.T, i int) {
	t.Helper()
	if got := s.tbl.Routes(); !slices.Equal(got, s.routes) || s.tbl.Len() != len(s.routes) {
		t.Fatalf("snapshot %d: routes changed by a later Apply", i)
	}
	for j, a := range s.addrs {
		r := s.tbl.Lookup(a)
		if r != s.lookups[j] || (r != nil && *r != s.values[j]) {
			t.Fatalf("snapshot %d: Lookup(%v) changed by a later Apply", i, addrOf(a))
		}
	}
	for a, was := range s.peers {
		if s.tbl.IsPeer(a) != was {
			t.Fatalf("snapshot %d: IsPeer(%v) changed by a later Apply", i, a)
		}
	}
}

// TestApplyRandomBatches applies random batches of adds, replacements and
// removes (of routes present and absent, several to one subnet in one batch)
// and compares each table with the oracle, then checks that no Apply changed
// a table made before it.
func TestApplyRandomBatches(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(2, seed))
			g := newPrefixGen(rng, 3+int(seed))
			peers := peerPool(12)
			want := bruteTable{}
			tbl := &Table{}
			var snaps []snapshot
			for batch := range 40 {
				var changes []Change
				present := slices.SortedFunc(maps.Keys(want), netip.Prefix.Compare)
				// Early batches grow the table, later ones churn it.
				n := 1 + rng.IntN(150)
				for range n {
					peer := peers[rng.IntN(len(peers))]
					op := rng.IntN(10)
					switch {
					case op < 4 || len(present) == 0 || (batch < 10 && op < 7):
						// Add, sometimes with host bits set: Apply masks.
						p := g.prefix()
						if rng.IntN(4) == 0 && p.Bits() < 32 {
							p = netip.PrefixFrom(addrOf(u32(p.Addr())|rng.Uint32()&^maskOf(p.Bits())), p.Bits())
						}
						changes = append(changes, Change{Route: Route{Subnet: p, Peer: peer}})
					case op < 6:
						// Replace: same subnet, another peer (or the same).
						p := present[rng.IntN(len(present))]
						changes = append(changes, Change{Route: Route{Subnet: p, Peer: peer}})
					case op < 9:
						p := present[rng.IntN(len(present))]
						changes = append(changes, Change{Route: Route{Subnet: p}, Remove: true})
					default:
						// Remove what is most likely not there.
						changes = append(changes, Change{Route: Route{Subnet: g.prefix(), Peer: peer}, Remove: true})
					}
				}
				prev := tbl
				prevRoutes := prev.Routes()
				next, err := tbl.Apply(changes)
				if err != nil {
					t.Fatalf("batch %d: %v", batch, err)
				}
				want.apply(changes)
				if !slices.Equal(prev.Routes(), prevRoutes) {
					t.Fatalf("batch %d: Apply changed the table it was called on", batch)
				}
				tbl = next
				prefixes := slices.SortedFunc(maps.Keys(want), netip.Prefix.Compare)
				addrs := g.addrs(prefixes, 2000)
				checkTable(t, tbl, want, addrs, peers)
				snaps = append(snaps, takeSnapshot(tbl, addrs[:300], peers))
			}
			for i, s := range snaps {
				s.check(t, i)
			}
			// Remove everything: the table is empty, and so is every peer.
			var all []Change
			for _, r := range tbl.Routes() {
				all = append(all, Change{Route: r, Remove: true})
			}
			empty, err := tbl.Apply(all)
			if err != nil {
				t.Fatal(err)
			}
			checkTable(t, empty, bruteTable{}, g.addrs(nil, 1000), peers)
			for i, s := range snaps {
				s.check(t, i)
			}
		})
	}
}

// TestApplyConcurrentReaders reads old tables while new ones are built from
// them, as the forwarding loops do; run with -race it catches an Apply that
// writes to a node an older table shares.
func TestApplyConcurrentReaders(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	g := newPrefixGen(rng, 4)
	peers := peerPool(8)
	var routes []Route
	for range 500 {
		routes = append(routes, Route{Subnet: g.prefix(), Peer: peers[rng.IntN(len(peers))]})
	}
	tbl, err := NewTable(routes)
	if err != nil {
		t.Fatal(err)
	}
	addrs := g.addrs(nil, 4096)
	var tables []*Table
	var batches [][]Change
	for range 20 {
		var changes []Change
		for range 50 {
			changes = append(changes, Change{Route: Route{Subnet: g.prefix(), Peer: peers[rng.IntN(len(peers))]}, Remove: rng.IntN(3) == 0})
		}
		batches = append(batches, changes)
	}
	var wg sync.WaitGroup
	tables = append(tables, tbl)
	for _, changes := range batches {
		old := tables[len(tables)-1]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, a := range addrs {
				if r := old.Lookup(a); r != nil && !r.Subnet.Contains(addrOf(a)) {
					t.Errorf("Lookup(%v) = %v, which does not contain it", addrOf(a), r.Subnet)
					return
				}
				old.IsPeer(peers[a%uint32(len(peers))].Addr())
			}
		}()
		next, err := old.Apply(changes)
		if err != nil {
			t.Fatal(err)
		}
		tables = append(tables, next)
	}
	wg.Wait()
}

func TestNewTableLaterRouteWins(t *testing.T) {
	p := netip.MustParsePrefix("100.96.2.0/24")
	tbl, err := NewTable([]Route{{Subnet: p, Peer: h2}, {Subnet: netip.MustParsePrefix("100.96.2.9/24"), Peer: h3}})
	if err != nil {
		t.Fatal(err)
	}
	if got := tbl.Routes(); len(got) != 1 || got[0] != (Route{Subnet: p, Peer: h3}) {
		t.Fatalf("Routes() = %v, want only %v via %v", got, p, h3)
	}
	if tbl.IsPeer(h2.Addr()) || !tbl.IsPeer(h3.Addr()) {
		t.Fatalf("IsPeer: replaced peer %v still counted, or new peer %v not", h2, h3)
	}
}

func TestIsPeerCounts(t *testing.T) {
	a := netip.MustParsePrefix("100.96.2.0/24")
	b := netip.MustParsePrefix("100.96.3.0/24")
	c := netip.MustParsePrefix("10.0.0.0/8")
	h2other := netip.AddrPortFrom(h2.Addr(), 9999) // same host, another port
	add := func(p netip.Prefix, peer netip.AddrPort) Change { return Change{Route: Route{Subnet: p, Peer: peer}} }
	del := func(p netip.Prefix) Change { return Change{Route: Route{Subnet: p}, Remove: true} }
	for _, tc := range []struct {
		name    string
		batches [][]Change
		peers   []netip.AddrPort // IsPeer true for these, false for h2, h3 otherwise
	}{
		{"empty", nil, nil},
		{"one route", [][]Change{{add(a, h2)}}, []netip.AddrPort{h2}},
		{"two routes, one removed", [][]Change{{add(a, h2), add(b, h2)}, {del(a)}}, []netip.AddrPort{h2}},
		{"two routes, both removed", [][]Change{{add(a, h2), add(b, h2)}, {del(a)}, {del(b)}}, nil},
		{"both removed in one batch", [][]Change{{add(a, h2), add(b, h2)}, {del(b), del(a)}}, nil},
		{"removed twice", [][]Change{{add(a, h2), add(b, h2)}, {del(a), del(a)}}, []netip.AddrPort{h2}},
		{"remove absent", [][]Change{{add(a, h2)}, {del(b), del(c)}}, []netip.AddrPort{h2}},
		{"replaced by another peer", [][]Change{{add(a, h2)}, {add(a, h3)}}, []netip.AddrPort{h3}},
		{"replaced, other route stays", [][]Change{{add(a, h2), add(b, h2)}, {add(a, h3)}}, []netip.AddrPort{h2, h3}},
		{"replaced by the same peer", [][]Change{{add(a, h2)}, {add(a, h2)}, {add(a, h2)}}, []netip.AddrPort{h2}},
		{"replaced by the same peer, then removed", [][]Change{{add(a, h2)}, {add(a, h2)}, {del(a)}}, nil},
		{"same host, two ports", [][]Change{{add(a, h2), add(b, h2other)}, {del(a)}}, []netip.AddrPort{h2}},
		{"added and removed in one batch", [][]Change{{add(a, h2), del(a)}}, nil},
		{"removed and added in one batch", [][]Change{{add(a, h2)}, {del(a), add(a, h3)}}, []netip.AddrPort{h3}},
		{"removed by an unmasked prefix", [][]Change{{add(a, h2)}, {del(netip.MustParsePrefix("100.96.2.77/24"))}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tbl := &Table{}
			for _, changes := range tc.batches {
				var err error
				if tbl, err = tbl.Apply(changes); err != nil {
					t.Fatal(err)
				}
			}
			for _, p := range []netip.AddrPort{h2, h3, stranger} {
				want := slices.Contains(tc.peers, p)
				if got := tbl.IsPeer(p.Addr()); got != want {
					t.Errorf("IsPeer(%v) = %v, want %v", p.Addr(), got, want)
				}
			}
		})
	}
}

func TestRoutesSorted(t *testing.T) {
	in := []string{"100.96.3.0/24", "0.0.0.0/0", "100.96.0.0/16", "10.1.0.0/16", "100.96.0.0/24", "10.0.0.0/8", "100.96.2.128/25", "100.96.2.0/24", "255.255.255.255/32"}
	want := []string{"0.0.0.0/0", "10.0.0.0/8", "10.1.0.0/16", "100.96.0.0/16", "100.96.0.0/24", "100.96.2.0/24", "100.96.2.128/25", "100.96.3.0/24", "255.255.255.255/32"}
	var routes []Route
	for _, s := range in {
		routes = append(routes, Route{Subnet: netip.MustParsePrefix(s), Peer: h2})
	}
	tbl, err := NewTable(routes)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range tbl.Routes() {
		got = append(got, r.Subnet.String())
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Routes() = %v\nwant %v", got, want)
	}
}

func TestApplyErrors(t *testing.T) {
	good := Change{Route: Route{Subnet: netip.MustParsePrefix("100.96.4.0/24"), Peer: h2}}
	for _, tc := range []struct {
		name   string
		change Change
	}{
		{"zero prefix", Change{Route: Route{Peer: h2}}},
		{"zero prefix, remove", Change{Route: Route{}, Remove: true}},
		{"IPv6 prefix", Change{Route: Route{Subnet: netip.MustParsePrefix("fd00::/64"), Peer: h2}}},
		{"IPv6 prefix, remove", Change{Route: Route{Subnet: netip.MustParsePrefix("fd00::/64")}, Remove: true}},
		{"IPv4-mapped prefix", Change{Route: Route{Subnet: netip.MustParsePrefix("::ffff:100.96.4.0/120"), Peer: h2}}},
		{"prefix too long", Change{Route: Route{Subnet: netip.PrefixFrom(netip.MustParseAddr("100.96.4.0"), 33), Peer: h2}}},
		{"zero peer", Change{Route: Route{Subnet: netip.MustParsePrefix("100.96.5.0/24")}}},
		{"IPv6 peer", Change{Route: Route{Subnet: netip.MustParsePrefix("100.96.5.0/24"), Peer: netip.MustParseAddrPort("[2001:db8::1]:8285")}}},
		{"IPv4-mapped peer", Change{Route: Route{Subnet: netip.MustParsePrefix("100.96.5.0/24"), Peer: netip.MustParseAddrPort("[::ffff:192.0.2.2]:8285")}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base, err := NewTable(testRoutes())
			if err != nil {
				t.Fatal(err)
			}
			before := base.Routes()
			// The bad change comes after a good one: nothing may be applied.
			got, err := base.Apply([]Change{good, tc.change})
			if err == nil {
				t.Fatalf("Apply accepted %+v: %v", tc.change, got.Routes())
			}
			if got != nil {
				t.Errorf("Apply returned a table with its error")
			}
			if !slices.Equal(base.Routes(), before) {
				t.Errorf("a failed Apply changed the table")
			}
			if _, err := NewTable([]Route{tc.change.Route}); err == nil && !tc.change.Remove {
				t.Errorf("NewTable accepted %+v", tc.change.Route)
			}
		})
	}
	// A removal needs no peer.
	tbl, err := NewTable(testRoutes())
	if err != nil {
		t.Fatal(err)
	}
	if tbl, err = tbl.Apply([]Change{{Route: Route{Subnet: netip.MustParsePrefix("100.96.2.0/24")}, Remove: true}}); err != nil || tbl.Len() != 1 {
		t.Fatalf("removing with no peer: %v, %d routes left, want 1", err, tbl.Len())
	}
}

// TestIsPeerPort: a peer is known by its address and port; the ports of
// one address are counted apart, so removing one leaves the other.
func TestIsPeerPort(t *testing.T) {
	a := netip.MustParsePrefix("100.96.2.0/24")
	b := netip.MustParsePrefix("100.96.3.0/24")
	h2other := netip.AddrPortFrom(h2.Addr(), 9999)
	tbl, err := NewTable([]Route{{Subnet: a, Peer: h2}, {Subnet: b, Peer: h2other}})
	if err != nil {
		t.Fatal(err)
	}
	check := func(want map[netip.AddrPort]bool) {
		t.Helper()
		for _, p := range []netip.AddrPort{h2, h2other, h3, netip.AddrPortFrom(h2.Addr(), 1)} {
			if got := tbl.IsPeerPort(p); got != want[p] {
				t.Errorf("IsPeerPort(%v) = %v, want %v", p, got, want[p])
			}
		}
	}
	check(map[netip.AddrPort]bool{h2: true, h2other: true})
	if tbl, err = tbl.Apply([]Change{{Route: Route{Subnet: b}, Remove: true}}); err != nil {
		t.Fatal(err)
	}
	check(map[netip.AddrPort]bool{h2: true})
	if tbl, err = tbl.Apply([]Change{{Route: Route{Subnet: a, Peer: h3}}}); err != nil {
		t.Fatal(err)
	}
	check(map[netip.AddrPort]bool{h3: true})
}
