package broker

import (
	"sync"
	"sync/atomic"
	"testing"
)

// A StripedCounter's total is every stripe's adds, from any number of
// goroutines, stripes past counterStripes wrapping around.
func TestStripedCounterSums(t *testing.T) {
	var c StripedCounter
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				c.Add(uint32(g*7+i), 2)
			}
		})
	}
	wg.Wait()
	if got := c.Load(); got != 8*1000*2 {
		t.Fatalf("Load %d, want %d", got, 8*1000*2)
	}
}

// BenchmarkCounterAdd: goroutines on every core adding to one atomic
// against adding to their own stripe (what Stats.Published and
// Stats.Delivered are, per session).
func BenchmarkCounterAdd(b *testing.B) {
	b.Run("one-atomic", func(b *testing.B) {
		var n atomic.Uint64
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				n.Add(1)
			}
		})
	})
	b.Run("striped", func(b *testing.B) {
		var c StripedCounter
		var next atomic.Uint32
		b.RunParallel(func(pb *testing.PB) {
			stripe := next.Add(1)
			for pb.Next() {
				c.Add(stripe, 1)
			}
		})
	})
}
