package broker

import (
	"runtime"
	"strconv"
	"testing"
)

// benchHistory keeps the last 1000 messages of /topic/bench.
var benchHistory = Config{TopicHistory: []HistoryRule{{Pattern: "/topic/bench", Size: 1000}}}

// BenchmarkFanoutHistory is BenchmarkFanout on a topic with history: each
// SEND also gets its offset (one new header block per message) and is
// retained in the ring, under the topic's lock. Compare its ns/delivery
// and allocs/delivery with BenchmarkFanout's (docs/benchmarks.md).
func BenchmarkFanoutHistory(b *testing.B) {
	base := newFanoutWith(b, 0, benchHistory)
	baseline := allocsPerSend(b, base)
	base.release()
	b.Logf("allocs per SEND to a history topic without subscribers: %v", baseline)
	for _, n := range []int{1, 100, 1000} {
		b.Run("subs="+strconv.Itoa(n), func(b *testing.B) {
			f := newFanoutWith(b, n, benchHistory)
			defer f.release()
			perSend := allocsPerSend(b, f)
			b.ReportAllocs()
			for b.Loop() {
				f.publish(b)
			}
			b.ReportMetric((perSend-baseline)/float64(n), "allocs/delivery")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/delivery")
		})
	}
}

// TestHistoryFanoutAllocsIndependentOfSubscribers: with history on, a
// delivery still allocates nothing: a SEND to 1000 subscribers allocates
// what a SEND to one does (the offset is set once, at publish).
func TestHistoryFanoutAllocsIndependentOfSubscribers(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts: not in -short")
	}
	one, many := newFanoutWith(t, 1, benchHistory), newFanoutWith(t, 1000, benchHistory)
	defer one.release()
	defer many.release()
	a1, a1000 := allocsPerSend(t, one), allocsPerSend(t, many)
	if a1 != a1000 {
		t.Errorf("allocs per SEND with history: %v with 1 subscriber, %v with 1000; want equal", a1, a1000)
	}
	plain := newFanout(t, 1)
	defer plain.release()
	a0 := allocsPerSend(t, plain)
	if a1 > a0+3 {
		t.Errorf("allocs per SEND: %v with history, %v without; want at most 3 more (withOffset: the Message, its headers, their encoding)", a1, a0)
	}
	t.Logf("allocs per SEND: %v with history, %v without", a1, a0)
}

// BenchmarkHistoryMemory retains 100,000 messages with 128-byte bodies
// (the fan-out's SEND: destination and content-type headers) in one
// topic's history and reports the heap they take per message, with
// runtime.MemStats after a GC. Run with -benchtime=1x.
func BenchmarkHistoryMemory(b *testing.B) {
	const n = 100_000
	for b.Loop() {
		cfg := Config{TopicHistory: []HistoryRule{{Pattern: "/topic/bench", Size: n}}}
		f := newFanoutWith(b, 0, cfg)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for range n {
			f.publish(b)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		st := f.pub.b.HistoryStats()
		if st.Messages != n {
			b.Fatalf("%d retained, want %d", st.Messages, n)
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "heap-bytes/msg")
		b.ReportMetric(float64(st.Bytes)/n, "counted-bytes/msg")
		f.release()
	}
}
