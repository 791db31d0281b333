package broker

import (
	"strconv"
	"testing"
)

// BenchmarkIdempotentSend is one SEND to a topic with one subscriber:
// without idempotency-key (the baseline, which the feature must not
// slow down), with a new key each time (claimed and remembered; past
// DedupeMaxKeysPerUser the oldest is forgotten, the steady state), and
// repeating one key (a duplicate: receipted, not published).
func BenchmarkIdempotentSend(b *testing.B) {
	keyed := func(i int) []byte {
		return []byte("SEND\ndestination:/topic/bench\nidempotency-key:k-" + strconv.Itoa(i) + "\ncontent-length:128\n\n" +
			string(fanoutSend[len(fanoutSend)-129:]))
	}
	b.Run("no-key", func(b *testing.B) {
		f := newFanout(b, 1)
		defer f.release()
		b.ReportAllocs()
		for b.Loop() {
			f.publish(b)
		}
	})
	b.Run("new-key", func(b *testing.B) {
		f := newFanout(b, 1)
		defer f.release()
		const n = 4 * DefaultDedupeMaxKeysPerUser // past the bound: keys are forgotten, oldest first
		sends := make([][]byte, n)
		for i := range sends {
			sends[i] = keyed(i)
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			f.send = sends[i%n] // fed again after n: forgotten by then, so published
			f.publish(b)
			i++
		}
	})
	b.Run("duplicate", func(b *testing.B) {
		f := newFanout(b, 1)
		defer f.release()
		f.send = keyed(0)
		f.publish(b)
		b.ReportAllocs()
		for b.Loop() {
			f.publish(b)
		}
		if f.pub.b.stats.Duplicates.Load() == 0 {
			b.Fatal("no duplicate counted")
		}
	})
}
