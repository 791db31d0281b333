package persistence

import (
	"cmp"
	"errors"
	"fmt"
	"time"

	"github.com/stompbox/stompbox/broker"
)

// runFlusher is the one goroutine that writes segments. Each time it
// wakes it takes every queued request, writes them with one write and,
// under SyncAlways, one fsync (group commit): Appends that arrive during a
// write or fsync wait for the next round and share it. Owner: File; stop:
// stopFlusher; join: flusherWG. On stop it writes what is queued, fsyncs
// and returns.
func (f *File) runFlusher() {
	defer f.flusherWG.Done()
	var tick <-chan time.Time
	if f.cfg.Sync == SyncInterval {
		t := time.NewTicker(f.cfg.SyncInterval)
		defer t.Stop()
		tick = t.C
	}
	retry := time.NewTicker(spareRetryInterval)
	defer retry.Stop()
	for {
		select {
		case <-f.wake:
			f.drain()
		case <-tick:
			_ = f.barrier() // a failure is sticky and logged
		case <-retry.C:
			if len(f.deferred) > 0 { // removals waiting for room: try again
				f.writeGroup(nil)
			}
		case <-f.stopFlusher:
			f.drain()
			if len(f.deferred) > 0 {
				f.writeGroup(nil)
			}
			_ = f.barrier()
			return
		}
	}
}

// drain processes queued requests until none is left.
func (f *File) drain() {
	for {
		f.mu.Lock()
		batch := f.queue
		f.queue = f.spare
		f.mu.Unlock()
		if len(batch) == 0 {
			f.spare = batch
			return
		}
		f.process(batch)
		f.makeSpare() // after the round: its waiters do not wait for it
		clear(batch)
		f.spare = batch[:0]
	}
}

// process writes a batch: runs of Appends as one group; compaction
// copies and barriers on their own, since a copy must be checked against
// everything written before it.
func (f *File) process(batch []*request) {
	for i := 0; i < len(batch); {
		r := batch[i]
		switch {
		case r.seal:
			r.done <- f.sealActive()
			i++
		case r.buf == nil: // barrier: everything written so far is on disk
			r.done <- f.barrier()
			i++
		case r.copy:
			f.writeCopy(r)
			i++
		default:
			j := i + 1
			for j < len(batch) && batch[j].buf != nil && !batch[j].copy {
				j++
			}
			f.writeGroup(batch[i:j])
			i = j
		}
	}
}

// writeGroup assigns sequence numbers, writes reqs in order (sealing the
// active segment and starting a new one when the next request does not
// fit), fsyncs as the policy says and releases the waiters.
func (f *File) writeGroup(reqs []*request) {
	if err := f.Failed(); err != nil {
		release(reqs, err)
		return
	}
	// Under SyncAlways a round is fsynced when someone waits for it: a
	// round of Forgets only (removals, whose loss in a crash is a
	// redelivery) is left dirty, and the next fsync (a waited Append, a
	// barrier, a rotation, Close) covers it.
	sync := false
	hadDeferred := len(f.deferred) > 0
	if hadDeferred { // removals that found no room before go first
		for _, r := range f.deferred {
			r.deferred = false
		}
		reqs = append(f.deferred[:len(f.deferred):len(f.deferred)], reqs...)
		f.deferred = nil
	}
	defer func() {
		if hadDeferred && len(f.deferred) == 0 && f.Failed() == nil {
			f.dropWarned.Store(false)
			f.log.Info("journal: the removals that waited for room are written")
		}
	}()
	var chunk []*request
	var full error   // a growing request was refused: so are the later ones (their order)
	var failed error // making the next segment failed the journal: nothing more is written
	f.wbuf = f.wbuf[:0]
	for _, r := range reqs {
		sync = sync || r.sync || f.cfg.Sync == SyncAlways && r.waited()
		if failed != nil {
			r.err = failed
			continue
		}
		if len(f.deferred) > 0 {
			// A removal before r is waiting for room: r must not be
			// written (and acknowledged) ahead of it.
			f.deferOrRefuse(r, noRoom(f.spareErr))
			continue
		}
		pos := f.offset + int64(len(f.wbuf))
		next, err := f.place(r, pos)
		if err == nil && r.grows && full != nil {
			err = full
		}
		if errors.Is(err, broker.ErrJournalFailed) {
			failed, r.err = err, err
			continue
		}
		if err != nil {
			if r.grows {
				full = err
			}
			f.deferOrRefuse(r, err)
			continue
		}
		if next {
			err := f.writeChunk(chunk, true)
			if err == nil {
				// The chunk ran out of space: what it refused or deferred
				// must not be overtaken by r in the next segment.
				if refused := refusedGrowing(chunk); refused != nil && full == nil {
					full = refused
				}
				if len(f.deferred) > 0 || r.grows && full != nil {
					chunk = chunk[:0]
					f.deferOrRefuse(r, cmp.Or(full, noRoom(f.spareErr)))
					continue
				}
				err = f.rotate()
			}
			if err != nil {
				release(reqs, f.fail(err))
				return
			}
			chunk = chunk[:0]
		}
		start := len(f.wbuf)
		f.wbuf = append(f.wbuf, r.buf...)
		if !r.copy {
			for k := range r.logs {
				r.logs[k].seq = f.nextSeq
				f.nextSeq++
			}
			seal(f.wbuf[start:], r.logs)
		}
		chunk = append(chunk, r)
	}
	err := f.writeChunk(chunk, sync)
	if err != nil {
		err = f.fail(err)
	}
	release(reqs, err)
	if cap(f.wbuf) > maxKeptBuffer {
		f.wbuf = nil // one huge batch should not pin its buffer forever
	}
}

