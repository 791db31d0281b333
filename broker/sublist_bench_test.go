package broker

import (
	"strconv"
	"testing"
)

// noisePattern is the i-th of a family of wildcard patterns that never
// match "bench.unrelated" (nor "bench"), in the four shapes a trie must
// not walk for an unrelated name: a literal prefix, a leading "*", a
// leading "#" and a "#" in the middle.
func noisePattern(i int) string {
	n := strconv.Itoa(i)
	switch i % 4 {
	case 0:
		return "noise." + n + ".*"
	case 1:
		return "*.noise" + n
	case 2:
		return "#.noise" + n
	}
	return "noise" + n + ".#.end"
}

// benchSpace is the default virtual host of a new broker with n
// non-matching wildcard subscriptions (no sessions: nothing is delivered).
func benchSpace(tb testing.TB, n int) *space {
	tb.Helper()
	sp := New(Config{}).spaces[DefaultVirtualHost]
	for i := range n {
		if err := sp.addTopicSub(&subscription{pattern: noisePattern(i)}, noCreateLimit); err != nil {
			tb.Fatal(err)
		}
	}
	return sp
}

func noCreateLimit() *stompError { return nil }

// BenchmarkTopicPublishUnrelated publishes to a topic nobody subscribes to
// while 0, 1,000 and 20,000 wildcard subscriptions that do not match it
// exist: the routing cost of a publish, without any delivery.
func BenchmarkTopicPublishUnrelated(b *testing.B) {
	for _, n := range []int{0, 1000, 20000} {
		b.Run("wildcards="+strconv.Itoa(n), func(b *testing.B) {
			sp := benchSpace(b, n)
			m := &Message{}
			b.ReportAllocs()
			for b.Loop() {
				sp.publishTopic("bench.unrelated", m)
			}
		})
	}
}

// BenchmarkTopicSubscribe subscribes and unsubscribes one subscription
// while 10,000 others exist: the same exact topic, or wildcard patterns.
func BenchmarkTopicSubscribe(b *testing.B) {
	const existing = 10000
	b.Run("exact/existing=10000", func(b *testing.B) {
		sp := New(Config{}).spaces[DefaultVirtualHost]
		for range existing {
			if err := sp.addTopicSub(&subscription{pattern: "bench.exact"}, noCreateLimit); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		for b.Loop() {
			sub := &subscription{pattern: "bench.exact"}
			if err := sp.addTopicSub(sub, noCreateLimit); err != nil {
				b.Fatal(err)
			}
			sp.removeTopicSub(sub)
		}
	})
	b.Run("wildcard/existing=10000", func(b *testing.B) {
		sp := benchSpace(b, existing)
		b.ReportAllocs()
		for b.Loop() {
			sub := &subscription{pattern: "bench.*.x"}
			if err := sp.addTopicSub(sub, noCreateLimit); err != nil {
				b.Fatal(err)
			}
			sp.removeTopicSub(sub)
		}
	})
}

// BenchmarkTopicPublishUncached publishes to 8,192 different unrelated
// names in turn, twice the cache's size, so every publish misses the cache
// and walks the trie, next to 20,000 non-matching wildcard subscriptions.
func BenchmarkTopicPublishUncached(b *testing.B) {
	sp := benchSpace(b, 20000)
	names := make([]string, 2*sublistCacheMax)
	for i := range names {
		names[i] = "bench.unrelated" + strconv.Itoa(i)
	}
	m := &Message{}
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		sp.publishTopic(names[i%len(names)], m)
		i++
	}
}
