package broker

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// sublist routes topic names to their subscriptions (one per virtual
// host), after the idea of nats-server's sublist: wildcard patterns live
// in a trie of dot-separated segments with "*" and "#" children, and the
// patterns a name matches are cached per name, so a publish costs the
// same whether 0 or 20,000 patterns that do not match it exist.
//
// Exact names keep a map rather than a path in the trie: a publish to an
// exact name is then one hash lookup that never involves the bounded
// cache (a broker with more live topic names than the cache holds, say
// one per user, would otherwise rebuild results on every publish), exact
// names need not be valid patterns ("a..b" is a name a client may use),
// and the map is what stompbox_topics counts.
//
// Cost: subscribe and unsubscribe walk the pattern's segments and change
// one subSet (amortized O(1), no copy of the subscribers); a publish is a
// read-locked map lookup, plus, when the virtual host has any wildcard
// subscription, a read-locked cache lookup. Only a cache miss walks the
// trie: time proportional to the trie states the name can reach, never to
// the patterns it cannot.
type sublist struct {
	mu    sync.RWMutex
	exact map[string]*subSet // guarded by mu: exact names with subscribers
	root  *trieNode          // guarded by mu (the nodes too): wildcard patterns

	// patterns counts the trie nodes holding subscriptions; with none, a
	// publish skips the cache. gen changes (under mu) whenever a pattern
	// gains its first subscription or loses its last: cached results are
	// lists of pattern nodes' subSets, so more subscribers to an existing
	// pattern reach publishers through its subSet without invalidating
	// anything. wildcardSubs counts wildcard subscriptions for metrics.
	patterns     atomic.Int32
	wildcardSubs atomic.Int32
	gen          atomic.Uint64

	cacheMu sync.RWMutex
	cache   map[string]sublistCacheEntry // guarded by cacheMu; entries are immutable

	// visits counts trie states walked by cache misses, so tests can
	// prove a publish does not walk patterns that cannot match.
	visits atomic.Uint64

	// interest (immutable; nil without a cluster) is told, under mu, when
	// a name or pattern gains its first subscription or loses its last.
	interest func(pattern string, on bool)
}

// sublistCacheMax bounds the names whose results are cached: a few
// thousand hot names; a miss costs one trie walk and one small slice.
const sublistCacheMax = 4096

// sublistCacheEntry is the wildcard result for one name, valid while the
// sublist's gen is still gen. sets is never modified once cached.
type sublistCacheEntry struct {
	gen  uint64
	sets []*subSet
}

// trieNode is one segment of one or more wildcard patterns.
type trieNode struct {
	parent  *trieNode            // nil for the root
	segment string               // the edge from parent: a literal, "*" or "#"
	literal map[string]*trieNode // nil until a child is added
	star    *trieNode            // the "*" child: exactly one segment
	hash    *trieNode            // the "#" child: zero or more segments
	subs    *subSet              // subscriptions whose pattern ends here; nil if none
	// underHash: this node or one above it is a "#" (a walk may reach
	// it more than once).
	underHash bool
}

func (n *trieNode) empty() bool {
	return n.subs == nil && len(n.literal) == 0 && n.star == nil && n.hash == nil
}

func newSublist() *sublist {
	return &sublist{
		exact: make(map[string]*subSet),
		root:  &trieNode{},
		cache: make(map[string]sublistCacheEntry),
	}
}

