package persistence

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stompbox/stompbox/broker"
	jt "github.com/stompbox/stompbox/persistence/journaltest"
)

// sealNow makes the flusher seal the active segment now (tests).
func sealNow(t testing.TB, f *File) {
	t.Helper()
	if err := f.submitInternal(&request{seal: true}); err != nil {
		t.Fatalf("seal: %v", err)
	}
}

func exists(t testing.TB, dir string, id uint64) bool {
	t.Helper()
	_, err := os.Stat(filepath.Join(dir, segmentName(id)))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

func q(i int) broker.JournalRecord { return jt.Enqueue("/queue/c", jt.Message(i)) }

func TestCompactionDeletesDeadSegment(t *testing.T) {
	dir := t.TempDir()
	f := open(t, dir, Config{CompactBelow: -1})
	mustAppend(t, f, q(1))
	mustAppend(t, f, q(2))
	sealNow(t, f) // segment 1: m-1, m-2
	mustAppend(t, f, q(3))
	mustAppend(t, f, jt.Remove(q(1)))
	f.compactSync()
	if !exists(t, dir, 1) {
		t.Fatal("segment 1 deleted while m-2 in it is live")
	}
	mustAppend(t, f, jt.Remove(q(2)))
	f.compactSync()
	if exists(t, dir, 1) {
		t.Fatal("segment 1 holds no live record but was not deleted")
	}
	if st := f.Stats(); st.SegmentsDeleted != 1 {
		t.Fatalf("SegmentsDeleted = %d", st.SegmentsDeleted)
	}
	jt.Expect(t, replay(t, f), []broker.JournalRecord{q(3)})
	f.Close()
	jt.Expect(t, replay(t, open(t, dir, Config{})), []broker.JournalRecord{q(3)})
}

// TestCompactionKeepsTombstones: a segment whose records are all dead
// still holds the remove of a message in an older segment; deleting it
// before that older segment would bring the message back.
func TestCompactionKeepsTombstones(t *testing.T) {
	dir := t.TempDir()
	f := open(t, dir, Config{CompactBelow: -1})
	mustAppend(t, f, q(1), q(2))
	sealNow(t, f) // segment 1: m-1 (stays live), m-2
	mustAppend(t, f, jt.Remove(q(2)))
	mustAppend(t, f, q(3))
	sealNow(t, f) // segment 2: remove m-2, m-3
	mustAppend(t, f, jt.Remove(q(3)))
	f.compactSync()
	if !exists(t, dir, 2) {
		t.Fatal("segment 2 deleted: its remove of m-2 is still needed by segment 1")
	}
	f.Close()
	f = open(t, dir, Config{CompactBelow: -1})
	jt.Expect(t, replay(t, f), []broker.JournalRecord{q(1)})
	mustAppend(t, f, jt.Remove(q(1)))
	f.compactSync()
	if exists(t, dir, 1) || exists(t, dir, 2) {
		t.Fatalf("segments left after every record died: 1 %v, 2 %v", exists(t, dir, 1), exists(t, dir, 2))
	}
	f.Close()
	jt.Expect(t, replay(t, open(t, dir, Config{})), nil)
}

// TestCompactionRewritesSparseSegment: the live records of a sparse
// segment are copied and it is deleted; replay order is unchanged, a
// durable subscription still comes before its messages.
func TestCompactionRewritesSparseSegment(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{CompactBelow: 0.5}
	f := open(t, dir, cfg)
	d := jt.DurableCreate(broker.DurableSpec{ClientID: "c", Name: "n", Topic: "t.#"})
	inD := jt.Enqueue(d.Queue, jt.Message(1))
	mustAppend(t, f, d)
	mustAppend(t, f, inD)
	for i := 2; i <= 20; i++ {
		mustAppend(t, f, q(i))
	}
	sealNow(t, f) // segment 1
	mustAppend(t, f, q(21))
	for i := 2; i <= 20; i++ {
		if i != 10 {
			mustAppend(t, f, jt.Remove(q(i)))
		}
	}
	f.compactSync()
	if exists(t, dir, 1) {
		t.Fatal("sparse segment 1 still there")
	}
	if st := f.Stats(); st.SegmentsRewritten != 1 {
		t.Fatalf("SegmentsRewritten = %d", st.SegmentsRewritten)
	}
	want := []broker.JournalRecord{d, inD, q(10), q(21)}
	jt.Expect(t, replay(t, f), want)
	f.Close()
	f = open(t, dir, cfg)
	jt.Expect(t, replay(t, f), want)
	mustAppend(t, f, jt.Remove(inD))
	f.Close()
	jt.Expect(t, replay(t, open(t, dir, cfg)), []broker.JournalRecord{d, q(10), q(21)})
}

// TestCompactionCrashBeforeDelete: a crash after a rewrite's copies were
// written but before the old segment was deleted leaves each live record
// twice, with the same sequence number: replay gives it once.
func TestCompactionCrashBeforeDelete(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{CompactBelow: 0.5}
	f := open(t, dir, cfg)
	for i := 1; i <= 10; i++ {
		mustAppend(t, f, q(i))
	}
	sealNow(t, f)
	old, err := os.ReadFile(filepath.Join(dir, segmentName(1)))
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, f, q(11))
	for i := 2; i <= 10; i++ {
		mustAppend(t, f, jt.Remove(q(i)))
	}
	f.compactSync()
	f.Close()
	if exists(t, dir, 1) {
		t.Fatal("segment 1 not rewritten")
	}
	// Put it back, as if the deletion never reached the disk: m-1 is in
	// segment 1 and, copied, in segment 2; m-2..m-10 are removed in 2.
	os.WriteFile(filepath.Join(dir, segmentName(1)), old, 0o640)
	f = open(t, dir, cfg)
	jt.Expect(t, replay(t, f), []broker.JournalRecord{q(1), q(11)})
	f.compactSync()
	if exists(t, dir, 1) {
		t.Fatal("the old copy of segment 1 was not deleted")
	}
	jt.Expect(t, replay(t, f), []broker.JournalRecord{q(1), q(11)})
}

