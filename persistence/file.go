package persistence

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stompbox/stompbox/broker"
)

var _ broker.Journal = (*File)(nil)

// File is a disk journal: segmented append-only files in one directory,
// written by one flusher goroutine that commits concurrent Appends
// together, and cleaned by one compactor goroutine. File owns both; Close
// stops and joins them. All methods are safe for concurrent use.
type File struct {
	dir  string       // immutable
	cfg  Config       // immutable, defaults applied
	log  *slog.Logger // immutable
	lock io.Closer    // immutable: holds the directory's lock until Close
	fs   fileSystem   // immutable: osFS, or a fault-injecting one in tests

	mu     sync.Mutex
	queue  []*request // guarded by mu: waiting for the flusher, in Append order
	closed bool       // guarded by mu
	failed error      // guarded by mu: the write or fsync error that broke the journal
	used   int64      // guarded by mu: bytes of segment data, written or reserved by a queued Append

	wake          chan struct{}      // cap 1: the flusher has requests
	kick          chan struct{}      // cap 1: the compactor may have work
	compactNow    chan chan struct{} // tests: compact now, then close the channel
	stopFlusher   chan struct{}      // closed by Close, after the compactor has stopped
	stopCompactor chan struct{}      // closed by Close
	flusherWG     sync.WaitGroup
	compactorWG   sync.WaitGroup

	// Owned by the flusher goroutine after Open, and by Close once the
	// flusher has exited.
	active   segmentFile
	activeID uint64
	lastID   uint64 // the highest segment number seen or created
	offset   int64  // write offset in active
	nextSeq  uint64
	dirty    bool // written since the last fsync
	wbuf     []byte
	spare    []*request
	// The next segment, created and pre-allocated ahead of time so that
	// a rotation needs no new space (space.go); nil when it could not be.
	spareSeg   segmentFile
	deferred   []*request // removals (Forget) that found no room, in order: written first once there is room
	spareID    uint64
	spareErr   error     // why the last attempt to make it failed
	spareRetry time.Time // no new attempt before, unless freed

	smu  sync.Mutex
	segs map[uint64]*segment // guarded by smu: every segment file in use
	idx  *liveSet            // guarded by smu: the live records and where they are

	// filesMu is held by Replay while it reads segment files and by the
	// compactor while it deletes them. Never taken by Append or the flusher.
	filesMu sync.Mutex

	damage  damageReport // written by Open only
	metrics fileMetrics  // immutable
	stats   struct {
		appends, records, fsyncs           atomic.Uint64
		corruptRecords, corruptSegments    atomic.Uint64
		segmentsDeleted, segmentsRewritten atomic.Uint64
		dropped                            atomic.Uint64 // removals still waiting for room at Close
		fsyncMax                           atomic.Int64  // nanoseconds: the slowest fsync (Info)
	}

	// Disk space (space.go).
	born       time.Time     // immutable: the origin of freeNext
	freed      atomic.Bool   // compaction deleted segments: try the spare again now
	fullMask   atomic.Uint32 // bit per fullReason: growing appends are refused
	dropWarned atomic.Bool   // a dropped removal was logged in this full episode
	freeNext   atomic.Int64  // ns after born of the next free-space check
	freeLow    atomic.Bool   // the last check found less than MinFree
	freeSeen   atomic.Uint64 // bytes free at the last check
	freeErr    atomic.Bool   // the last check failed (logged once)
}

// request is one Append (or Forget, or compactor job) for the flusher.
type request struct {
	buf  []byte    // one framed record, or for a copy one frame per logical
	logs []logical // the records in buf
	copy bool      // compaction copy: frames are final; written only if still live
	sync bool      // fsync before done, whatever the policy
	seal bool      // tests: seal the active segment and start a new one
	done chan error

	// grows: an Append that adds data (enqueues, durable creates); only
	// these are refused for lack of space.
	grows bool
	err   error // flusher: the request was refused (not written) with err
	// notify (AppendAsync) is told the outcome instead of done.
	notify broker.JournalDone
	// timed is where AppendAsync builds notify: part of the request, so
	// it costs no allocation of its own.
	timed timedDone
	// deferred (flusher): a removal waiting for room, in File.deferred;
	// its waiter is answered once it is written.
	deferred bool
}

// waited reports whether someone waits for r's outcome (Append,
// AppendAsync, a compactor job); a Forget has nobody.
func (r *request) waited() bool { return r.done != nil || r.notify != nil }

// Open opens or creates the journal in dir and recovers it: every segment
// is read and checked, a torn last record is truncated away, corrupt
// records are counted and skipped. Appends go to a new segment. Call
// Replay to get the live records.
func Open(dir string, cfg Config) (*File, error) { return openWith(dir, cfg, osFS{}) }