// refusedGrowing is the refusal of the first growing request of chunk that
// writeChunk refused, or nil.
func refusedGrowing(chunk []*request) error {
	for _, r := range chunk {
		if r.grows && r.err != nil {
			return r.err
		}
	}
	return nil
}

// maxKeptBuffer is the largest write buffer the flusher keeps between
// batches.
const maxKeptBuffer = 4 << 20

// release answers the waiters of reqs: err, or the request's own refusal.
func release(reqs []*request, err error) {
	for _, r := range reqs {
		if r.deferred {
			continue // waiting for room: answered when written
		}
		outcome := err
		if r.err != nil {
			outcome = r.err
		}
		if r.done != nil {
			r.done <- outcome
		}
		if r.notify != nil {
			r.notify.JournalDone(outcome)
		}
	}
}

// flushChunk writes wbuf (the requests of chunk) at the end of the active
// segment, fsyncs if sync, and then records them in the live set: the
// compactor acts only on what has been written.
func (f *File) flushChunk(chunk []*request, sync bool) error {
	if len(f.wbuf) > 0 {
		if n, err := f.active.WriteAt(f.wbuf, f.offset); err != nil {
			if noSpace(err) {
				return f.unwrite(n, err)
			}
			return fmt.Errorf("persistence: write %s: %w", f.active.Name(), err)
		}
		f.offset += int64(len(f.wbuf))
		f.wbuf = f.wbuf[:0]
		f.dirty = true
	}
	if sync {
		if err := f.syncActive(); err != nil {
			return err
		}
	}
	var appends, records uint64
	f.smu.Lock()
	f.segs[f.activeID].size = f.offset
	for _, r := range chunk {
		for k := range r.logs {
			if r.copy {
				f.idx.move(&r.logs[k], f.activeID)
			} else {
				f.idx.apply(&r.logs[k], f.activeID)
			}
		}
		if !r.copy {
			appends++
			records += uint64(len(r.logs))
		}
	}
	shrunk := f.idx.shrunk
	f.idx.shrunk = false
	f.smu.Unlock()
	f.stats.appends.Add(appends)
	f.stats.records.Add(records)
	if shrunk {
		f.poke()
	}
	return nil
}

// writeCopy writes the records of a compaction copy that are still live
// where the compactor found them, and fsyncs them.
func (f *File) writeCopy(r *request) {
	f.smu.Lock()
	buf, keep := f.idx.keepLive(r.buf, r.logs)
	f.smu.Unlock()
	r.buf, r.logs, r.sync = buf, keep, true
	f.mu.Lock()
	f.used += int64(len(buf))
	f.mu.Unlock()
	if len(buf) == 0 {
		r.done <- nil
		return
	}
	f.writeGroup([]*request{r})
}