// TestGroupCommit: 64 concurrent appenders under SyncAlways share fsyncs.
func TestGroupCommit(t *testing.T) {
	const writers, each = 64, 20
	f := open(t, t.TempDir(), Config{Sync: SyncAlways})
	before := f.Stats().Fsyncs
	body := bytes.Repeat([]byte("x"), 128)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				m := broker.RecoveredMessage(jt.Message(w*1000+i).ID, "/queue/g", nil, body, true, 0)
				if err := f.Append(context.Background(), jt.Enqueue("/queue/g", m)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	st := f.Stats()
	fsyncs := st.Fsyncs - before
	t.Logf("%d appends, %d fsyncs (%.1f appends per fsync)", st.Appends, fsyncs, float64(st.Appends)/float64(fsyncs))
	if st.Appends != writers*each {
		t.Fatalf("Appends = %d, want %d", st.Appends, writers*each)
	}
	if fsyncs == 0 || fsyncs > writers*each/4 {
		t.Fatalf("%d fsyncs for %d concurrent appends: no group commit", fsyncs, writers*each)
	}
}

// TestCompactionEndsWithNothingDead: two segments each holding one live
// record and nothing dead are not "sparse", however high CompactBelow
// is. Counting the segment header as dead made each look sparse, and
// compaction rewrote each into the other's new segment forever (found by
// TestCrashModel).
func TestCompactionEndsWithNothingDead(t *testing.T) {
	f := open(t, t.TempDir(), Config{SegmentSize: MinSegmentSize, CompactBelow: 0.95})
	defer f.Close()
	mustAppend(t, f, q(1))
	mustAppend(t, f, q(2))
	sealNow(t, f)
	mustAppend(t, f, jt.Remove(q(1)))
	f.compactSync()
	mustAppend(t, f, q(7))
	sealNow(t, f)
	done := make(chan struct{})
	go func() { f.compactSync(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("compaction did not end: %d segments rewritten so far", f.Stats().SegmentsRewritten)
	}
	if n := f.Stats().SegmentsRewritten; n > 4 {
		t.Fatalf("%d segments rewritten, want only those with dead records", n)
	}
	jt.Expect(t, replay(t, f), []broker.JournalRecord{q(2), q(7)})
}
