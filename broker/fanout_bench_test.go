package broker

import (
	"bytes"
	"strconv"
	"testing"
	"unsafe"
)

// fanout is one publisher and n auto-ack subscribers of /topic/bench, each
// behind a fake transport, with every subscriber's output taken into one
// reused buffer, as a writer would.
type fanout struct {
	pub  *Session
	subs []*Session
	send []byte // one SEND with a 128-byte body
	out  []byte
}

// fanoutSend has no escape sequences, so Feed's in-place decoding rewrites
// it with itself and the same bytes can be fed again and again.
var fanoutSend = []byte("SEND\ndestination:/topic/bench\ncontent-type:text/plain\ncontent-length:128\n\n" +
	string(bytes.Repeat([]byte("x"), 128)) + "\x00")

func newFanout(tb testing.TB, n int) *fanout { return newFanoutWith(tb, n, Config{}) }

// newFanoutWith is newFanout on a broker configured with cfg.
func newFanoutWith(tb testing.TB, n int, cfg Config) *fanout {
	tb.Helper()
	b := New(cfg)
	connect := func() *Session {
		s := b.NewSession(&fakeTransport{}, "bench")
		if err := s.Feed([]byte("CONNECT\naccept-version:1.2\nheart-beat:0,0\n\n\x00")); err != nil {
			tb.Fatal(err)
		}
		return s
	}
	f := &fanout{pub: connect(), send: fanoutSend}
	for i := range n {
		s := connect()
		if err := s.Feed([]byte("SUBSCRIBE\ndestination:/topic/bench\nid:" + strconv.Itoa(i) + "\n\n\x00")); err != nil {
			tb.Fatal(err)
		}
		f.subs = append(f.subs, s)
	}
	f.drain()
	f.pub.AppendOutput(nil)
	return f
}

// publish feeds one SEND and takes every subscriber's output.
func (f *fanout) publish(tb testing.TB) {
	if err := f.pub.Feed(f.send); err != nil {
		tb.Fatal(err)
	}
	f.drain()
}

func (f *fanout) drain() {
	for _, s := range f.subs {
		f.out, _ = s.AppendOutput(f.out[:0])
	}
}

// release ends every session (the broker keeps no goroutines, but tests
// should leave it as they found it).
func (f *fanout) release() {
	f.pub.Release()
	for _, s := range f.subs {
		s.Release()
	}
}

// warmUp publishes until the steady state: every outbox has grown the two
// entry slices it swaps with its writer, and message ids are past 100,
// below which strconv formats without allocating.
func (f *fanout) warmUp(tb testing.TB) {
	for range 100 {
		f.publish(tb)
	}
}

// allocsPerSend measures the allocations of one publish to f's subscribers
// in the steady state.
func allocsPerSend(tb testing.TB, f *fanout) float64 {
	f.warmUp(tb)
	return testing.AllocsPerRun(200, func() { f.publish(tb) })
}

// BenchmarkFanout publishes one SEND (128-byte body) to 1, 100 and 1000
// topic subscribers and encodes every delivery. allocs/delivery is what the
// deliveries add to the allocations of a SEND nobody subscribes to, counted
// with testing.AllocsPerRun outside the timed loop: the target is 0, so a
// SEND costs the same handful whatever the fan-out.
func BenchmarkFanout(b *testing.B) {
	base := newFanout(b, 0)
	baseline := allocsPerSend(b, base)
	base.release()
	for _, n := range []int{1, 100, 1000} {
		b.Run("subs="+strconv.Itoa(n), func(b *testing.B) {
			f := newFanout(b, n)
			defer f.release()
			perSend := allocsPerSend(b, f) // also the warm-up
			b.ReportAllocs()
			for b.Loop() {
				f.publish(b)
			}
			b.ReportMetric((perSend-baseline)/float64(n), "allocs/delivery")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/delivery")
			if len(f.out) == 0 {
				b.Fatal("no output")
			}
		})
	}
}

// Fan-out costs no allocation per subscriber: a SEND to 1000 subscribers
// allocates exactly what a SEND to one does, and every delivery shares the
// one Message and its body.
func TestFanoutAllocsIndependentOfSubscribers(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts: not in -short")
	}
	one, many := newFanout(t, 1), newFanout(t, 1000)
	defer one.release()
	defer many.release()
	a1, a1000 := allocsPerSend(t, one), allocsPerSend(t, many)
	if a1 != a1000 {
		t.Errorf("allocs per SEND: %v with 1 subscriber, %v with 1000; want equal", a1, a1000)
	}
	if a1 > 10 {
		t.Errorf("allocs per SEND = %v, want a handful", a1)
	}
	t.Logf("allocs per SEND: %v", a1)

	// One more SEND, left in the outboxes: every entry holds the same
	// Message, whose body is the one copy made at SEND.
	if err := many.pub.Feed(many.send); err != nil {
		t.Fatal(err)
	}
	var msg *Message
	for i, s := range many.subs {
		s.out.mu.Lock()
		entries := s.out.entries
		s.out.mu.Unlock()
		if len(entries) != 1 || entries[0].msg == nil {
			t.Fatalf("subscriber %d holds %d entries, want the one delivery", i, len(entries))
		}
		if msg == nil {
			msg = entries[0].msg
		}
		if entries[0].msg != msg || unsafe.SliceData(entries[0].msg.Body) != unsafe.SliceData(msg.Body) {
			t.Fatalf("subscriber %d got its own copy of the message", i)
		}
	}
	if len(msg.Body) != 128 || unsafe.SliceData(msg.Body) == unsafe.SliceData(many.send[len(many.send)-129:]) {
		t.Fatal("the body is not the Message's own copy of the SEND's bytes")
	}
	for i, s := range many.subs {
		out, _ := s.AppendOutput(nil)
		if !bytes.Contains(out, msg.Body) || !bytes.HasPrefix(out, []byte("MESSAGE\nsubscription:"+strconv.Itoa(i)+"\n")) {
			t.Fatalf("subscriber %d wrote %q", i, out)
		}
	}
}
