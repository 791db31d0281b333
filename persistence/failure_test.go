package persistence

import (
	"context"
	"errors"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stompbox/stompbox/broker"
	jt "github.com/stompbox/stompbox/persistence/journaltest"
)

// faults injects failures into a File's segment files: an armed write or
// fsync fails once, the way Linux reports a writeback error once and then
// clears it, so that a second fsync succeeds although the data is lost.
type faults struct {
	mu       sync.Mutex
	writeErr error // the next WriteAt fails with it, and it is cleared
	syncErr  error // the next Datasync fails with it, and it is cleared
	syncs    int   // Datasync calls that reached the file
	// hold, if set, holds the failing write until it is closed, after
	// telling held: the flusher is then busy with it.
	hold, held chan struct{}
}

// faultyFS is the file system of a File whose segments fail as fs is
// armed.
type faultyFS struct {
	osFS
	fs *faults
}

func (ffs faultyFS) Create(path string) (segmentFile, error) {
	sf, err := ffs.osFS.Create(path)
	if err != nil {
		return nil, err
	}
	return faultySegment{sf, ffs.fs}, nil
}

func (fs *faults) fsys() fileSystem { return faultyFS{fs: fs} }

func (fs *faults) armWrite(err error) { fs.mu.Lock(); fs.writeErr = err; fs.mu.Unlock() }
func (fs *faults) armSync(err error)  { fs.mu.Lock(); fs.syncErr = err; fs.mu.Unlock() }

func (fs *faults) fsyncs() int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.syncs
}

type faultySegment struct {
	segmentFile
	fs *faults
}

func (s faultySegment) WriteAt(b []byte, off int64) (int, error) {
	s.fs.mu.Lock()
	err := s.fs.writeErr
	s.fs.writeErr = nil
	hold, held := s.fs.hold, s.fs.held
	s.fs.mu.Unlock()
	if err != nil {
		if hold != nil {
			held <- struct{}{}
			<-hold
		}
		return 0, err
	}
	return s.segmentFile.WriteAt(b, off)
}

func (s faultySegment) Datasync() error {
	s.fs.mu.Lock()
	err := s.fs.syncErr
	s.fs.syncErr = nil
	if err == nil {
		s.fs.syncs++
	}
	s.fs.mu.Unlock()
	if err != nil {
		return err
	}
	return s.segmentFile.Datasync()
}

// failedGauge reads stompbox_journal_failed from reg.
func failedGauge(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	return gaugeValue(t, reg, "stompbox_journal_failed")
}

// gaugeValue reads the gauge name from reg.
func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("%s not registered", name)
	return 0
}