// barrier makes everything written so far durable, or returns the sticky
// failure. After a failed write or fsync it does not fsync again: the
// kernel may have dropped the pages that failed and marked them clean, so
// a second fsync can succeed without them ever reaching the disk
// (PostgreSQL's "fsyncgate"). Only recovery at the next start knows what
// is on disk.
func (f *File) barrier() error {
	if err := f.Failed(); err != nil {
		return err
	}
	if err := f.syncActive(); err != nil {
		return f.fail(err)
	}
	return nil
}

// syncActive fsyncs the active segment if it was written since the last
// fsync.
func (f *File) syncActive() error {
	if !f.dirty {
		return nil
	}
	if err := f.syncFile(f.active); err != nil {
		return err
	}
	f.dirty = false
	return nil
}

// sealActive rotates now, if the active segment holds records. No room
// for the next segment is not a failure: the error (wrapping
// broker.ErrJournalFull) is returned and the active segment stays.
func (f *File) sealActive() error {
	if err := f.Failed(); err != nil || f.offset == headerSize {
		return err
	}
	err := f.syncActive()
	if err == nil {
		err = f.rotate()
	}
	if err != nil && !errors.Is(err, broker.ErrJournalFull) {
		return f.fail(err)
	}
	return err
}

// rotate seals the active segment (its data is already fsynced): it is
// truncated to its data and becomes a compaction candidate; appends go to
// the spare, made ahead of time. Without a spare, and none can be made
// now, nothing changes and the error wraps broker.ErrJournalFull: the
// active segment stays, for removals to use its reserve.
func (f *File) rotate() error {
	if !f.makeSpare() {
		return noRoom(f.spareErr)
	}
	old, oldID := f.active, f.activeID
	if err := old.Truncate(f.offset); err != nil {
		return fmt.Errorf("persistence: truncate %s: %w", old.Name(), err)
	}
	if err := old.Close(); err != nil {
		return fmt.Errorf("persistence: close %s: %w", old.Name(), err)
	}
	f.activate(f.spareSeg, f.spareID)
	f.spareSeg = nil
	f.smu.Lock()
	f.segs[oldID].sealed = true
	f.smu.Unlock()
	f.measureFree()
	f.poke()
	return nil
}

// prepareSegment creates segment id, pre-allocated, with its header on
// disk (file and directory fsynced). On failure nothing of it is left, as
// far as the file system lets it be removed.
func (f *File) prepareSegment(id uint64) (segmentFile, error) {
	path := f.segPath(id)
	sf, err := f.fs.Create(path)
	if err != nil {
		return nil, fmt.Errorf("persistence: create segment: %w", err)
	}
	err = sf.Allocate(f.cfg.SegmentSize)
	if err == nil {
		_, err = sf.WriteAt(appendHeader(nil, id), 0)
	}
	if err == nil {
		err = f.syncFile(sf)
	}
	if err == nil {
		err = f.fs.SyncDir(f.dir)
	}
	if err != nil {
		sf.Close()
		f.fs.Remove(path)
		return nil, fmt.Errorf("persistence: start segment %s: %w", path, err)
	}
	return sf, nil
}

// activate makes sf, a new segment id holding only its header, the
// active one.
func (f *File) activate(sf segmentFile, id uint64) {
	f.active, f.activeID, f.offset, f.dirty = sf, id, headerSize, false
	f.smu.Lock()
	f.segs[id] = &segment{id: id, size: headerSize}
	f.smu.Unlock()
	f.mu.Lock()
	f.used += headerSize
	f.mu.Unlock()
}

// Failed returns the error that broke the journal, or nil. After a write
// or fsync of a segment fails, what reached the disk is unknown, so the
// failure is terminal: every later Append, barrier and Close returns it,
// nothing more is written or fsynced, and only a restart, which recovers
// from what is on disk, makes the journal usable again. The error wraps
// broker.ErrJournalFailed and the cause (an *fs.PathError, EIO, ...).
func (f *File) Failed() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed
}

// fail makes err the sticky failure, unless there is one already, and
// returns the sticky failure.
func (f *File) fail(err error) error {
	f.mu.Lock()
	first := f.failed == nil
	if first {
		f.failed = fmt.Errorf("%w: %w", broker.ErrJournalFailed, err)
	}
	sticky := f.failed
	f.mu.Unlock()
	if first {
		f.log.Error("journal failed: a segment write or fsync failed, so what is on disk is unknown; "+
			"the journal accepts no more records until the process restarts and recovers", "err", err)
	}
	return sticky
}

// poke wakes the compactor without waiting.
func (f *File) poke() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}
