package persistence

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
)

// damageDirName is the directory, inside the journal's, where recovery
// and repair keep the bytes of damaged ranges before reading around or
// cutting them: nothing is ever cut without a copy.
const damageDirName = "damaged"

// damageReport is what recovery found damaged, for logs, metrics and
// /readyz. Written only by Open (before any other goroutine starts).
type damageReport struct {
	ranges int   // damaged ranges and headers read around or kept in place
	bytes  int64 // their bytes
}

func (f *File) damageDir() string { return filepath.Join(f.dir, damageDirName) }

// noteDamage records a damaged range of segment id that stays in place
// and keeps a copy of its bytes aside. A failed copy is logged: the
// range is still in the segment.
func (f *File) noteDamage(id uint64, r span, b []byte, what string) {
	f.damage.ranges++
	f.damage.bytes += int64(r.len())
	if err := f.keepAside(id, r, b); err != nil {
		f.log.Error("journal: damaged bytes could not be copied aside; they stay in the segment",
			"file", f.segPath(id), "offset", r.start, "bytes", r.len(), "what", what, "err", err)
	}
}

// keepAside keeps the bytes b of range r of segment id aside (keepAside).
func (f *File) keepAside(id uint64, r span, b []byte) error {
	return keepAside(f.fs, f.dir, id, r, b)
}

// keepAside writes want, the bytes of range r of segment id, to the damage directory of the
// journal in dir as <segment>.<start>-<end>, durably: written to a
// temporary file, fsynced, renamed, the directory fsynced, so that a crash
// never leaves a partial copy under the final name. A file of that name
// with the same bytes (an earlier start kept the same range) is the copy;
// one with other bytes gets a numbered sibling.
func keepAside(fsys fileSystem, dir string, id uint64, r span, want []byte) error {
	dir = filepath.Join(dir, damageDirName)
	if err := fsys.MkdirAll(dir); err != nil {
		return err
	}
	base := filepath.Join(dir, fmt.Sprintf("%s.%d-%d", segmentName(id), r.start, r.end))
	path := base
	for n := 1; ; n++ {
		have, err := readFile(fsys, path)
		if errors.Is(err, fs.ErrNotExist) {
			break
		}
		if err != nil {
			return fmt.Errorf("persistence: keep damaged bytes: %w", err)
		}
		if bytes.Equal(have, want) {
			return nil
		}
		if n > maxAsideCopies {
			return fmt.Errorf("persistence: keep damaged bytes: %d different copies of %s already", maxAsideCopies, base)
		}
		path = fmt.Sprintf("%s.%d", base, n)
	}
	if err := writeFileAtomic(fsys, path, want); err != nil {
		return fmt.Errorf("persistence: keep damaged bytes: %w", err)
	}
	return nil
}

// maxAsideCopies bounds the copies of one range with different bytes.
const maxAsideCopies = 100

// Damage describes the damage recovery read around at Open ("" if none):
// the journal works, and every good record was recovered, but an operator
// should look (docs/persistence.md, "Corruption"; `stompbox journal
// check`).
func (f *File) Damage() string {
	if f.damage.ranges == 0 {
		return ""
	}
	return fmt.Sprintf("journal recovered around %d damaged range(s), %d bytes, copied to %s; run `stompbox journal check`",
		f.damage.ranges, f.damage.bytes, f.damageDir())
}