// openWith is Open on fsys (tests inject faults).
func openWith(dir string, cfg Config, fsys fileSystem) (*File, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := fsys.MkdirAll(dir); err != nil {
		return nil, err
	}
	lock, err := fsys.Lock(dir)
	if err != nil {
		return nil, err
	}
	f := &File{
		dir: dir, cfg: cfg, log: cfg.Logger, lock: lock, fs: fsys,
		wake: make(chan struct{}, 1), kick: make(chan struct{}, 1), compactNow: make(chan chan struct{}),
		stopFlusher: make(chan struct{}), stopCompactor: make(chan struct{}),
		segs:    map[uint64]*segment{},
		metrics: newFileMetrics(),
		born:    time.Now(),
	}
	f.idx = newLiveSet(f.segs)
	if err := f.recover(); err != nil {
		lock.Close()
		return nil, err
	}
	if err := f.openActive(); err != nil {
		lock.Close()
		return nil, err
	}
	f.makeSpare()
	if err := f.Failed(); err != nil { // making the spare failed, not for lack of space
		return nil, errors.Join(err, f.abandon())
	}
	f.measureFree()
	if cfg.Registerer != nil {
		if err := f.register(cfg.Registerer); err != nil {
			return nil, errors.Join(err, f.abandon())
		}
	}
	f.flusherWG.Add(1)
	go f.runFlusher()
	f.compactorWG.Add(1)
	go f.runCompactor()
	f.poke()
	return f, nil
}

// abandon closes what a failed Open had opened: the active segment, the
// spare and the lock. The files stay for the next Open (a header-only
// segment becomes its active one).
func (f *File) abandon() error {
	var err error
	if f.active != nil {
		err = f.active.Close()
		f.active = nil
	}
	return errors.Join(err, f.dropSpare(true), f.lock.Close())
}

// Append records recs as one atomic write and returns when the sync
// policy is met: after the fsync with SyncAlways, after the write
// otherwise. Concurrent Appends share the write and the fsync.
//
// If ctx ends first, Append returns ctx.Err(); the records may still be
// written, since they were already queued. An Append that adds enqueues
// or durable creates past the disk budget, under journal.min_free, or on
// a disk out of space fails with an error wrapping broker.ErrJournalFull
// and nothing is written; records that only remove (OpRemove,
// OpDurableDelete) are never refused, since they are what lets compaction
// free space: on a disk out of space they wait for room, in order, and
// Append returns once they are written. Once a write or fsync has failed, every
// Append returns that error, wrapping broker.ErrJournalFailed (Failed).
func (f *File) Append(ctx context.Context, recs ...broker.JournalRecord) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(recs) == 0 {
		return f.usable()
	}
	start := time.Now()
	r, err := f.newRequest(recs, start)
	if err != nil {
		return err
	}
	r.done = make(chan error, 1)
	if err := f.submit(r, r.grows); err != nil {
		return err
	}
	select {
	case err := <-r.done:
		f.metrics.appendSeconds.Observe(since(start))
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// newRequest encodes recs as one request, refusing records that add data
// under journal.min_free (checked at most every 100 ms).
func (f *File) newRequest(recs []broker.JournalRecord, now time.Time) (*request, error) {
	buf, logs, err := encode(recs)
	if err != nil {
		return nil, err
	}
	g := grows(recs)
	if g {
		if err := f.checkFree(now); err != nil {
			return nil, err
		}
	}
	return &request{buf: buf, logs: logs, grows: g}, nil
}

// Forget records recs without waiting for them, and without a budget
// check: for removals (and their re-enqueues) whose loss in a crash only
// means a redelivery. They are written in order with Appends. Errors are
// logged.
func (f *File) Forget(recs ...broker.JournalRecord) {
	if len(recs) == 0 {
		return
	}
	buf, logs, err := encode(recs)
	if err == nil {
		err = f.submit(&request{buf: buf, logs: logs}, false)
	}
	switch {
	case errors.Is(err, ErrClosed):
		f.log.Warn("journal: closed; records not written", "records", len(recs))
	case errors.Is(err, broker.ErrJournalFailed):
		// Logged once, at error level, when the journal failed.
		f.log.Debug("journal: failed; records not written", "records", len(recs))
	case err != nil:
		f.log.Error("journal: records not written", "records", len(recs), "err", err)
	}
}

// grows reports whether recs add live data (and so count against the
// budget). A history seal does too: one refused (or ordered after a
// refused append) leaves its topic unsealed, which is safe (a new epoch
// at the restart), whereas a seal written after a lost append would not
// be.
func grows(recs []broker.JournalRecord) bool {
	for i := range recs {
		switch recs[i].Op {
		case broker.OpEnqueue, broker.OpDurableCreate, broker.OpHistoryAppend, broker.OpHistorySeal:
			return true
		}
	}
	return false
}

// usable is the error an Append gets before it is queued.
func (f *File) usable() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.usableLocked()
}

func (f *File) usableLocked() error {
	switch {
	case f.closed:
		return ErrClosed
	case f.failed != nil:
		return f.failed
	}
	return nil
}

