package broker

import (
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// routed is what a publish to name reaches through sl: the exact name's
// subscriptions, then the matching patterns'.
func routed(sl *sublist, name string) []*subscription {
	exact, wild := sl.match(name)
	subs := exact.appendTo(nil)
	for _, set := range wild {
		subs = set.appendTo(subs)
	}
	return subs
}

// bruteForce is what routed must return (in any order): every
// subscription whose pattern topicMatch accepts for name.
func bruteForce(subs []*subscription, name string) []*subscription {
	var want []*subscription
	for _, sub := range subs {
		if topicMatch(sub.pattern, name) {
			want = append(want, sub)
		}
	}
	return want
}

// sameSubs reports whether got and want hold the same subscriptions, each
// once.
func sameSubs(got, want []*subscription) bool {
	if len(got) != len(want) {
		return false
	}
	seen := make(map[*subscription]bool, len(got))
	for _, sub := range got {
		if seen[sub] {
			return false
		}
		seen[sub] = true
	}
	for _, sub := range want {
		if !seen[sub] {
			return false
		}
	}
	return true
}

func patternsOf(subs []*subscription) []string {
	var ps []string
	for _, sub := range subs {
		ps = append(ps, sub.pattern)
	}
	return ps
}

// Every topicMatch case holds through the trie: alone (one subscription
// per sublist), and all patterns subscribed together, each name routed to
// exactly the subscriptions topicMatch picks.
func TestSublistMatchesTopicMatchCases(t *testing.T) {
	for _, tc := range topicMatchCases {
		sl := newSublist()
		sub := &subscription{pattern: tc.pattern}
		if err := sl.insert(sub, nil); err != nil {
			t.Fatal(err)
		}
		if got := len(routed(sl, tc.name)) == 1; got != tc.want {
			t.Errorf("trie: %q matches %q = %v, want %v", tc.pattern, tc.name, got, tc.want)
		}
	}
	sl := newSublist()
	var all []*subscription
	for _, tc := range topicMatchCases {
		sub := &subscription{pattern: tc.pattern}
		all = append(all, sub)
		if err := sl.insert(sub, nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range topicMatchCases {
		for range 2 { // a miss, then the cached result
			got, want := routed(sl, tc.name), bruteForce(all, tc.name)
			if !sameSubs(got, want) {
				t.Fatalf("%q reaches %q, want %q", tc.name, patternsOf(got), patternsOf(want))
			}
		}
	}
}

// A pattern of many "#" that cannot match walks nodes x segments states at
// most, not the combinations a backtracking matcher would try (the case of
// TestReviewTopicMatchWildcardBlowup, through the trie).
func TestSublistHashPatternsStayPolynomial(t *testing.T) {
	sl := newSublist()
	pattern := strings.Repeat("#.", 12) + "z"
	name := strings.Repeat("a.", 40) + "b"
	if err := sl.insert(&subscription{pattern: pattern}, nil); err != nil {
		t.Fatal(err)
	}
	if got := routed(sl, name); len(got) != 0 {
		t.Fatalf("%q matched %q", pattern, name)
	}
	nodes, segments := 14, 41 // root, 12 "#", "z"
	if v := sl.visits.Load(); v > uint64(nodes*(segments+1)) {
		t.Fatalf("walked %d states, want at most %d", v, nodes*(segments+1))
	}
	if got := routed(sl, strings.Repeat("a.", 40)+"z"); len(got) != 1 {
		t.Fatalf("%q did not match", pattern)
	}
}

// nonMatching subscribes n wildcard patterns that never match
// "bench.unrelated", in 20 rounds as 20 connections would.
func nonMatching(tb testing.TB, sl *sublist, n int) {
	tb.Helper()
	for i := range n {
		if err := sl.insert(&subscription{pattern: noisePattern(i)}, nil); err != nil {
			tb.Fatal(err)
		}
	}
}

// The work of routing a publish does not grow with the wildcard
// subscriptions that cannot match it: the trie states a miss walks are the
// same with 20 x 1,001 such subscriptions as with 4 (one of each shape),
// and a cached name walks nothing at all.
func TestSublistPublishWorkIndependentOfNonMatching(t *testing.T) {
	walk := func(noise int) uint64 {
		sl := newSublist()
		matching := []string{"bench.*", "#.unrelated", "bench.#", "*.*"}
		for _, p := range matching {
			if err := sl.insert(&subscription{pattern: p}, nil); err != nil {
				t.Fatal(err)
			}
		}
		nonMatching(t, sl, noise)
		if got := routed(sl, "bench.unrelated"); len(got) != len(matching) {
			t.Fatalf("with %d non-matching: %q reached, want %q", noise, patternsOf(got), matching)
		}
		v := sl.visits.Load()
		for range 10 {
			routed(sl, "bench.unrelated")
		}
		if again := sl.visits.Load(); again != v {
			t.Fatalf("cached name walked %d more states", again-v)
		}
		return v
	}
	few, many := walk(4), walk(20*1001)
	if few != many {
		t.Fatalf("a miss walked %d states with 4 non-matching patterns, %d with 20,020", few, many)
	}
	if few > 20 {
		t.Fatalf("a miss walked %d states for a two-segment name", few)
	}
}

// A publish whose result is cached allocates nothing and walks no trie
// state, however many wildcard subscriptions exist (a miss that matches
// nothing allocates nothing either, so the walk count is what shows the
// cache answered).
func TestTopicPublishCacheHitAllocatesNothing(t *testing.T) {
	sp := benchSpace(t, 20*1001)
	m := &Message{}
	sp.publishTopic("bench.unrelated", m)
	before := sp.topics.visits.Load()
	if n := testing.AllocsPerRun(100, func() { sp.publishTopic("bench.unrelated", m) }); n != 0 {
		t.Fatalf("publish allocates %v times, want 0", n)
	}
	if walked := sp.topics.visits.Load() - before; walked != 0 {
		t.Fatalf("cached publishes walked %d trie states, want 0", walked)
	}
}

// Subscribing and unsubscribing does not copy the existing subscriptions:
// one cycle allocates the same handful of objects and bytes next to 10 or
// 10,000 others, on one exact topic or among wildcard patterns.
func TestTopicSubscribeDoesNotCopy(t *testing.T) {
	cost := func(existing int, pattern string) (allocs, bytes float64) {
		sp := New(Config{}).spaces[DefaultVirtualHost]
		for i := range existing {
			p := pattern
			if isWildcard(pattern) {
				p = noisePattern(i)
			}
			if err := sp.addTopicSub(&subscription{pattern: p}, noCreateLimit); err != nil {
				t.Fatal(err)
			}
		}
		subs := make([]subscription, 2000) // allocated outside the measurement
		for i := range subs {
			subs[i].pattern = pattern
		}
		i := 0
		cycle := func() {
			sub := &subs[i%len(subs)]
			i++
			if err := sp.addTopicSub(sub, noCreateLimit); err != nil {
				t.Fatal(err)
			}
			sp.removeTopicSub(sub)
		}
		cycle()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		const runs = 1000
		for range runs {
			cycle()
		}
		runtime.ReadMemStats(&after)
		return testing.AllocsPerRun(runs, cycle), float64(after.TotalAlloc-before.TotalAlloc) / runs
	}
	for _, pattern := range []string{"bench.exact", "bench.*.x"} {
		smallAllocs, smallBytes := cost(10, pattern)
		bigAllocs, bigBytes := cost(10000, pattern)
		t.Logf("%s: %v allocs, %.0f B per cycle next to 10; %v allocs, %.0f B next to 10,000",
			pattern, smallAllocs, smallBytes, bigAllocs, bigBytes)
		if bigAllocs > smallAllocs || bigAllocs > 16 {
			t.Errorf("%s: %v allocs per cycle next to 10,000 subscriptions, %v next to 10", pattern, bigAllocs, smallAllocs)
		}
		// 10,000 pointers are 80 KB: any copy of the list shows.
		if bigBytes > 2048 || bigBytes > 2*smallBytes+512 {
			t.Errorf("%s: %.0f B per cycle next to 10,000 subscriptions, %.0f B next to 10", pattern, bigBytes, smallBytes)
		}
	}
}

// Publishers route while sessions subscribe and unsubscribe: every result
// holds each subscription at most once, only subscriptions that match,
// and always the ones that stay subscribed throughout. Run with -race.
func TestSublistConcurrentPublishAndSubscribe(t *testing.T) {
	sl := newSublist()
	names := []string{"a.b", "a.b.c", "x.y", "a"}
	stable := []*subscription{{pattern: "a.b"}, {pattern: "a.#"}, {pattern: "*.y"}}
	for _, sub := range stable {
		if err := sl.insert(sub, nil); err != nil {
			t.Fatal(err)
		}
	}
	churn := []string{"a.b", "a.*", "#", "a.#.c", "x.y", "*.*.*", "a.b.c", "#.y"}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for w := range 3 { // subscribers: add and remove in bursts
		wg.Go(func() {
			var mine []*subscription
			for i := range 3000 {
				if i%3 == 2 && len(mine) > 0 {
					sl.remove(mine[0])
					mine = mine[1:]
					continue
				}
				sub := &subscription{pattern: churn[(i+w)%len(churn)]}
				if err := sl.insert(sub, nil); err != nil {
					errs <- err.Error()
					return
				}
				mine = append(mine, sub)
			}
			for _, sub := range mine {
				sl.remove(sub)
			}
		})
	}
	for p := range 3 { // publishers
		wg.Go(func() {
			for i := range 5000 {
				name := names[(i+p)%len(names)]
				got := routed(sl, name)
				seen := map[*subscription]bool{}
				for _, sub := range got {
					if seen[sub] || !topicMatch(sub.pattern, name) {
						errs <- name + " reached " + sub.pattern + " (or twice)"
						return
					}
					seen[sub] = true
				}
				for _, sub := range bruteForce(stable, name) {
					if !seen[sub] {
						errs <- name + " missed the stable " + sub.pattern
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	for _, name := range names {
		if got, want := routed(sl, name), bruteForce(stable, name); !sameSubs(got, want) {
			t.Errorf("after the churn %q reaches %q, want %q", name, patternsOf(got), patternsOf(want))
		}
	}
	if n, p := sl.wildcardSubs.Load(), sl.patterns.Load(); n != 2 || p != 2 {
		t.Errorf("after the churn: %d wildcard subscriptions in %d patterns, want 2 in 2", n, p)
	}
}

// The cache holds at most sublistCacheMax names, and a name evicted or
// invalidated is routed right when it comes back.
func TestSublistCacheBoundedAndInvalidated(t *testing.T) {
	sl := newSublist()
	star := &subscription{pattern: "t.*"}
	if err := sl.insert(star, nil); err != nil {
		t.Fatal(err)
	}
	for i := range 3 * sublistCacheMax {
		name := "t." + strconv.Itoa(i)
		if got := routed(sl, name); len(got) != 1 {
			t.Fatalf("%s reached %d subscriptions", name, len(got))
		}
		if n := len(sl.cache); n > sublistCacheMax {
			t.Fatalf("cache holds %d names", n)
		}
	}
	// A new pattern invalidates the cached results; one more subscriber
	// to an existing pattern reaches cached results through its set.
	hash := &subscription{pattern: "t.#"}
	again := &subscription{pattern: "t.*"}
	for _, sub := range []*subscription{hash, again} {
		if err := sl.insert(sub, nil); err != nil {
			t.Fatal(err)
		}
	}
	all := []*subscription{star, hash, again}
	for _, name := range []string{"t.1", "t." + strconv.Itoa(3*sublistCacheMax-1), "t", "t.1.2"} {
		if got, want := routed(sl, name), bruteForce(all, name); !sameSubs(got, want) {
			t.Fatalf("%q reaches %q, want %q", name, patternsOf(got), patternsOf(want))
		}
	}
	sl.remove(star)
	sl.remove(hash)
	if got, want := routed(sl, "t.1"), []*subscription{again}; !sameSubs(got, want) {
		t.Fatalf("after unsubscribing: %q", patternsOf(got))
	}
	sl.remove(again)
	if got := routed(sl, "t.1"); len(got) != 0 || sl.patterns.Load() != 0 || !sl.root.empty() {
		t.Fatalf("after the last unsubscribe: %q reached, %d patterns", patternsOf(got), sl.patterns.Load())
	}
}

// stompbox_topics counts exact names with subscribers and
// stompbox_topic_subscribers every topic subscription (exact, wildcard,
// durable feed), as before the trie.
func TestTopicGaugesCountSublist(t *testing.T) {
	b := New(Config{})
	sp := b.spaces[DefaultVirtualHost]
	subs := []*subscription{
		{pattern: "a.b"}, {pattern: "a.b"}, {pattern: "c"},
		{pattern: "a.*"}, {pattern: "a.*"}, {pattern: "#"},
	}
	for _, sub := range subs {
		if err := sp.addTopicSub(sub, noCreateLimit); err != nil {
			t.Fatal(err)
		}
	}
	st := b.destinationSnapshot()
	if st.topics != 2 || st.topicSubscribers != 6 {
		t.Fatalf("topics %d, subscribers %d; want 2, 6", st.topics, st.topicSubscribers)
	}
	for _, sub := range subs {
		sp.removeTopicSub(sub)
	}
	if st := b.destinationSnapshot(); st.topics != 0 || st.topicSubscribers != 0 {
		t.Fatalf("after unsubscribing: topics %d, subscribers %d", st.topics, st.topicSubscribers)
	}
}

// A cache miss (a name not published lately, or any name after a pattern
// came or went) walks the trie on the stack: it allocates nothing when no
// pattern matches, and only its result slice when some do, even with the
// cache full and evicting.
func TestSublistMissAllocatesOnlyItsResult(t *testing.T) {
	sl := newSublist()
	nonMatching(t, sl, 20*1001)
	if err := sl.insert(&subscription{pattern: "hit.*"}, nil); err != nil {
		t.Fatal(err)
	}
	const runs = 2000
	names := make([]string, 0, sublistCacheMax+4*(runs+1))
	for i := range cap(names) {
		names = append(names, "bench.unrelated"+strconv.Itoa(i))
	}
	for _, name := range names[:sublistCacheMax] { // the cache full
		routed(sl, name)
	}
	next := sublistCacheMax
	missNothing := func() {
		if _, wild := sl.match(names[next]); len(wild) != 0 {
			t.Fatalf("%s matched", names[next])
		}
		next++
	}
	if n := testing.AllocsPerRun(runs, missNothing); n != 0 {
		t.Errorf("a miss matching nothing allocates %v times, want 0", n)
	}
	for i := range names[next:] {
		names[next+i] = "hit." + strconv.Itoa(i)
	}
	missOne := func() {
		if _, wild := sl.match(names[next]); len(wild) != 1 {
			t.Fatalf("%s reached %d patterns, want 1", names[next], len(wild))
		}
		next++
	}
	if n := testing.AllocsPerRun(runs, missOne); n != 1 {
		t.Errorf("a miss matching one pattern allocates %v times, want 1 (its result)", n)
	}
	if n := len(sl.cache); n > sublistCacheMax {
		t.Errorf("cache holds %d names", n)
	}
}

// Long names and many "#" take the walk past its stack arrays (16
// segments, 32 remembered states): results still equal topicMatch's.
func TestSublistLongNamesMatchTopicMatch(t *testing.T) {
	sl := newSublist()
	var all []*subscription
	for _, p := range []string{"#", "#.#.a.#", "a.*.#.b", "#.b", "*.#.*.a", "a.#.a.#.a", "#.a.#.b.#.a", "*.*.*.#", "b.#"} {
		sub := &subscription{pattern: p}
		all = append(all, sub)
		if err := sl.insert(sub, nil); err != nil {
			t.Fatal(err)
		}
	}
	rng := rand.New(rand.NewPCG(11, 12))
	for range 300 {
		segs := make([]string, 1+rng.IntN(40))
		for i := range segs {
			segs[i] = []string{"a", "b", "c"}[rng.IntN(3)]
		}
		name := strings.Join(segs, ".")
		if got, want := routed(sl, name), bruteForce(all, name); !sameSubs(got, want) {
			t.Fatalf("%q reaches %q, want %q", name, patternsOf(got), patternsOf(want))
		}
	}
}
