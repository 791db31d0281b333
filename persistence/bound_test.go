package persistence

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stompbox/stompbox/broker"
	jt "github.com/stompbox/stompbox/persistence/journaltest"
)

// boundSegment is the segment size of the disk-bound tests: small, so
// that a few thousand records rotate hundreds of times.
const boundSegment = 4096

// largestRecord bounds the records of these tests (jt.Message has bodies
// of 4,500 bytes, larger than boundSegment: such a record gets a segment
// of its own).
const largestRecord = 5000

// diskBound is the documented bound on the data bytes once compaction has
// settled: spaceFactor times the live bytes, plus one segment of slack for
// the sealed segments and the active segment (a segment, or one record
// larger than that).
func diskBound(st Stats, segSize int64) int64 {
	return spaceFactor*st.LiveBytes + segSize + max(segSize, largestRecord)
}

// appendOrCompact appends recs; if the budget refuses them, it lets
// compaction catch up (it runs on its own goroutine, which the test may
// outrun) and tries once more, which must succeed.
func appendOrCompact(t *testing.T, f *File, recs ...broker.JournalRecord) {
	t.Helper()
	err := f.Append(context.Background(), recs...)
	if errors.Is(err, broker.ErrJournalFull) {
		f.compactSync()
		err = f.Append(context.Background(), recs...)
	}
	if err != nil {
		t.Fatalf("Append after compaction: %v (stats %+v)", err, f.Stats())
	}
}

// TestCompactionStuckMessagesDoNotPin is the scenario: 10
// messages nobody consumes (a DLQ), then 3,000 send/ack pairs. The
// segment of the stuck messages stays above CompactBelow, and every later
// segment removes records from the one before it, so before this fix no
// segment could be deleted: 605 segments, growing with the traffic, and
// with a disk budget every append failed with "journal full" for good.
// Now the pinning segment is rewritten, the segment count stays at a small
// constant and the budget keeps taking appends.
func TestCompactionStuckMessagesDoNotPin(t *testing.T) {
	for _, budget := range []int64{0, 8 * boundSegment} {
		t.Run(fmt.Sprintf("budget %d", budget), func(t *testing.T) {
			dir := t.TempDir()
			cfg := Config{SegmentSize: boundSegment, MaxBytes: budget, Sync: SyncNever}
			f := open(t, dir, cfg)
			var stuck []broker.JournalRecord
			for i := range 10 {
				r := jt.Enqueue("/queue/DLQ.c", small(i))
				stuck = append(stuck, r)
				mustAppend(t, f, r)
			}
			maxSegs := 0
			const inFlight = 5 // the consumer acks a few messages behind the producer
			for i := range 3000 + inFlight {
				if i < 3000 {
					appendOrCompact(t, f, jt.Enqueue("/queue/c", small(1000+i)))
				}
				if i >= inFlight {
					mustAppend(t, f, jt.Remove(jt.Enqueue("/queue/c", small(1000+i-inFlight))))
				}
				if i%100 == 99 {
					f.compactSync()
					st := f.Stats()
					maxSegs = max(maxSegs, st.Segments)
					if st.Segments > 5 || st.Bytes > diskBound(st, boundSegment) {
						t.Fatalf("after %d pairs: %d segments, %d bytes for %d live (bound %d)",
							i+1, st.Segments, st.Bytes, st.LiveBytes, diskBound(st, boundSegment))
					}
				}
			}
			t.Logf("at most %d segments; %d rewritten, %d deleted", maxSegs, f.Stats().SegmentsRewritten, f.Stats().SegmentsDeleted)
			jt.Expect(t, replay(t, f), stuck)
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			jt.Expect(t, replay(t, open(t, dir, cfg)), stuck)
		})
	}
}

