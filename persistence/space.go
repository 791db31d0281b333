package persistence

import (
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/stompbox/stompbox/broker"
)

// Running out of disk is flow control, never a dead journal. Appends that
// add data (enqueues, durable creates: "growing") are refused with an
// error wrapping broker.ErrJournalFull, which blocks persistent producers
// in the broker, while removals and compaction copies keep a reserve, so
// that acknowledgements are still journaled and compaction can free
// space. The three bounds, each a reason of stompbox_journal_disk_full:
//
//   - budget: Config.MaxBytes (checked in submit);
//   - min_free: without a budget, the file system's free space under
//     Config.MinFree (checked in Append, at most every freeCheckInterval);
//   - no_space: the file system refused space (ENOSPC, EDQUOT) to create,
//     pre-allocate or write a segment, or the next segment could not be
//     created.
//
// The reserve: the flusher keeps the next segment (the spare) created and
// pre-allocated ahead of time, so rotating never needs the file system to
// find space at that moment. While there is no spare (its creation
// failed), growing appends may fill the active segment only up to
// SegmentSize - reserve(); the rest, and the whole spare, are for removals
// and compaction copies.

// freeCheckInterval is how often Append reads the file system's free space
// for Config.MinFree at most.
const freeCheckInterval = 100 * time.Millisecond

// spareRetryInterval is how long the flusher waits before it tries again
// to create the spare after a failure (sooner if compaction deletes
// segments meanwhile).
const spareRetryInterval = 100 * time.Millisecond

// fullReason is why growing appends are refused.
type fullReason uint8

const (
	fullBudget fullReason = iota
	fullMinFree
	fullNoSpace
	fullReasons
)

var fullReasonNames = [fullReasons]string{fullBudget: "budget", fullMinFree: "min_free", fullNoSpace: "no_space"}

func (r fullReason) String() string { return fullReasonNames[r] }

// noSpace reports whether err is the file system refusing space: no
// space left on the device, or the user's disk quota.
func noSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// reserve is the part of the active segment that growing appends leave
// to removals and compaction copies while there is no spare segment: half
// of it, room for the removals of about a segment of messages (a removal
// record is smaller than its message's), so that consumers can empty a
// segment, which compaction then deletes.
func (f *File) reserve() int64 { return f.cfg.SegmentSize / 2 }

// noRoom is the error of a request refused for lack of room, wrapping
// broker.ErrJournalFull and the cause.
func noRoom(cause error) error {
	if cause == nil {
		cause = errors.New("no spare segment")
	}
	return fmt.Errorf("persistence: no space for the journal (%w): %w", cause, broker.ErrJournalFull)
}

// place decides, for request r to be written at pos of the active
// segment, whether the next segment must be started first, or whether r
// is refused for lack of room (error wrapping broker.ErrJournalFull).
// Removals and copies may use the whole active segment and the spare;
// growing requests only leave the reserve: with a spare, anything goes
// (the spare is the reserve), without one they must fit below
// SegmentSize - reserve() of the active segment. Flusher only.
func (f *File) place(r *request, pos int64) (next bool, err error) {
	n := int64(len(r.buf))
	next = pos > headerSize && pos+n > f.cfg.SegmentSize
	fits := func() bool {
		if !r.grows {
			return !next || f.spareSeg != nil
		}
		return f.spareSeg != nil || (!next && pos+n <= f.cfg.SegmentSize-f.reserve())
	}
	if fits() || (f.makeSpare() && fits()) {
		return next, nil
	}
	if err := f.Failed(); err != nil {
		return false, err
	}
	return false, noRoom(f.spareErr)
}

// makeSpare creates the next segment ahead of time unless there is one,
// or an attempt failed less than spareRetryInterval ago and compaction
// has deleted nothing since. It reports whether there is a spare. A spare
// holds no data, so failing to make one for lack of space breaks nothing:
// it is tried again later, and meanwhile growing appends keep the
// reserve. Any other failure (EIO) fails the journal.
// Flusher only (and Open, before the flusher starts).
func (f *File) makeSpare() bool {
	if f.spareSeg != nil {
		return true
	}
	if f.Failed() != nil {
		return false
	}
	now := time.Now()
	if now.Before(f.spareRetry) && !f.freed.Load() {
		return false
	}
	f.freed.Store(false)
	f.lastID++ // even if the attempt fails: a half-made file keeps its number
	sf, err := f.prepareSegment(f.lastID)
	if err != nil && !noSpace(err) {
		// Not a lack of space: the disk failed an operation (EIO, a lost
		// volume). Like any failed segment I/O it is terminal and loud;
		// reporting it as "journal full" would block producers on a disk
		// that is not full and never recover.
		f.fail(err)
		return false
	}
	if err != nil {
		if f.spareErr == nil {
			f.log.Warn("journal: no space to create the next segment; retrying. New persistent messages are refused "+
				"once the active segment's room for them is used", "err", err)
		}
		f.spareErr, f.spareRetry = err, now.Add(spareRetryInterval)
		return false
	}
	f.spareSeg, f.spareID, f.spareErr, f.spareRetry = sf, f.lastID, nil, time.Time{}
	return true
}

