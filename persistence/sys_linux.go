//go:build linux

package persistence

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// preallocate reserves size bytes for a new segment with fallocate, so
// that appends do not extend the file; file systems without it get a
// sparse file of the same size. Either way the unwritten tail reads as
// zeros, which the reader takes as the end of the data.
func preallocate(fh *os.File, size int64) error {
	err := syscall.Fallocate(int(fh.Fd()), 0, 0, size)
	if errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.ENOSYS) || errors.Is(err, syscall.EINVAL) {
		err = fh.Truncate(size)
	}
	return err
}

// datasync is fdatasync: the data and the metadata needed to read it back
// (size, allocation), not timestamps.
func datasync(fh *os.File) error {
	for {
		err := syscall.Fdatasync(int(fh.Fd()))
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// lockDir takes an exclusive lock on dir/LOCK, so that two processes
// never write one journal. The lock goes with the returned file.
func lockDir(dir string) (*os.File, error) {
	fh, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("persistence: %w", err)
	}
	if err := syscall.Flock(int(fh.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		fh.Close()
		return nil, fmt.Errorf("persistence: journal %s is in use by another process: %w", dir, err)
	}
	return fh, nil
}

// freeBytes is the space unprivileged writes may use on dir's filesystem.
func freeBytes(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("persistence: statfs %s: %w", dir, err)
	}
	return st.Bavail * uint64(st.Bsize), nil
}