// TestCompactionDiskBoundRandom runs random traffic (stuck queues, DLQ
// moves, durable subscriptions created, fed and deleted while offline,
// send/ack with random delays) and checks, each time compaction has
// settled, that the data on disk is within the documented bound of the
// live data, and at the end that a reopened journal replays exactly the
// live records.
func TestCompactionDiskBoundRandom(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 12))
			dir := t.TempDir()
			cfg := Config{SegmentSize: boundSegment, Sync: SyncNever}
			if seed%2 == 1 {
				cfg.MaxBytes = 256 * boundSegment
			}
			f := open(t, dir, cfg)
			model := newModel()
			next := 0
			msg := func(queue string) broker.JournalRecord {
				next++
				return jt.Enqueue(queue, jt.Message(next))
			}
			var durables []broker.JournalRecord
			for step := range 3000 {
				switch k := rng.IntN(100); {
				case k < 40: // a message to a busy queue, acked soon
					r := msg(fmt.Sprintf("/queue/busy-%d", rng.IntN(3)))
					appendOrCompact(t, f, r)
					model.apply(r)
				case k < 43: // a message nobody consumes
					r := msg("/queue/stuck")
					appendOrCompact(t, f, r)
					model.apply(r)
				case k < 45 && len(durables) < 4: // an offline durable subscription
					d := jt.DurableCreate(broker.DurableSpec{User: "u", ClientID: "c", Name: fmt.Sprintf("d%d", step), Topic: "t"})
					appendOrCompact(t, f, d)
					model.apply(d)
					durables = append(durables, d)
				case k < 50 && len(durables) > 0: // its feed
					r := msg(durables[rng.IntN(len(durables))].Queue)
					appendOrCompact(t, f, r)
					model.apply(r)
				case k < 51 && len(durables) > 0: // it is deleted with its backlog
					i := rng.IntN(len(durables))
					del := jt.DurableDelete(durables[i])
					mustAppend(t, f, del)
					model.apply(del)
					durables = append(durables[:i], durables[i+1:]...)
				case k < 53: // dead-lettering: one atomic move
					if r, ok := model.any(rng, "/queue/busy-"); ok {
						moved := msg("/queue/DLQ.busy")
						recs := []broker.JournalRecord{jt.Remove(r), moved}
						appendOrCompact(t, f, recs...)
						model.apply(recs...)
					}
				default: // an ack of a busy queue's message
					if r, ok := model.any(rng, "/queue/busy-"); ok {
						f.Forget(jt.Remove(r))
						model.apply(jt.Remove(r))
					}
				}
				if step%250 == 249 {
					if err := f.submitInternal(&request{}); err != nil { // the Forgets are written
						t.Fatal(err)
					}
					f.compactSync()
					st := f.Stats()
					if st.Bytes > diskBound(st, boundSegment) {
						t.Fatalf("step %d: %d bytes in %d segments for %d live bytes: over the bound %d",
							step, st.Bytes, st.Segments, st.LiveBytes, diskBound(st, boundSegment))
					}
				}
			}
			want := model.live()
			if err := f.submitInternal(&request{}); err != nil { // Forget does not wait
				t.Fatal(err)
			}
			jt.Expect(t, replay(t, f), want)
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			jt.Expect(t, replay(t, open(t, dir, cfg)), want)
		})
	}
}

// small is a message of about 200 bytes, as a journal record.
func small(i int) *broker.Message {
	m := jt.Message(i)
	return broker.RecoveredMessage(m.ID, m.Destination, m.Headers[:2], bytes.Repeat([]byte{'x'}, 100), true, 0)
}

// model is the live set the random test expects, in append order.
type model struct {
	recs []broker.JournalRecord
}

func newModel() *model { return &model{} }

func (m *model) apply(recs ...broker.JournalRecord) {
	for _, r := range recs {
		switch r.Op {
		case broker.OpEnqueue, broker.OpDurableCreate:
			m.recs = append(m.recs, r)
		case broker.OpRemove:
			for i, x := range m.recs {
				if x.Op == broker.OpEnqueue && x.Queue == r.Queue && x.MessageID == r.MessageID {
					m.recs = append(m.recs[:i], m.recs[i+1:]...)
					break
				}
			}
		case broker.OpDurableDelete:
			keep := m.recs[:0]
			for _, x := range m.recs {
				if x.Queue != r.Queue {
					keep = append(keep, x)
				}
			}
			m.recs = keep
		}
	}
}

// any picks a live enqueue of a queue whose name starts with prefix.
func (m *model) any(rng *rand.Rand, prefix string) (broker.JournalRecord, bool) {
	var idx []int
	for i, x := range m.recs {
		if x.Op == broker.OpEnqueue && len(x.Queue) >= len(prefix) && x.Queue[:len(prefix)] == prefix {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		return broker.JournalRecord{}, false
	}
	return m.recs[idx[rng.IntN(len(idx))]], true
}

func (m *model) live() []broker.JournalRecord { return append([]broker.JournalRecord(nil), m.recs...) }