// dropSpare closes the spare and, unless keep, removes it. It is kept
// when the journal failed (nothing is changed on disk then) and when the
// disk is short of space: recovery at the next start takes it as the
// active segment, with its space. Close only.
func (f *File) dropSpare(keep bool) error {
	if f.spareSeg == nil {
		return nil
	}
	sf := f.spareSeg
	f.spareSeg = nil
	err := sf.Close()
	if !keep {
		err = errors.Join(err, removeIfExists(f.fs, sf.Name()))
	}
	return err
}

// shortOfSpace reports whether growing appends are being refused for
// lack of space on the file system (not for the budget).
func (f *File) shortOfSpace() bool {
	return f.fullMask.Load()&(1<<fullNoSpace|1<<fullMinFree) != 0
}

// closeKeepingSpace closes the active segment without giving back its
// pre-allocated tail, for a journal short of space: the next start
// appends to it (reopen) and has room for removals at once. The tail is
// zeros, which end the data.
func (f *File) closeKeepingSpace(fh segmentFile) error {
	err := f.syncFile(fh)
	f.smu.Lock()
	f.segs[f.activeID].sealed = true
	f.smu.Unlock()
	return errors.Join(err, fh.Close())
}

// deferOrRefuse handles a request that found no room. Removals (a Forget,
// or an Append of removes and durable deletes, whose waiter is answered
// once it is written) are deferred: kept in order to be written before
// anything else once there is room, since dropping one would bring its
// messages back after a restart, after a later Append was acknowledged. A
// request that adds data is refused (its producer retries: flow control),
// and so is a compaction copy (the compactor tries again later; Close
// waits for it). Flusher only.
func (f *File) deferOrRefuse(r *request, err error) {
	if r.grows || r.copy || f.Failed() != nil {
		f.refuse(r, err)
		return
	}
	r.deferred = true
	if len(f.deferred) == 0 && !f.dropWarned.Swap(true) {
		f.log.Warn("journal: no space for removals; they wait, and the journal takes nothing after them, until space frees",
			"records", len(r.logs), "err", err)
	}
	f.deferred = append(f.deferred, r)
}

// refuse takes r out of its round: it is not written, its bytes no longer
// count against the budget, and its waiter gets err. Flusher only.
func (f *File) refuse(r *request, err error) {
	r.err = err
	f.mu.Lock()
	f.used -= int64(len(r.buf))
	f.mu.Unlock()
	if r.grows && errors.Is(err, broker.ErrJournalFull) {
		f.markFull(fullNoSpace, err)
	}
}

// dropDeferred gives up the removals still waiting for room when the
// journal closes: their messages come back after the restart. It returns
// an error saying so (wrapping broker.ErrJournalFull), or nil. Close only.
func (f *File) dropDeferred() error {
	if f.Failed() != nil {
		f.deferred = nil // the journal failed (and said so): nothing more is written
		return nil
	}
	var n int
	for _, r := range f.deferred {
		n += len(r.logs)
	}
	deferred := f.deferred
	f.deferred = nil
	if n == 0 {
		return nil
	}
	f.stats.dropped.Add(uint64(n))
	err := fmt.Errorf("persistence: %d removals could not be journaled for lack of space; their messages come back after a restart: %w",
		n, broker.ErrJournalFull)
	for _, r := range deferred {
		r.deferred, r.err = false, err
	}
	release(deferred, err)
	f.log.Error("journal closed on a full disk", "err", err)
	return err
}

// markFull records that growing appends are being refused for why; the
// first refusal of an episode is logged.
func (f *File) markFull(why fullReason, err error) {
	bit := uint32(1) << why
	if f.fullMask.Or(bit)&bit == 0 {
		f.log.Warn("journal full: new persistent messages are refused (producers are blocked) until space frees",
			"reason", why.String(), "err", err)
	}
}

