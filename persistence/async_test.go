package persistence

import (
	"errors"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stompbox/stompbox/broker"
	jt "github.com/stompbox/stompbox/persistence/journaltest"
)

// syncWatch records, for a File's segments, how far data was written and
// how far an fsync made it durable; an armed fsync error fails once.
type syncWatch struct {
	mu       sync.Mutex
	written  int64 // end of the furthest write in the active segment
	synced   int64 // written as of the last Datasync
	syncErr  error
	lastName string
}

// watchFS is the file system of a File whose segments w watches.
type watchFS struct {
	osFS
	w *syncWatch
}

func (wfs watchFS) Create(path string) (segmentFile, error) {
	sf, err := wfs.osFS.Create(path)
	if err != nil {
		return nil, err
	}
	return watchedSegment{sf, wfs.w}, nil
}

func (w *syncWatch) fsys() fileSystem { return watchFS{w: w} }

func (w *syncWatch) state() (written, synced int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.written, w.synced
}

type watchedSegment struct {
	segmentFile
	w *syncWatch
}

func (s watchedSegment) WriteAt(b []byte, off int64) (int, error) {
	n, err := s.segmentFile.WriteAt(b, off)
	s.w.mu.Lock()
	if s.w.lastName != s.Name() { // a new segment
		s.w.lastName, s.w.written, s.w.synced = s.Name(), 0, 0
	}
	s.w.written = max(s.w.written, off+int64(n))
	s.w.mu.Unlock()
	return n, err
}

func (s watchedSegment) Datasync() error {
	s.w.mu.Lock()
	err := s.w.syncErr
	s.w.syncErr = nil
	s.w.mu.Unlock()
	if err != nil {
		return err
	}
	if err := s.segmentFile.Datasync(); err != nil {
		return err
	}
	s.w.mu.Lock()
	if s.w.lastName == s.Name() {
		s.w.synced = s.w.written
	}
	s.w.mu.Unlock()
	return nil
}