// insert adds sub under its pattern. For an exact name nobody subscribes
// to yet, create (when not nil) runs first and may refuse: the check and
// the insert are one step under mu, as a new topic is a new destination.
func (sl *sublist) insert(sub *subscription, create func() *stompError) *stompError {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if !isWildcard(sub.pattern) {
		set := sl.exact[sub.pattern]
		if set == nil {
			if create != nil {
				if err := create(); err != nil {
					return err
				}
			}
			set = newSubSet()
			set.pattern = sub.pattern
			sl.exact[sub.pattern] = set
			if sl.interest != nil {
				sl.interest(sub.pattern, true)
			}
		}
		set.add(sub)
		return nil
	}
	n := sl.root
	for seg := range strings.SplitSeq(sub.pattern, ".") {
		n = n.child(seg)
	}
	if n.subs == nil {
		n.subs = newSubSet()
		n.subs.pattern = sub.pattern
		sl.patterns.Add(1)
		sl.gen.Add(1)
		if sl.interest != nil {
			sl.interest(sub.pattern, true)
		}
	}
	before := n.subs.live.Load()
	n.subs.add(sub)
	sl.wildcardSubs.Add(n.subs.live.Load() - before)
	return nil
}

// child returns n's child for seg, created if missing. Caller holds mu.
func (n *trieNode) child(seg string) *trieNode {
	switch seg {
	case "*":
		if n.star == nil {
			n.star = &trieNode{parent: n, segment: seg, underHash: n.underHash}
		}
		return n.star
	case "#":
		if n.hash == nil {
			n.hash = &trieNode{parent: n, segment: seg, underHash: true}
		}
		return n.hash
	}
	c := n.literal[seg]
	if c == nil {
		if n.literal == nil {
			n.literal = make(map[string]*trieNode)
		}
		c = &trieNode{parent: n, segment: seg, underHash: n.underHash}
		n.literal[seg] = c
	}
	return c
}

// hasExact reports whether topic name has an exact-name subscriber.
func (sl *sublist) hasExact(name string) bool {
	sl.mu.RLock()
	defer sl.mu.RUnlock()
	return sl.exact[name] != nil
}

// remove takes sub out; a name or pattern left without subscriptions is
// forgotten (its trie nodes pruned).
func (sl *sublist) remove(sub *subscription) {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if !isWildcard(sub.pattern) {
		if set := sl.exact[sub.pattern]; set != nil && set.remove(sub) && set.live.Load() == 0 {
			delete(sl.exact, sub.pattern)
			if sl.interest != nil {
				sl.interest(sub.pattern, false)
			}
		}
		return
	}
	n := sl.root
	for seg := range strings.SplitSeq(sub.pattern, ".") {
		switch seg {
		case "*":
			n = n.star
		case "#":
			n = n.hash
		default:
			n = n.literal[seg]
		}
		if n == nil {
			return
		}
	}
	if n.subs == nil || !n.subs.remove(sub) {
		return
	}
	sl.wildcardSubs.Add(-1)
	if n.subs.live.Load() > 0 {
		return
	}
	n.subs = nil
	sl.patterns.Add(-1)
	sl.gen.Add(1)
	if sl.interest != nil {
		sl.interest(sub.pattern, false)
	}
	for n.parent != nil && n.empty() {
		p := n.parent
		switch n.segment {
		case "*":
			p.star = nil
		case "#":
			p.hash = nil
		default:
			delete(p.literal, n.segment)
		}
		n = p
	}
}

// match returns the subscriptions a message to the topic name reaches:
// the exact name's set and the sets of the wildcard patterns matching it.
// Both are snapshots the caller iterates without a lock; the slice is
// shared and must not be modified. On a cache hit match allocates nothing
// and takes only read locks.
func (sl *sublist) match(name string) (*subSet, []*subSet) {
	sl.mu.RLock()
	exact := sl.exact[name]
	sl.mu.RUnlock()
	if sl.patterns.Load() == 0 {
		return exact, nil
	}
	g := sl.gen.Load()
	sl.cacheMu.RLock()
	e, ok := sl.cache[name]
	sl.cacheMu.RUnlock()
	if ok && e.gen == g {
		return exact, e.sets
	}
	return exact, sl.fill(name)
}