// clearFull records that growing appends are taken again (all reasons,
// or one).
func (f *File) clearFull(mask uint32) {
	if old := f.fullMask.And(^mask); old&mask != 0 && old&^mask == 0 {
		f.dropWarned.Store(false)
		f.log.Info("journal: new persistent messages are accepted again")
	}
}

// accepted clears the full state once a round wrote a growing request.
func (f *File) accepted(chunk []*request) {
	if f.fullMask.Load() == 0 {
		return
	}
	for _, r := range chunk {
		if r.grows {
			f.clearFull(^uint32(0))
			return
		}
	}
}

// checkFree applies Config.MinFree (only without a budget) to a growing
// Append at now: the free space is read at most every freeCheckInterval
// (one statfs), not per Append.
func (f *File) checkFree(now time.Time) error {
	if f.cfg.MinFree <= 0 || f.cfg.MaxBytes > 0 {
		return nil
	}
	t := now.Sub(f.born).Nanoseconds() // monotonic
	if next := f.freeNext.Load(); t >= next && f.freeNext.CompareAndSwap(next, t+freeCheckInterval.Nanoseconds()) {
		f.measureFree()
	}
	if !f.freeLow.Load() {
		return nil
	}
	err := fmt.Errorf("persistence: the journal's file system has %d bytes free, under journal.min_free %d: %w",
		f.freeSeen.Load(), f.cfg.MinFree, broker.ErrJournalFull)
	f.markFull(fullMinFree, err)
	return err
}

// measureFree reads the file system's free space for Config.MinFree. An
// error is logged and taken as enough space: the check is a courtesy to
// the rest of the machine, ENOSPC itself is handled anyway.
func (f *File) measureFree() {
	if f.cfg.MinFree <= 0 || f.cfg.MaxBytes > 0 {
		return
	}
	free, err := f.fs.FreeBytes(f.dir)
	if err != nil {
		if !f.freeErr.Swap(true) {
			f.log.Warn("journal: cannot read the free space of its file system; journal.min_free is not applied", "err", err)
		}
		f.freeLow.Store(false)
		return
	}
	f.freeErr.Store(false)
	f.freeSeen.Store(free)
	low := free < uint64(f.cfg.MinFree)
	f.freeLow.Store(low)
	if !low {
		f.clearFull(1 << fullMinFree)
	}
}

// writeChunk is flushChunk, except that running out of space while
// writing is not a failure: the write failed at a known offset, and
// flushChunk zeroed what it had written and counted nothing, so what is
// on disk is known. Its growing requests are refused (ErrJournalFull); the
// others are written once more on their own (a removal may fit where a
// message did not) and refused too if that fails. Any other error is
// returned, for the caller to fail the journal with.
func (f *File) writeChunk(chunk []*request, sync bool) error {
	err := f.flushChunk(chunk, sync)
	if err == nil {
		f.accepted(chunk)
	}
	if err == nil || !errors.Is(err, broker.ErrJournalFull) {
		return err
	}
	var keep []*request
	f.wbuf = f.wbuf[:0]
	f.log.Warn("journal: a segment write ran out of space; its new messages are refused, its removals written again on their own",
		"err", err)
	for _, r := range chunk {
		if r.grows {
			f.refuse(r, err)
			continue
		}
		start := len(f.wbuf)
		f.wbuf = append(f.wbuf, r.buf...)
		if !r.copy {
			seal(f.wbuf[start:], r.logs)
		}
		keep = append(keep, r)
	}
	if len(keep) == 0 {
		return nil
	}
	err = f.flushChunk(keep, sync)
	if err != nil && errors.Is(err, broker.ErrJournalFull) {
		for _, r := range keep {
			f.deferOrRefuse(r, err)
		}
		return nil
	}
	return err
}

// unwrite undoes a write of the active segment that failed for lack of
// space after n bytes: they are zeroed (their blocks exist), so that no
// part of a refused record is left after the data, and nothing is
// counted. If the zeroing fails, what is on disk is unknown: that error
// is returned, and the caller fails the journal.
func (f *File) unwrite(n int, cause error) error {
	f.wbuf = f.wbuf[:0]
	if n > 0 {
		if _, err := f.active.WriteAt(make([]byte, n), f.offset); err != nil {
			return fmt.Errorf("persistence: write %s: %w (zeroing a partial write after %w)", f.active.Name(), err, cause)
		}
		f.dirty = true
	}
	return fmt.Errorf("persistence: write %s: %w: %w", f.active.Name(), cause, broker.ErrJournalFull)
}
