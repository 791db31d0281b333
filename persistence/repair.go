package persistence

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/stompbox/stompbox/broker"
)

// Repair repairs the journal in dir offline, with the rules recovery
// follows (docs/persistence.md, "Corruption"), so that the next start
// finds nothing to read around: the bytes of every damaged range, damaged
// header and unreadable tail are kept in the damaged/ directory, and each
// damaged segment is rewritten with its good records only (same segment
// number, same sequence numbers, the current format), atomically: the new
// file is fsynced and renamed over the old one. A file that is not a
// segment is moved into damaged/. Repair takes the journal's lock, so it
// fails while a broker uses the journal, and it refuses a journal a newer
// version wrote. It returns the report of the journal after the repair.
func Repair(dir string, log *slog.Logger) (Report, error) { return repair(osFS{}, dir, log) }

// frameRef is one good record of a segment: its type and payload.
type frameRef struct {
	typ     byte
	payload []byte
}

func repair(fsys fileSystem, dir string, log *slog.Logger) (Report, error) {
	if log == nil {
		log = slog.Default()
	}
	lock, err := fsys.Lock(dir)
	if err != nil {
		return Report{}, err
	}
	defer lock.Close()
	good := map[uint64][]frameRef{}
	segs, err := inspect(fsys, dir, func(seg *inspected, _ int, typ byte, payload []byte, _ []view) {
		good[seg.id] = append(good[seg.id], frameRef{typ, payload})
	})
	if err != nil {
		return Report{}, err
	}
	for _, s := range segs {
		if s.res.newer != nil {
			return Report{}, fmt.Errorf("%w: %s: %w; not repaired", ErrNewerJournal, s.rep.Name, s.res.newer)
		}
	}
	for _, s := range segs {
		if err := repairSegment(fsys, dir, s, good[s.id], log); err != nil {
			return Report{}, err
		}
	}
	return check(fsys, dir)
}

// repairSegment repairs one segment, if it needs it.
func repairSegment(fsys fileSystem, dir string, s *inspected, frames []frameRef, log *slog.Logger) error {
	path := filepath.Join(dir, s.rep.Name)
	res := &s.res
	if s.rep.NotSegment {
		aside := filepath.Join(dir, damageDirName, s.rep.Name)
		if err := fsys.MkdirAll(filepath.Join(dir, damageDirName)); err != nil {
			return err
		}
		if err := fsys.Rename(path, aside); err != nil {
			return fmt.Errorf("persistence: move %s aside: %w", path, err)
		}
		if err := errors.Join(fsys.SyncDir(filepath.Join(dir, damageDirName)), fsys.SyncDir(dir)); err != nil {
			return err
		}
		log.Warn("journal repair: not a segment; moved aside", "file", path, "to", aside)
		return nil
	}
	if res.header.state == headerEmpty {
		return nil // recovery deletes it
	}
	bad := damagedSpans(res)
	if len(bad) == 0 {
		return nil
	}
	for _, r := range bad {
		if err := keepAside(fsys, dir, s.id, r, s.data[r.start:r.end]); err != nil {
			return err
		}
	}
	data := appendHeader(nil, s.id)
	for _, fr := range frames {
		data = appendFrame(data, broker.JournalOp(fr.typ), fr.payload)
	}
	if err := writeFileAtomic(fsys, path, data); err != nil {
		return fmt.Errorf("persistence: repair: %w", err)
	}
	log.Warn("journal repair: segment rewritten with its good records; the damaged bytes are kept aside",
		"file", path, "records", len(frames), "damaged_ranges", len(bad), "kept_in", filepath.Join(dir, damageDirName))
	return nil
}

// damagedSpans lists the ranges of a scanned segment that repair keeps aside
// and drops: a damaged header, corrupt ranges and the unreadable tail.
func damagedSpans(res *scanResult) []span {
	var out []span
	if res.header.state == headerDamaged {
		out = append(out, span{0, headerSize})
	}
	out = append(out, res.damaged...)
	if res.tail.len() > 0 {
		out = append(out, res.tail)
	}
	return out
}
