package persistence

import (
	"slices"

	"github.com/stompbox/stompbox/broker"
)

// spaceFactor bounds the journal's data bytes once compaction has
// settled: at most spaceFactor times the live bytes plus two segment
// sizes (docs/persistence.md, "Disk bound"). Past it the compactor
// rewrites the oldest segment whatever its live fraction. 2 caps the
// amortized copying at one byte copied per byte freed.
const spaceFactor = 2

// runCompactor is the goroutine that reclaims disk: it deletes sealed
// segments with no live record and rewrites sparse ones. It does no write
// of its own to the active segment: copies go through the flusher like
// Appends. Owner: File; stop: stopCompactor; join: compactorWG. Close
// stops it before the flusher, so its requests are always served.
func (f *File) runCompactor() {
	defer f.compactorWG.Done()
	for {
		select {
		case <-f.stopCompactor:
			return
		case <-f.kick:
			f.compact()
		case done := <-f.compactNow:
			f.compact()
			close(done)
		}
	}
}

func (f *File) stopping() bool {
	select {
	case <-f.stopCompactor:
		return true
	default:
		return false
	}
}

// compact runs rounds until there is nothing left to do. A segment can go
// once it holds no live record and every segment its records killed
// records in is gone: its removes are tombstones for those. That chain
// always ends, since records only kill records written before them. Before
// deleting, a barrier makes sure the tombstones that made the segments
// dead are on disk.
func (f *File) compact() {
	for !f.stopping() {
		dels, rewrite := f.candidates()
		if len(dels) == 0 && rewrite == 0 {
			return
		}
		if rewrite != 0 {
			done, err := f.rewrite(rewrite)
			if err != nil {
				// No room for the copies: the disk is full. Deleting
				// what can go may free it; the next kick (a rotation, a
				// segment emptied) tries the rewrite again.
				rewrite = 0
			}
			if done {
				dels = append(dels, rewrite)
			}
		}
		if err := f.submitInternal(&request{}); err != nil {
			return
		}
		n, err := f.removeSegments(dels)
		if err != nil {
			f.log.Error("journal: compaction failed", "err", err)
			return
		}
		if n == 0 && rewrite == 0 {
			return
		}
	}
}

// candidates picks the sealed segments that can be deleted now, and the
// oldest sparse one to rewrite (0 if none); or, when the journal holds
// more than its disk bound (overBound), the oldest segment, whatever its
// live fraction: a segment can be deleted only once the segments its
// removes are tombstones for are gone, so one old segment that stays well
// filled (a DLQ, an offline durable subscription, a few stuck messages)
// would otherwise keep every later one on disk. The oldest segment never
// waits for another, so rewriting it always frees it, and the segments it
// pinned follow in the next rounds.
func (f *File) candidates() (dels []uint64, rewrite uint64) {
	f.mu.Lock()
	used := f.used
	f.mu.Unlock()
	f.smu.Lock()
	defer f.smu.Unlock()
	ids := make([]uint64, 0, len(f.segs))
	var sealed, sealedLive, live int64
	for id, s := range f.segs {
		live += s.live
		if s.sealed {
			ids = append(ids, id)
			sealed += s.size
			sealedLive += s.live
		}
	}
	slices.Sort(ids)
	defer func() {
		if rewrite == 0 && len(ids) > 0 && f.overBound(sealed, sealedLive, live, used) {
			if s := f.segs[ids[0]]; s.liveRecs > 0 && !s.noRewrite && s.targetsGone(f.segs) {
				rewrite = ids[0]
			}
		}
	}()
	for _, id := range ids {
		s := f.segs[id]
		switch {
		case s.liveRecs == 0:
			if s.targetsGone(f.segs) {
				dels = append(dels, id)
			}
		case rewrite == 0 && !s.noRewrite && float64(s.live) < f.cfg.CompactBelow*float64(s.size):
			if s.targetsGone(f.segs) {
				rewrite = id
			}
		}
	}
	return dels, rewrite
}

// overBound reports whether the sealed segments hold more than the disk
// bound allows: more than spaceFactor times the live bytes plus one segment
// (the active segment is the second one of the bound), or, near a disk
// budget, a segment's worth of dead bytes that a pass over the oldest
// segments would free. Rewriting is off with a negative CompactBelow.
func (f *File) overBound(sealed, sealedLive, live, used int64) bool {
	if f.cfg.CompactBelow < 0 {
		return false
	}
	seg := f.cfg.SegmentSize
	if sealed > spaceFactor*live+seg {
		return true
	}
	if f.cfg.MaxBytes <= 0 || sealed-sealedLive < seg {
		return false
	}
	return used > f.cfg.MaxBytes-seg
}

