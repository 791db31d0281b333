package persistence

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/frames"
	jt "github.com/stompbox/stompbox/persistence/journaltest"
)

// faultEnv runs a scenario against a File on a faultFS and keeps what the
// journal acknowledged: what a restart must find, and must not.
type faultEnv struct {
	t    *testing.T
	ffs  *faultFS
	dir  string
	cfg  Config
	logs *syncBuffer
	f    *File

	errs      []error                         // every error the journal returned
	acked     map[string]broker.JournalRecord // enqueues acknowledged, removal not attempted
	removed   map[string]bool                 // removals acknowledged
	forgotten []string                        // removed by Forget, not known to be on disk
	next      int
}

func newFaultEnv(t *testing.T, inner fileSystem, dir string, cfg Config) *faultEnv {
	e := &faultEnv{t: t, ffs: newFaultFS(inner), dir: dir, cfg: cfg, logs: &syncBuffer{},
		acked: map[string]broker.JournalRecord{}, removed: map[string]bool{}}
	e.cfg.Logger = testLogger(t, e.logs)
	return e
}

// open opens the journal; false if Open failed.
func (e *faultEnv) open() bool {
	e.ffs.setPhase("open")
	f, err := openWith(e.dir, e.cfg, e.ffs)
	e.ffs.setPhase("run")
	e.f = f
	if err != nil {
		e.f = nil
		e.errs = append(e.errs, err)
		return false
	}
	return true
}

// message is a new enqueue to queue with a body of size bytes.
func (e *faultEnv) message(queue string, size int) broker.JournalRecord {
	e.next++
	id := "m-" + strconv.Itoa(e.next)
	hs := []frames.Header{{Key: []byte("destination"), Value: []byte(queue)}}
	body := []byte(id + strings.Repeat(".", size))
	return jt.Enqueue(queue, broker.RecoveredMessage(id, queue, hs, body, true, 0))
}

func (e *faultEnv) append(recs ...broker.JournalRecord) {
	err := e.f.Append(context.Background(), recs...)
	if err != nil {
		e.errs = append(e.errs, err)
		for _, r := range recs {
			delete(e.acked, r.MessageID) // a removal in doubt
		}
		return
	}
	e.settle()
	for _, r := range recs {
		switch r.Op {
		case broker.OpEnqueue:
			e.acked[r.MessageID] = r
		case broker.OpRemove:
			delete(e.acked, r.MessageID)
			e.removed[r.MessageID] = true
		}
	}
}

// settle: the journal acknowledged something written after every Forget
// so far, so those are on disk.
func (e *faultEnv) settle() {
	for _, id := range e.forgotten {
		e.removed[id] = true
	}
	e.forgotten = nil
}

func (e *faultEnv) forget(ids ...string) {
	var recs []broker.JournalRecord
	for _, id := range ids {
		if r, ok := e.acked[id]; ok {
			recs = append(recs, jt.Remove(r))
			delete(e.acked, id)
			e.forgotten = append(e.forgotten, id)
		}
	}
	e.f.Forget(recs...)
}

// oldest returns the ids of the n oldest acknowledged messages.
func (e *faultEnv) oldest(n int) []string {
	var ids []string
	for i := 1; i <= e.next && len(ids) < n; i++ {
		if id := "m-" + strconv.Itoa(i); e.acked[id].Op != 0 {
			ids = append(ids, id)
		}
	}
	return ids
}

func (e *faultEnv) removeOldest(n int) {
	var recs []broker.JournalRecord
	for _, id := range e.oldest(n) {
		recs = append(recs, jt.Remove(e.acked[id]))
	}
	if len(recs) > 0 {
		e.append(recs...)
	}
}

func (e *faultEnv) replay() {
	if err := e.f.Replay(func(broker.JournalRecord) error { return nil }); err != nil {
		e.errs = append(e.errs, err)
	}
}

// close checks that a failed journal stays failed, then closes it.
func (e *faultEnv) close() {
	t := e.t
	t.Helper()
	if failed := e.f.Failed(); failed != nil {
		if !errors.Is(failed, broker.ErrJournalFailed) {
			t.Errorf("Failed() = %v, not wrapping broker.ErrJournalFailed", failed)
		}
		for what, err := range map[string]error{
			"Append":  e.f.Append(context.Background(), e.message("/queue/late", 1)),
			"barrier": e.f.submitInternal(&request{}),
		} {
			if !errors.Is(err, broker.ErrJournalFailed) || err.Error() != failed.Error() {
				t.Errorf("%s after the failure: %v, want the sticky %v", what, err, failed)
			}
		}
	}
	failed := e.f.Failed()
	var before map[string]int64
	if failed != nil {
		before = fileSizes(t, e.ffs.inner, e.dir)
	}
	e.ffs.setPhase("close")
	err := e.f.Close()
	e.ffs.setPhase("after")
	if failed != nil {
		// What is on disk is evidence for recovery: Close of a failed
		// journal truncates nothing (the active segment keeps its
		// pre-allocated size) and creates nothing. (A compaction may
		// have been deleting a dead segment when the failure came.)
		after := fileSizes(t, e.ffs.inner, e.dir)
		active := segmentName(e.f.activeID)
		for name, size := range after {
			if b, ok := before[name]; !ok || b != size {
				t.Errorf("Close of a failed journal changed its files: %v, then %v", before, after)
			}
		}
		if _, ok := after[active]; !ok && before[active] != 0 {
			t.Errorf("Close of a failed journal removed the active segment %s", active)
		}
		if !errors.Is(err, broker.ErrJournalFailed) {
			t.Errorf("Close of a failed journal: %v, want the sticky failure", err)
		}
	}
	if err != nil {
		e.errs = append(e.errs, err)
		return
	}
	if e.f.Failed() != nil {
		t.Errorf("Close returned nil on a failed journal (%v)", e.f.Failed())
	}
	e.settle() // a clean Close wrote and fsynced everything
}

// fileSizes returns the size of each file in dir.
func fileSizes(t *testing.T, fsys fileSystem, dir string) map[string]int64 {
	t.Helper()
	names, err := fsys.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	sizes := map[string]int64{}
	for _, name := range names {
		fh, err := fsys.OpenFile(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted by compaction meanwhile
		}
		if err != nil {
			t.Fatal(err)
		}
		if sizes[name], err = fh.Size(); err != nil {
			t.Fatal(err)
		}
		fh.Close()
	}
	return sizes
}
