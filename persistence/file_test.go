package persistence

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/persistence/journaltest"
)

// testLogger writes to the test's output, and to buf if it is not nil.
func testLogger(t testing.TB, buf *syncBuffer) *slog.Logger {
	if buf == nil {
		return slog.New(slog.NewTextHandler(t.Output(), nil))
	}
	return slog.New(slog.NewTextHandler(buf, nil))
}

// syncBuffer is a bytes.Buffer safe for the flusher and the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// open opens a File in dir with cfg and a test logger, closing it at the
// end of the test.
func open(t testing.TB, dir string, cfg Config) *File {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t, nil)
	}
	f, err := Open(dir, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// The broker journals removals through Forget when the journal has it.
var _ interface{ Forget(...broker.JournalRecord) } = (*File)(nil)

func TestConformance(t *testing.T) {
	configs := []struct {
		name string
		cfg  Config
	}{
		{"always", Config{Sync: SyncAlways}},
		{"interval", Config{Sync: SyncInterval}},
		{"never", Config{Sync: SyncNever}},
		// Small segments: records span many segments, compaction deletes
		// and rewrites them while the suite runs.
		{"always-small-segments", Config{Sync: SyncAlways, SegmentSize: 4 << 10}},
		{"never-small-segments-eager-compaction", Config{Sync: SyncNever, SegmentSize: 2 << 10, CompactBelow: 0.9}},
	}
	for _, c := range configs {
		t.Run(c.name, func(t *testing.T) {
			journaltest.Run(t, func(t *testing.T, dir string) broker.Journal {
				return open(t, dir, c.cfg)
			}, journaltest.Budget(func(t *testing.T, dir string, maxBytes int64) broker.Journal {
				cfg := c.cfg
				cfg.MaxBytes = maxBytes
				return open(t, dir, cfg)
			}))
		})
	}
}

func TestAppendHonoursContext(t *testing.T) {
	f := open(t, t.TempDir(), Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := f.Append(ctx, journaltest.Enqueue("/queue/a", journaltest.Message(1)))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with a canceled context: %v", err)
	}
	if got := replay(t, f); len(got) != 0 {
		t.Fatalf("a canceled Append was recorded: %d records", len(got))
	}
}

func TestInvalidRecords(t *testing.T) {
	f := open(t, t.TempDir(), Config{})
	for _, r := range []broker.JournalRecord{
		{Op: broker.OpEnqueue, Queue: "/queue/a", MessageID: "m"}, // no message
		{Op: 0, Queue: "/queue/a"},
		{Op: 42, Queue: "/queue/a"},
	} {
		if err := f.Append(context.Background(), r); !errors.Is(err, ErrInvalidRecord) {
			t.Errorf("Append(%+v) = %v, want ErrInvalidRecord", r, err)
		}
	}
}

func TestCloseTwiceAndAfterClose(t *testing.T) {
	f := open(t, t.TempDir(), Config{})
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := f.Append(context.Background(), journaltest.Enqueue("/queue/a", journaltest.Message(1))); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
	f.Forget(journaltest.Remove(journaltest.Enqueue("/queue/a", journaltest.Message(1)))) // logged, not a panic
}

func TestDirectoryLocked(t *testing.T) {
	dir := t.TempDir()
	open(t, dir, Config{})
	if f, err := Open(dir, Config{Logger: testLogger(t, nil)}); err == nil {
		f.Close()
		t.Fatal("a second Open of the same directory succeeded")
	}
}

// TestForgetIsOrderedWithAppend: removals handed to Forget are written in
// order with Appends, and a durable delete drops its queue's messages.
func TestForgetIsOrderedWithAppend(t *testing.T) {
	dir := t.TempDir()
	f := open(t, dir, Config{})
	d := journaltest.DurableCreate(broker.DurableSpec{ClientID: "c", Name: "n", Topic: "t"})
	a := journaltest.Enqueue("/queue/a", journaltest.Message(1))
	b := journaltest.Enqueue(d.Queue, journaltest.Message(2))
	mustAppend(t, f, d, a, b)
	f.Forget(journaltest.Remove(a))
	f.Forget(a) // back in the queue
	f.Forget(journaltest.DurableDelete(d))
	mustAppend(t, f) // nothing; a Forget has no waiter, so sync with an Append
	mustAppend(t, f, journaltest.Enqueue("/queue/z", journaltest.Message(3)))
	f.Close()
	journaltest.Expect(t, replay(t, open(t, dir, Config{})), []broker.JournalRecord{a, journaltest.Enqueue("/queue/z", journaltest.Message(3))})
}

// TestSyncPolicies checks when each policy fsyncs: always with every
// Append, interval on its ticker, never only at Close.
func TestSyncPolicies(t *testing.T) {
	rec := journaltest.Enqueue("/queue/s", journaltest.Message(1))
	t.Run("always", func(t *testing.T) {
		f := open(t, t.TempDir(), Config{Sync: SyncAlways})
		before := f.Stats().Fsyncs
		mustAppend(t, f, rec)
		if got := f.Stats().Fsyncs - before; got != 1 {
			t.Fatalf("%d fsyncs for one Append", got)
		}
	})
	t.Run("interval", func(t *testing.T) {
		f := open(t, t.TempDir(), Config{Sync: SyncInterval, SyncInterval: 5 * time.Millisecond})
		before := f.Stats().Fsyncs
		mustAppend(t, f, rec)
		deadline := time.Now().Add(5 * time.Second)
		for f.Stats().Fsyncs == before {
			if time.Now().After(deadline) {
				t.Fatal("no fsync within 5s of an Append")
			}
			time.Sleep(time.Millisecond)
		}
	})
	t.Run("never", func(t *testing.T) {
		dir := t.TempDir()
		f := open(t, dir, Config{Sync: SyncNever})
		before := f.Stats().Fsyncs
		for range 10 {
			mustAppend(t, f, rec)
		}
		if got := f.Stats().Fsyncs - before; got != 0 {
			t.Fatalf("%d fsyncs under SyncNever", got)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if got := f.Stats().Fsyncs - before; got == 0 {
			t.Fatal("Close did not fsync")
		}
	})
}

func TestParseSyncPolicy(t *testing.T) {
	for _, p := range []SyncPolicy{SyncAlways, SyncInterval, SyncNever} {
		got, err := ParseSyncPolicy(p.String())
		if err != nil || got != p {
			t.Errorf("ParseSyncPolicy(%q) = %v, %v", p, got, err)
		}
	}
	if _, err := ParseSyncPolicy("sometimes"); err == nil {
		t.Error("ParseSyncPolicy accepted an unknown policy")
	}
}

func mustAppend(t testing.TB, f *File, recs ...broker.JournalRecord) {
	t.Helper()
	if err := f.Append(context.Background(), recs...); err != nil {
		t.Fatalf("Append: %v", err)
	}
}

func replay(t testing.TB, f *File) []broker.JournalRecord {
	t.Helper()
	var got []broker.JournalRecord
	if err := f.Replay(func(r broker.JournalRecord) error {
		got = append(got, r)
		return nil
	}); err != nil {
		t.Fatalf("Replay: %v", err)
	}
	return got
}