// fill walks the trie for name and caches the result.
func (sl *sublist) fill(name string) []*subSet {
	sl.mu.RLock()
	g := sl.gen.Load() // stable while mu is held: writers change it under mu
	sets, visits := walkTrie(sl.root, name)
	sl.mu.RUnlock()
	sl.visits.Add(uint64(visits))

	sl.cacheMu.Lock()
	defer sl.cacheMu.Unlock()
	if old, ok := sl.cache[name]; ok && old.gen > g {
		return sets // a newer result got there first
	}
	if len(sl.cache) >= sublistCacheMax {
		sl.evictLocked(g)
	}
	sl.cache[name] = sublistCacheEntry{gen: g, sets: sets}
	return sets
}

// evictLocked makes room in a full cache: stale entries go first, then
// arbitrary ones (map order) down to three quarters of the bound, so a
// miss pays for an eviction pass only once per thousand or so misses.
// Caller holds cacheMu.
func (sl *sublist) evictLocked(gen uint64) {
	target := sublistCacheMax * 3 / 4
	for name, e := range sl.cache {
		if e.gen != gen {
			delete(sl.cache, name)
		}
	}
	for name := range sl.cache {
		if len(sl.cache) <= target {
			return
		}
		delete(sl.cache, name)
	}
}

// walkTrie returns the subSets of the patterns below root that match
// name, and the number of trie states it visited. A state is a node and
// the number of name segments consumed; each is visited at most once,
// which both removes duplicates (a pattern like "#.#" reaches its node
// along many paths) and bounds the walk by nodes x segments even for
// patterns like "#.#.#.#.z" that would make a backtracking matcher
// exponential. Only nodes at or below a "#" can be reached twice
// (elsewhere a node's depth is the segments consumed), so only they are
// remembered. The semantics are topicMatch's: "*" takes exactly one
// segment, "#" zero or more, anywhere in the pattern.
//
// The walk is a loop over an explicit stack of local arrays, not a
// recursion through a shared struct, so that it stays on the caller's
// stack: a miss whose name matches nothing allocates nothing (beyond 16
// segments or 32 states the slices grow on the heap).
func walkTrie(root *trieNode, name string) (sets []*subSet, visits int) {
	var segBuf [16]string
	var stackBuf, seenBuf [32]trieState
	segs := appendSegments(segBuf[:0], name)
	k := len(segs)
	stack := append(stackBuf[:0], trieState{root, 0})
	seen := seenBuf[:0]
	var seenMap map[trieState]struct{} // once seen is full
	for len(stack) > 0 {
		st := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		n, i := st.n, st.i
		if n.underHash {
			switch {
			case seenMap != nil:
				if _, ok := seenMap[st]; ok {
					continue
				}
				seenMap[st] = struct{}{}
			case slices.Contains(seen, st):
				continue
			case len(seen) < cap(seen):
				seen = append(seen, st)
			default:
				seenMap = make(map[trieState]struct{}, 4*len(seen))
				for _, old := range seen {
					seenMap[old] = struct{}{}
				}
				seenMap[st] = struct{}{}
			}
		}
		visits++
		if n.hash != nil {
			stack = append(stack, trieState{n.hash, i}) // "#" taking zero segments
		}
		if i == k {
			if n.subs != nil {
				sets = append(sets, n.subs)
			}
			continue
		}
		if n.segment == "#" {
			stack = append(stack, trieState{n, i + 1}) // this "#" takes one more segment
		}
		if c := n.literal[segs[i]]; c != nil {
			stack = append(stack, trieState{c, i + 1})
		}
		if n.star != nil {
			stack = append(stack, trieState{n.star, i + 1})
		}
	}
	return sets, visits
}

// trieState is one step of walkTrie: node n reached with i name segments
// consumed.
type trieState struct {
	n *trieNode
	i int
}

// appendSegments appends the dot-separated segments of name to segs.
func appendSegments(segs []string, name string) []string {
	for {
		seg, rest, more := strings.Cut(name, ".")
		segs = append(segs, seg)
		if !more {
			return segs
		}
		name = rest
	}
}
