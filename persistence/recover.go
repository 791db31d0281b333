package persistence

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/stompbox/stompbox/broker"
)

// segmentIDs lists the segment numbers in dir, in order. Other files are
// ignored.
func segmentIDs(fsys fileSystem, dir string) ([]uint64, error) {
	names, err := fsys.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var ids []uint64
	for _, name := range names {
		digits, ok := strings.CutSuffix(name, ".seg")
		if !ok || len(digits) != 20 {
			continue
		}
		id, err := strconv.ParseUint(digits, 10, 64)
		if err != nil || id == 0 {
			continue
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, nil
}

// scanned is recovery's verdict on one segment.
type scanned struct {
	id       uint64
	fileSize int64
	res      scanResult
	tail     []byte // a copy of res.tail's bytes: the read buffer is reused
}

// recover reads every segment in order into the live set (keys and
// places only, not message bodies) and then deals with the damage it
// found (docs/persistence.md, "Corruption"): nothing is cut without its
// bytes being kept aside first. A torn tail is only possible in the
// newest segment with data (older ones were fsynced and sealed before the
// next was created): it is copied aside and truncated away. Any other
// damage is corruption: copied aside, reported, and read around, so that
// every good record after it is recovered.
func (f *File) recover() error {
	ids, err := segmentIDs(f.fs, f.dir)
	if err != nil {
		return err
	}
	var found []scanned
	var buf []byte // reused: collectSegment copies what it keeps
	for _, id := range ids {
		f.lastID = max(f.lastID, id)
		path := f.segPath(id)
		data, err := readFileInto(f.fs, path, buf)
		if err != nil {
			return err
		}
		buf = data
		seg := &segment{id: id, sealed: true}
		f.segs[id] = seg // the live set accounts per segment as it applies records
		// The records still live at the segment's end are decoded now, so
		// that Replay need not read the journal a second time.
		res, maxSeq := collectSegment(f.idx, id, data)
		switch h := res.header; {
		case res.newer != nil:
			return fmt.Errorf("persistence: segment %s was written by a newer version of stompbox: %w", path, res.newer)
		case h.state == headerEmpty:
			if end := dataEnd(data); end > 0 {
				// A torn header: its bytes are kept before the file goes.
				if err := f.keepAside(id, span{0, end}, data[:end]); err != nil {
					f.log.Error("journal: a torn segment header could not be copied aside; the file is kept",
						"file", path, "err", err)
					delete(f.segs, id)
					continue
				}
			}
			f.log.Warn("journal: empty segment (crash while creating it?); it will be deleted", "file", path,
				"bytes", len(data), "header", h.why)
			continue
		case h.state == headerDamaged && res.records == 0:
			delete(f.segs, id)
			f.stats.corruptSegments.Add(1)
			f.log.Error("journal: not a segment (bad header, no readable record); skipped and left in place",
				"file", path, "header", h.why)
			continue
		case h.state == headerDamaged:
			f.noteDamage(id, span{0, headerSize}, data[:headerSize], "header: "+h.why)
			f.log.Error("journal: damaged segment header; the segment's records were read anyway",
				"file", path, "header", h.why, "records", res.records)
		case h.id != id:
			f.log.Warn("journal: segment header names another segment number", "file", path, "header", h.id)
		}
		f.nextSeq = max(f.nextSeq, maxSeq)
		seg.size = int64(res.end)
		found = append(found, scanned{id: id, fileSize: int64(len(data)), res: res,
			tail: bytes.Clone(data[res.tail.start:res.tail.end])})
		for _, d := range res.damaged {
			f.stats.corruptRecords.Add(1)
			f.noteDamage(id, d, data[d.start:d.end], "damaged records with good records after them")
		}
		if len(res.damaged) > 0 {
			f.log.Error("journal: corrupt data in a segment; the good records after it were recovered",
				"file", path, "ranges", len(res.damaged), "first_offset", res.damaged[0].start, "kept_in", f.damageDir())
		}
	}
	f.nextSeq++
	f.idx.shrunk = false

	newest := -1 // the segment a crash may have torn
	for i, s := range found {
		if s.res.end > headerSize || s.res.tail.len() > 0 {
			newest = i
		}
	}
	for i, s := range found {
		path := f.segPath(s.id)
		if tail := s.res.tail; tail.len() > 0 {
			if i != newest {
				f.stats.corruptRecords.Add(1)
				f.noteDamage(s.id, tail, s.tail, "unreadable data after the last good record of a sealed segment")
				f.log.Error("journal: unreadable data after the last good record of a sealed segment; kept in place",
					"file", path, "offset", tail.start, "bytes", tail.len(), "kept_in", f.damageDir())
				continue
			}
			if err := f.keepAside(s.id, tail, s.tail); err != nil {
				f.log.Error("journal: torn tail could not be copied aside, so it is not truncated", "file", path,
					"offset", tail.start, "bytes", tail.len(), "err", err)
				continue
			}
			f.log.Warn("journal: torn tail (a write cut by a crash) truncated; its bytes are kept aside", "file", path,
				"offset", tail.start, "bytes", tail.len(), "kept_in", f.damageDir())
		}
		if s.fileSize > int64(s.res.end) {
			if err := f.truncate(path, int64(s.res.end)); err != nil {
				return err
			}
		}
	}
	for _, s := range f.segs {
		f.used += s.size
	}
	return nil
}

// truncate cuts a segment at size and makes that durable.
func (f *File) truncate(path string, size int64) error {
	fh, err := f.fs.OpenFile(path)
	if err != nil {
		return fmt.Errorf("persistence: %w", err)
	}
	err = fh.Truncate(size)
	if err == nil {
		err = f.syncFile(fh)
	}
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("persistence: truncate %s: %w", path, err)
	}
	return nil
}

// Replay calls fn with every live record in the order it was first
// appended: enqueues not removed and durable subscriptions not deleted (a
// durable subscription's create comes before the enqueues to its queue).
// The first Replay after Open hands out what Open decoded, without
// reading the journal again; a later one, or one after Appends made since
// Open, reads the segments again (compaction may run meanwhile but
// deletes no segment until the reading is done). fn is called with no
// lock held, and may Append; Replay returns the first error fn returns.
// Enqueued messages are built with broker.RecoveredMessage and own their
// bytes.
func (f *File) Replay(fn func(broker.JournalRecord) error) error {
	entries, ok := f.decodedAtOpen()
	if !ok {
		var err error
		if entries, err = f.readLive(); err != nil {
			return err
		}
	}
	for _, e := range entries {
		if err := fn(e.replayed()); err != nil {
			return err
		}
	}
	return nil
}

// decodedAtOpen returns, once, the live records Open decoded, and lets go
// of them: from then on the broker owns the messages. It reports false
// if some live record was not decoded (appended since Open) or if they
// were handed out already.
func (f *File) decodedAtOpen() ([]*entry, bool) {
	f.smu.Lock()
	defer f.smu.Unlock()
	if f.idx.released {
		return nil, false
	}
	f.idx.released = true
	all := f.idx.sorted()
	out := make([]*entry, len(all))
	ok := true
	for i, e := range all {
		if e.rec.Op == 0 {
			ok = false
		}
		out[i] = &entry{seq: e.seq, pos: e.pos, rec: e.replayed()}
		e.rec = broker.JournalRecord{}
	}
	return out, ok
}

// readLive reads every segment in use and returns the live records.
func (f *File) readLive() ([]*entry, error) {
	f.filesMu.Lock()
	defer f.filesMu.Unlock()
	type part struct {
		id   uint64
		size int64
	}
	var parts []part
	f.smu.Lock()
	for id, s := range f.segs {
		if s.size > headerSize {
			parts = append(parts, part{id, s.size})
		}
	}
	f.smu.Unlock()
	slices.SortFunc(parts, func(a, b part) int { return cmp.Compare(a.id, b.id) })

	set := newLiveSet(nil)
	for _, p := range parts {
		data, err := readPrefix(f.fs, f.segPath(p.id), p.size)
		if err != nil {
			return nil, err
		}
		if res, _ := collectSegment(set, p.id, data); res.newer != nil {
			return nil, fmt.Errorf("persistence: segment %s: %w", f.segPath(p.id), res.newer)
		}
	}
	return set.sorted(), nil
}

// replaySegment applies the records of one segment's bytes to set, in
// order, and returns what scan found and the highest sequence number seen.
// added, if not nil, gets each live entry the segment adds, with its view.
func replaySegment(set *liveSet, id uint64, data []byte, added func(*entry, *view)) (scanResult, uint64) {
	var maxSeq uint64
	res := scan(data, func(_ int, typ byte, payload []byte) error {
		vs, err := views(typ, payload)
		if err != nil {
			return err
		}
		for i := range vs {
			l := logicalOf(&vs[i])
			maxSeq = max(maxSeq, l.seq)
			if e := set.apply(&l, id); e != nil && added != nil {
				added(e, &vs[i])
			}
		}
		return nil
	})
	return res, maxSeq
}

// collectSegment is replaySegment for Replay: the records the segment
// adds that are still live at its end are decoded before its bytes go, so
// that most records removed in the same segment are never decoded.
func collectSegment(set *liveSet, id uint64, data []byte) (scanResult, uint64) {
	var fresh []*entry
	res, maxSeq := replaySegment(set, id, data, func(e *entry, v *view) {
		e.view = v
		fresh = append(fresh, e)
	})
	for _, e := range fresh {
		if !e.dead && e.view.op != broker.OpDeliveries { // a count is in its entry (deliveries)
			e.rec = e.view.record()
		}
		e.view = nil
	}
	return res, maxSeq
}
