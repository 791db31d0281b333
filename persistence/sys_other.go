//go:build !linux

package persistence

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
)

// preallocate extends a new segment to size; the unwritten tail reads as
// zeros, which the reader takes as the end of the data.
func preallocate(fh *os.File, size int64) error { return fh.Truncate(size) }

// datasync is fsync.
func datasync(fh *os.File) error { return fh.Sync() }

// lockDir opens dir/LOCK; other systems get no lock.
func lockDir(dir string) (*os.File, error) {
	fh, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("persistence: %w", err)
	}
	return fh, nil
}

// freeBytes is not known on other systems: no limit applies.
func freeBytes(string) (uint64, error) { return math.MaxUint64, nil }
