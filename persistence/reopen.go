package persistence

import (
	"errors"
	"fmt"
)

// openActive gives the journal its active segment at Open: the newest
// segment if it holds no record (the spare of the last run, left by a
// crash), else a new one. If the new one cannot be created for lack of
// space, appends go on at the end of the newest segment (recovery cut it
// after its last good record), so that Open works on a full disk; the
// journal then takes removals, and new messages once space frees.
func (f *File) openActive() error {
	id := f.newestSegment()
	if id != 0 && f.segs[id].size == headerSize {
		if err := f.reopen(id); err == nil {
			return nil
		}
	}
	f.lastID++
	sf, err := f.prepareSegment(f.lastID)
	if err == nil {
		f.activate(sf, f.lastID)
		return nil
	}
	if !noSpace(err) || id == 0 {
		return err
	}
	if rerr := f.reopen(id); rerr != nil {
		return errors.Join(err, rerr)
	}
	f.log.Warn("journal: no space for a new segment at start; appending to the newest one",
		"file", f.segPath(id), "err", err)
	return nil
}

// newestSegment is the highest-numbered segment recovery found with a
// valid header, or 0.
func (f *File) newestSegment() uint64 {
	var newest uint64
	for id, s := range f.segs {
		if s.size >= headerSize && id > newest {
			newest = id
		}
	}
	return newest
}

// reopen makes segment id, as recovery left it, the active one, appending
// after its data. Only a segment of this format version whose file ends
// where its data does qualifies: appending after bytes recovery kept
// (damage left for an operator) would hide records behind them. It is
// pre-allocated again if the file system has the space; if not, writes
// extend it, and a write refused for lack of space is handled like any
// other (space.go).
func (f *File) reopen(id uint64) error {
	s := f.segs[id]
	path := f.segPath(id)
	h, err := readPrefix(f.fs, path, headerSize)
	if err != nil {
		return err
	}
	if hdr, err := readHeader(h); err != nil || hdr.state != headerOK || hdr.id != id || hdr.version != formatVersion {
		return fmt.Errorf("persistence: segment %s: not appendable (header %q, segment %d, version %d): %v",
			path, hdr.why, hdr.id, hdr.version, err)
	}
	sf, err := f.fs.OpenFile(path)
	if err != nil {
		return fmt.Errorf("persistence: %w", err)
	}
	size, err := sf.Size()
	if err == nil && size != s.size {
		err = fmt.Errorf("persistence: segment %s: %d bytes after its data", path, size-s.size)
	}
	if err == nil {
		if aerr := sf.Allocate(f.cfg.SegmentSize); aerr != nil {
			if !noSpace(aerr) {
				err = fmt.Errorf("persistence: pre-allocate %s: %w", path, aerr)
			} else {
				f.log.Warn("journal: no space to pre-allocate the active segment", "file", path, "err", aerr)
			}
		}
	}
	if err != nil {
		sf.Close()
		return err
	}
	f.active, f.activeID, f.offset, f.dirty = sf, id, s.size, false
	f.smu.Lock()
	s.sealed = false
	f.smu.Unlock()
	return nil
}
