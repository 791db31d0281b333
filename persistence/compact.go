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
		case rewrite == 0 && !s.noRewrite && s.live < s.size-headerSize &&
			float64(s.live) < f.cfg.CompactBelow*float64(s.size-headerSize):
			// Sparse: its records, not its header, are mostly dead. A
			// segment with nothing dead is never sparse: rewriting it
			// would free nothing, and two such segments that do not fit
			// in one would be rewritten into each other forever.
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
		_, err = readHeader(data)
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
		for i := 0; i < len(vs); {
			j := i + 1
			for vs[i].group != nil && j < len(vs) && vs[j].group == vs[i].group {
				j++
			}
			f.smu.Lock()
			buf, logs = f.idx.appendCopies(buf, logs, vs[i:j], id)
			f.smu.Unlock()
			i = j
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

// appendCopies appends to buf the compaction copies of the records vs that
// are still live in segment src, and their logicals to logs: vs is one
// record, or the enqueues of one multi-enqueue record, whose live ones are
// copied as one record (the message once). Caller holds the lock of s.
func (s *liveSet) appendCopies(buf []byte, logs []logical, vs []view, src uint64) ([]byte, []logical) {
	first := len(logs)
	var live []*view
	for i := range vs {
		v := &vs[i]
		switch v.op {
		case broker.OpEnqueue, broker.OpDurableCreate, broker.OpDeliveries, broker.OpHistoryAppend, broker.OpHistoryTrim, broker.OpHistorySeal:
		default:
			continue
		}
		l := logicalOf(v)
		if !s.stillAt(&l, src) {
			continue
		}
		l.src = src
		logs = append(logs, l)
		live = append(live, v)
	}
	if len(live) == 0 {
		return buf, logs
	}
	return frameCopy(buf, live, logs[first:]), logs
}

// frameCopy appends one record holding the live records vs (with their
// sequence numbers) and sets the frame and size of their logicals: a
// record's payload as it was, or for enqueues of one multi-enqueue record,
// an enqueue for one and a multi-enqueue of the live ones for several.
func frameCopy(buf []byte, vs []*view, logs []logical) []byte {
	off := len(buf)
	v := vs[0]
	switch {
	case v.group == nil:
		buf = appendTyped(buf, recordType(v.op), v.payload)
	case len(vs) == 1:
		p := le.AppendUint64(nil, v.seq)
		p = appendBytes(p, v.queue)
		buf = appendTyped(buf, recordType(broker.OpEnqueue), append(p, v.group.part...))
	default:
		p := le.AppendUint32(nil, uint32(len(vs)))
		for _, v := range vs {
			p = le.AppendUint64(p, v.seq)
			p = appendBytes(p, v.queue)
		}
		buf = appendTyped(buf, typeMultiEnqueue, append(p, v.group.part...))
	}
	for i := range logs {
		logs[i].frameOff, logs[i].frameLen = off, len(buf)-off
		logs[i].size = share(int64(len(buf)-off), len(logs), i)
	}
	return buf
}

// deliveriesPayload is the payload of l, a deliveries record.
func deliveriesPayload(l *logical) []byte {
	p := le.AppendUint64(nil, l.seq)
	p = appendString(p, l.queue)
	p = appendString(p, l.id)
	return le.AppendUint32(p, uint32(l.deliveries))
}

// keepLive returns the frames of a compaction copy (buf, logs) whose
// records are still live where the compactor found them, with their
// logicals. Records that share a frame (a multi-enqueue) are copied
// together: the frame as it is when all are live, or framed again with
// those that are. A copied enqueue's deliveries record in another segment
// (written after the compactor read this one, or in a later segment) is
// copied right after it: recovery reads the files in order, and a
// deliveries record before its enqueue would count nothing. One in the
// same segment is in the copy already, after its enqueue. Caller holds the
// lock of s.
func (s *liveSet) keepLive(buf []byte, logs []logical) ([]byte, []logical) {
	var out []byte
	var keep []logical
	for i := 0; i < len(logs); {
		j := i + 1
		for j < len(logs) && logs[j].frameOff == logs[i].frameOff {
			j++
		}
		from := len(keep)
		out, keep = s.keepFrame(out, keep, buf, logs[i:j])
		for k := from; k < len(keep); k++ {
			out, keep = s.keepCount(out, keep, k)
		}
		i = j
	}
	return out, keep
}

// keepFrame appends to out the records of one frame of buf (described by
// logs) that are still live, and their logicals to keep.
func (s *liveSet) keepFrame(out []byte, keep []logical, buf []byte, logs []logical) ([]byte, []logical) {
	frame := buf[logs[0].frameOff : logs[0].frameOff+logs[0].frameLen]
	var live []int
	for k := range logs {
		if s.stillAt(&logs[k], logs[k].src) {
			live = append(live, k)
		}
	}
	switch {
	case len(live) == len(logs):
		off := len(out)
		out = append(out, frame...)
		for _, l := range logs {
			l.frameOff = off
			keep = append(keep, l)
		}
	case len(live) > 0:
		// Some enqueues of a multi-enqueue died meanwhile: frame the
		// others again.
		vs, err := views(frame[frameHeader], frame[frameHeader+1:])
		if err != nil || len(vs) != len(logs) {
			return out, keep // cannot happen: the compactor framed it
		}
		picked := make([]*view, len(live))
		kept := make([]logical, len(live))
		for n, k := range live {
			picked[n], kept[n] = &vs[k], logs[k]
		}
		out = frameCopy(out, picked, kept)
		keep = append(keep, kept...)
	}
	return out, keep
}

// keepCount appends after keep[k], if it is an enqueue whose deliveries
// record is in another segment, a copy of that record.
func (s *liveSet) keepCount(out []byte, keep []logical, k int) ([]byte, []logical) {
	l := &keep[k]
	if l.op != broker.OpEnqueue {
		return out, keep
	}
	e := s.lookup(l)
	if e == nil || e.count == nil || e.count.seg == l.src {
		return out, keep
	}
	c := e.count
	cl := logical{op: broker.OpDeliveries, queue: l.queue, id: l.id, seq: c.seq, src: c.seg,
		deliveries: c.deliveries, frameOff: len(out)}
	out = appendTyped(out, typeDeliveries, deliveriesPayload(&cl))
	cl.frameLen = len(out) - cl.frameOff
	cl.size = int64(cl.frameLen)
	return out, append(keep, cl)
}

// appendTyped is appendFrame for a record of type typ, which may be one
// that is not a broker.JournalOp.
func appendTyped(dst []byte, typ byte, payload []byte) []byte {
	return appendFrame(dst, broker.JournalOp(typ), payload)
}

// appendFrame frames one record whose sequence number and payload are
// already encoded.
func appendFrame(dst []byte, op broker.JournalOp, payload []byte) []byte {
	start := len(dst)
	dst = le.AppendUint32(dst, uint32(1+len(payload)))
	dst = le.AppendUint32(dst, 0)
	dst = le.AppendUint32(dst, 0)
	dst = append(dst, byte(op))
	dst = append(dst, payload...)
	sealFrame(dst[start:])
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