func openWatched(t *testing.T, dir string, cfg Config, w *syncWatch) *File {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t, nil)
	}
	f, err := openWith(dir, cfg, w.fsys())
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// waitAppends waits (bounded) until the File has written n appends.
func waitAppends(t *testing.T, f *File, n uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for f.Stats().Appends < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d appends written after 5s", f.Stats().Appends, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestForgetRoundsNotFsynced: under sync always, a round of Forgets only
// (nobody waits for it) is written but not fsynced; the next waited
// Append's fsync covers it, so it is durable from then on.
func TestForgetRoundsNotFsynced(t *testing.T) {
	dir := t.TempDir()
	w := &syncWatch{}
	f := openWatched(t, dir, Config{Sync: SyncAlways}, w)
	var recs []broker.JournalRecord
	for i := range 10 {
		recs = append(recs, jt.Enqueue("/queue/f", jt.Message(i)))
	}
	mustAppend(t, f, recs...)
	before := f.Stats()
	for i := range 5 { // each its own round: the previous one is written first
		f.Forget(jt.Remove(recs[i]))
		waitAppends(t, f, before.Appends+uint64(i)+1)
	}
	if got := f.Stats().Fsyncs - before.Fsyncs; got != 0 {
		t.Fatalf("%d fsyncs for 5 rounds of Forgets that nobody waits for, want 0", got)
	}
	if written, synced := w.state(); synced >= written {
		t.Fatalf("the removals were fsynced (written %d, synced %d), want them left dirty", written, synced)
	}
	mustAppend(t, f, jt.Enqueue("/queue/f", jt.Message(10)))
	if got := f.Stats().Fsyncs - before.Fsyncs; got != 1 {
		t.Fatalf("%d fsyncs for the Append after them, want 1", got)
	}
	if written, synced := w.state(); synced != written {
		t.Fatalf("after the Append: written %d, synced %d; its fsync must cover the removals before it", written, synced)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	want := append(append([]broker.JournalRecord(nil), recs[5:]...), jt.Enqueue("/queue/f", jt.Message(10)))
	jt.Expect(t, replay(t, open(t, dir, Config{})), want)
}

// doneLog collects AppendAsync outcomes in the order they arrive.
type doneLog struct {
	mu   sync.Mutex
	got  []int
	errs []error
	all  chan struct{} // closed when want outcomes arrived
	want int
}

type doneFor struct {
	log *doneLog
	i   int
}

func (d doneFor) JournalDone(err error) {
	l := d.log
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got = append(l.got, d.i)
	l.errs = append(l.errs, err)
	if len(l.got) == l.want {
		close(l.all)
	}
}

func (l *doneLog) wait(t *testing.T) {
	t.Helper()
	select {
	case <-l.all:
	case <-time.After(5 * time.Second):
		t.Fatal("AppendAsync outcomes missing after 5s")
	}
}

// TestAppendAsync: appends submitted without waiting complete in
// submission order, share fsyncs, and are durable when told so.
func TestAppendAsync(t *testing.T) {
	dir := t.TempDir()
	w := &syncWatch{}
	f := openWatched(t, dir, Config{Sync: SyncAlways}, w)
	const n = 200
	log := &doneLog{all: make(chan struct{}), want: n}
	var recs []broker.JournalRecord
	before := f.Stats().Fsyncs
	for i := range n {
		r := jt.Enqueue("/queue/a", jt.Message(i))
		recs = append(recs, r)
		if err := f.AppendAsync(doneFor{log, i}, r); err != nil {
			t.Fatalf("AppendAsync %d: %v", i, err)
		}
	}
	log.wait(t)
	for i, got := range log.got {
		if got != i || log.errs[i] != nil {
			t.Fatalf("outcome %d is append %d (err %v): want every append, in order, nil", i, got, log.errs[i])
		}
	}
	fsyncs := f.Stats().Fsyncs - before
	if fsyncs == 0 || fsyncs >= n {
		t.Fatalf("%d fsyncs for %d appends submitted at once, want group commit (at least 1, fewer than %d)", fsyncs, n, n)
	}
	if written, synced := w.state(); synced != written {
		t.Fatalf("all told done: written %d, synced %d", written, synced)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	jt.Expect(t, replay(t, open(t, dir, Config{})), recs)
}

// TestAppendAsyncRefusals: a full budget refuses at once (nothing queued,
// done never called); a failed fsync is told to every waiter of its round
// as ErrJournalFailed, and later appends are refused at once.
func TestAppendAsyncRefusals(t *testing.T) {
	t.Run("full", func(t *testing.T) {
		f := open(t, t.TempDir(), Config{MaxBytes: 4 * MinSegmentSize})
		big := jt.Enqueue("/queue/b", &broker.Message{ID: "big", Destination: "/queue/b", Persistent: true, Body: make([]byte, 8*MinSegmentSize)})
		log := &doneLog{all: make(chan struct{}), want: 1}
		if err := f.AppendAsync(doneFor{log, 0}, big); !errors.Is(err, broker.ErrJournalFull) {
			t.Fatalf("AppendAsync past the budget: %v, want ErrJournalFull", err)
		}
		mustAppend(t, f) // a round trip through the flusher
		log.mu.Lock()
		called := len(log.got)
		log.mu.Unlock()
		if called != 0 {
			t.Fatal("done called for a refused append")
		}
	})
	t.Run("fsync fails", func(t *testing.T) {
		w := &syncWatch{}
		f := openWatched(t, t.TempDir(), Config{Sync: SyncAlways}, w)
		w.mu.Lock()
		w.syncErr = syscall.EIO
		w.mu.Unlock()
		log := &doneLog{all: make(chan struct{}), want: 1}
		if err := f.AppendAsync(doneFor{log, 0}, jt.Enqueue("/queue/e", jt.Message(1))); err != nil {
			t.Fatal(err)
		}
		log.wait(t)
		if err := log.errs[0]; !errors.Is(err, broker.ErrJournalFailed) || !errors.Is(err, syscall.EIO) {
			t.Fatalf("outcome %v, want ErrJournalFailed wrapping EIO", err)
		}
		err := f.AppendAsync(doneFor{log, 1}, jt.Enqueue("/queue/e", jt.Message(2)))
		if !errors.Is(err, broker.ErrJournalFailed) {
			t.Fatalf("AppendAsync after the failure: %v, want ErrJournalFailed at once", err)
		}
	})
}