// A failed write or fsync is terminal: the Append that hit it, every later
// Append, every barrier and Close return it (wrapping
// broker.ErrJournalFailed), nothing is fsynced again (a second fsync would
// succeed, as the fault injector does, and lie), and the gauge says so.
// The next Open recovers what was on disk before.
func TestSegmentFailureIsSticky(t *testing.T) {
	tests := []struct {
		name   string
		policy Config
		arm    func(*faults, error)
		errno  error
		// byTicker: the failure happens in the interval fsync, after the
		// Append returned.
		byTicker bool
	}{
		{"write", Config{Sync: SyncAlways}, (*faults).armWrite, syscall.EIO, false},
		{"write without fsync", Config{Sync: SyncNever}, (*faults).armWrite, syscall.EIO, false}, // ENOSPC is flow control: diskfull_test.go
		{"fsync", Config{Sync: SyncAlways}, (*faults).armSync, syscall.EIO, false},
		{"interval fsync", Config{Sync: SyncInterval, SyncInterval: 5 * time.Millisecond}, (*faults).armSync, syscall.EIO, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			var logs syncBuffer
			reg := prometheus.NewRegistry()
			fs := &faults{}
			cfg := tt.policy
			cfg.Logger, cfg.Registerer, cfg.SegmentSize = testLogger(t, &logs), reg, 64<<10
			f, err := openWith(dir, cfg, fs.fsys())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = f.Close() })
			kept := q(1)
			mustAppend(t, f, kept)
			if err := f.submitInternal(&request{}); err != nil {
				t.Fatalf("barrier before the fault: %v", err)
			}
			if f.Failed() != nil || failedGauge(t, reg) != 0 {
				t.Fatalf("healthy journal: Failed %v, gauge %v", f.Failed(), failedGauge(t, reg))
			}

			tt.arm(fs, tt.errno)
			first := f.Append(ctx, q(2))
			if tt.byTicker {
				if first != nil {
					t.Fatalf("Append under sync interval: %v", first)
				}
				for i := 0; i < 500 && f.Failed() == nil; i++ {
					time.Sleep(5 * time.Millisecond)
				}
				first = f.Failed()
			}
			if !errors.Is(first, tt.errno) || !errors.Is(first, broker.ErrJournalFailed) {
				t.Fatalf("first error %v: want %v, wrapping broker.ErrJournalFailed", first, tt.errno)
			}
			sticky := func(what string, err error) {
				t.Helper()
				if !errors.Is(err, broker.ErrJournalFailed) || !errors.Is(err, tt.errno) {
					t.Errorf("%s after the failure: %v, want the sticky %v", what, err, first)
				}
			}
			sticky("Append", f.Append(ctx, q(3)))
			sticky("empty Append", f.Append(ctx))
			sticky("barrier", f.submitInternal(&request{}))
			sticky("seal", f.submitInternal(&request{seal: true}))
			sticky("Failed", f.Failed())
			f.Forget(jt.Remove(kept)) // dropped: nothing is written after the failure
			if got := failedGauge(t, reg); got != 1 {
				t.Errorf("stompbox_journal_failed = %v, want 1", got)
			}

			syncs := fs.fsyncs()
			sticky("Close", f.Close())
			sticky("second Close", f.Close())
			if got := fs.fsyncs(); got != syncs {
				t.Errorf("%d fsyncs after the failure, want none: a retried fsync can succeed over lost pages", got-syncs)
			}
			if n := strings.Count(logs.String(), "journal failed"); n != 1 {
				t.Errorf("%d \"journal failed\" log lines, want 1:\n%s", n, logs.String())
			}

			// A restart recovers from what is on disk: the record fsynced
			// before the failure is there, and its removal, refused after
			// it, is not.
			g := open(t, dir, Config{})
			got := replay(t, g)
			if len(got) == 0 || got[0].MessageID != kept.MessageID {
				t.Fatalf("recovered %d records, want %s first", len(got), kept.MessageID)
			}
		})
	}
}

// A barrier queued while a write was failing returns the failure. Before,
// it fsynced nothing (the failed write had left nothing dirty) and
// reported success, and the compactor, which waits for a barrier before it
// deletes segments, went on deleting.
func TestBarrierBehindFailedWrite(t *testing.T) {
	fs := &faults{hold: make(chan struct{}), held: make(chan struct{}, 1)}
	f, err := openWith(t.TempDir(), Config{Logger: testLogger(t, nil), SegmentSize: 64 << 10}, fs.fsys())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	mustAppend(t, f, q(1))

	fs.armWrite(syscall.EIO)
	appended := make(chan error, 1)
	go func() { appended <- f.Append(context.Background(), q(2)) }()
	select {
	case <-fs.held:
	case <-time.After(5 * time.Second):
		t.Fatal("the Append never reached the segment")
	}
	barrier := make(chan error, 1)
	go func() { barrier <- f.submitInternal(&request{}) }()
	queued := func() int {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.queue)
	}
	for i := 0; i < 1000 && queued() == 0; i++ {
		time.Sleep(time.Millisecond)
	}
	if queued() == 0 {
		t.Fatal("the barrier was never queued")
	}
	close(fs.hold)
	for what, ch := range map[string]chan error{"Append": appended, "barrier": barrier} {
		select {
		case err := <-ch:
			if !errors.Is(err, syscall.EIO) || !errors.Is(err, broker.ErrJournalFailed) {
				t.Errorf("%s: %v, want the write's EIO wrapping broker.ErrJournalFailed", what, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s did not return", what)
		}
	}
}