// submit queues r for the flusher, checking the budget if budget is set.
func (f *File) submit(r *request, budget bool) error {
	n := int64(len(r.buf))
	f.mu.Lock()
	if err := f.usableLocked(); err != nil {
		f.mu.Unlock()
		return err
	}
	if budget && f.cfg.MaxBytes > 0 && f.used+n > f.cfg.MaxBytes {
		used := f.used
		f.mu.Unlock()
		err := fmt.Errorf("persistence: %d more bytes would pass the %d-byte budget (%d used): %w",
			n, f.cfg.MaxBytes, used, broker.ErrJournalFull)
		f.markFull(fullBudget, err)
		return err
	}
	f.used += n
	f.queue = append(f.queue, r)
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
	return nil
}

// submitInternal queues a compactor job; it is accepted while the flusher
// runs, even after Close began, and waits for it.
func (f *File) submitInternal(r *request) error {
	r.done = make(chan error, 1)
	f.mu.Lock()
	if f.failed != nil {
		f.mu.Unlock()
		return f.failed
	}
	f.queue = append(f.queue, r)
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
	return <-r.done
}

// Close stops the compactor, then the flusher, which writes and fsyncs
// what is queued; then it closes the files. Append after Close returns
// ErrClosed. Close may be called more than once. If the journal has failed
// (Failed), Close writes and fsyncs nothing and returns that error, every
// time: a clean Close must mean that everything acknowledged is on disk.
func (f *File) Close() error {
	f.mu.Lock()
	if f.closed {
		failed := f.failed
		f.mu.Unlock()
		return failed
	}
	f.closed = true
	f.mu.Unlock()
	close(f.stopCompactor)
	f.compactorWG.Wait()
	close(f.stopFlusher)
	f.flusherWG.Wait()
	err := errors.Join(f.dropDeferred(), f.closeActive())
	err = errors.Join(err, f.dropSpare(f.Failed() != nil || f.shortOfSpace()))
	return errors.Join(err, f.lock.Close())
}

// closeActive truncates the active segment to its data, or removes it if
// it holds none. After a failure it only closes the file, leaving it as it
// is for recovery, and returns the failure.
func (f *File) closeActive() error {
	failed := f.Failed()
	if f.active == nil {
		return failed
	}
	fh := f.active
	f.active = nil
	if failed != nil {
		return errors.Join(failed, fh.Close())
	}
	if f.shortOfSpace() {
		return f.closeKeepingSpace(fh)
	}
	if f.offset == headerSize {
		f.filesMu.Lock()
		defer f.filesMu.Unlock()
		f.smu.Lock()
		delete(f.segs, f.activeID)
		f.smu.Unlock()
		err := errors.Join(fh.Close(), f.fs.Remove(fh.Name()))
		return errors.Join(err, f.fs.SyncDir(f.dir))
	}
	err := fh.Truncate(f.offset)
	if err == nil {
		err = f.syncFile(fh)
	}
	f.smu.Lock()
	f.segs[f.activeID].sealed = true
	f.smu.Unlock()
	return errors.Join(err, fh.Close())
}

// Stats are counters of a File, for metrics and tests.
type Stats struct {
	Appends           uint64 // physical records written for Append and Forget
	Records           uint64 // journal records in them
	Fsyncs            uint64 // fsyncs of segment files
	CorruptRecords    uint64 // records skipped by recovery: bad CRC or undecodable
	CorruptSegments   uint64 // segment files skipped by recovery: not a journal segment
	SegmentsDeleted   uint64 // by compaction
	SegmentsRewritten uint64 // by compaction: live records copied, then deleted
	Segments          int    // segment files in use
	Bytes             int64  // data bytes counted against the budget
	LiveBytes         int64  // bytes of live records: what compaction must keep
	DroppedRecords    uint64 // removals (Forget) refused for lack of space: their messages come back after a restart
}

// Stats returns the File's counters.
func (f *File) Stats() Stats {
	s := Stats{
		Appends: f.stats.appends.Load(), Records: f.stats.records.Load(), Fsyncs: f.stats.fsyncs.Load(),
		CorruptRecords: f.stats.corruptRecords.Load(), CorruptSegments: f.stats.corruptSegments.Load(),
		SegmentsDeleted: f.stats.segmentsDeleted.Load(), SegmentsRewritten: f.stats.segmentsRewritten.Load(),
		DroppedRecords: f.stats.dropped.Load(),
	}
	f.smu.Lock()
	s.Segments = len(f.segs)
	for _, seg := range f.segs {
		s.LiveBytes += seg.live
	}
	f.smu.Unlock()
	f.mu.Lock()
	s.Bytes = f.used
	f.mu.Unlock()
	return s
}

// CorruptRecords is how many corrupt records recovery skipped.
func (f *File) CorruptRecords() uint64 { return f.stats.corruptRecords.Load() }

// syncFile fsyncs a segment file and counts it.
func (f *File) syncFile(fh segmentFile) error {
	f.stats.fsyncs.Add(1)
	start := time.Now()
	err := fh.Datasync()
	took := time.Since(start)
	f.metrics.fsyncSeconds.Observe(took.Seconds())
	f.noteFsync(took)
	if err != nil {
		return fmt.Errorf("persistence: fsync %s: %w", fh.Name(), err)
	}
	return nil
}

func (f *File) segPath(id uint64) string { return filepath.Join(f.dir, segmentName(id)) }