// rewrite copies the live records of segment id to the active segment
// (through the flusher, fsynced) and reports whether id is left with none.
// The error is the flusher's refusal of the copies (no room, or a failed
// journal).
func (f *File) rewrite(id uint64) (bool, error) {
	f.smu.Lock()
	size := f.segs[id].size
	f.smu.Unlock()
	path := f.segPath(id)
	data, err := readPrefix(f.fs, path, size)
	if err == nil {
		_, err = checkHeader(data)
	}
	if err != nil {
		f.log.Error("journal: compaction cannot read a segment; it is kept", "file", path, "err", err)
		f.noRewrite(id)
		return false, nil
	}
	var buf []byte
	var logs []logical
	scan(data, func(_ int, typ byte, payload []byte) error {
		vs, err := views(typ, payload)
		if err != nil {
			return err
		}
		for i := range vs {
			v := &vs[i]
			if v.op != broker.OpEnqueue && v.op != broker.OpDurableCreate {
				continue
			}
			l := logicalOf(v)
			f.smu.Lock()
			live := f.idx.stillAt(&l, id)
			f.smu.Unlock()
			if !live {
				continue
			}
			l.src, l.frameOff = id, len(buf)
			buf = appendFrame(buf, v.op, v.payload)
			l.frameLen = len(buf) - l.frameOff
			l.size = int64(l.frameLen)
			logs = append(logs, l)
		}
		return nil
	})
	if len(logs) > 0 {
		if err := f.submitInternal(&request{buf: buf, logs: logs, copy: true}); err != nil {
			return false, err
		}
	}
	f.smu.Lock()
	left := f.segs[id].liveRecs
	f.smu.Unlock()
	if left != 0 {
		f.log.Error("journal: compaction left live records in a segment; it is kept", "file", path, "records", left)
		f.noRewrite(id)
		return false, nil
	}
	f.stats.segmentsRewritten.Add(1)
	return true, nil
}

func (f *File) noRewrite(id uint64) {
	f.smu.Lock()
	f.segs[id].noRewrite = true
	f.smu.Unlock()
}

// appendFrame frames one record whose sequence number and payload are
// already encoded.
func appendFrame(dst []byte, op broker.JournalOp, payload []byte) []byte {
	start := len(dst)
	dst = le.AppendUint32(dst, uint32(1+len(payload)))
	dst = le.AppendUint32(dst, 0)
	dst = append(dst, byte(op))
	dst = append(dst, payload...)
	le.PutUint32(dst[start+4:], checksum(dst[start+frameHeader:]))
	return dst
}

// removeSegments deletes the segments of ids that may still go, makes
// that durable, and only then forgets them: a segment whose removes were
// tombstones for one of these may go in the next round.
func (f *File) removeSegments(ids []uint64) (int, error) {
	f.filesMu.Lock()
	defer f.filesMu.Unlock()
	var gone []uint64
	for _, id := range ids {
		f.smu.Lock()
		s := f.segs[id]
		ok := s != nil && s.sealed && s.liveRecs == 0 && s.targetsGone(f.segs)
		f.smu.Unlock()
		if !ok {
			continue
		}
		if err := removeIfExists(f.fs, f.segPath(id)); err != nil {
			return 0, err
		}
		gone = append(gone, id)
	}
	if len(gone) == 0 {
		return 0, nil
	}
	if err := f.fs.SyncDir(f.dir); err != nil {
		return 0, err
	}
	var freed int64
	f.smu.Lock()
	for _, id := range gone {
		freed += f.segs[id].size
		delete(f.segs, id)
	}
	f.smu.Unlock()
	f.mu.Lock()
	f.used -= freed
	f.mu.Unlock()
	f.freed.Store(true) // the flusher may make its spare segment now
	f.stats.segmentsDeleted.Add(uint64(len(gone)))
	return len(gone), nil
}

// compactSync runs compaction on the compactor goroutine and waits for it
// (tests).
func (f *File) compactSync() {
	done := make(chan struct{})
	f.compactNow <- done
	<-done
}
