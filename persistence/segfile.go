package persistence

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// fileSystem is everything the journal does to its directory and files.
// osFS is the real one; tests substitute implementations that inject
// errors (EIO, ENOSPC, short writes) at any step, or that keep only what
// was fsynced to simulate a machine crash. Paths are full paths.
type fileSystem interface {
	MkdirAll(dir string) error
	// Lock takes the directory's exclusive lock; closing the result
	// releases it.
	Lock(dir string) (io.Closer, error)
	// ReadDir lists the names of the regular files in dir.
	ReadDir(dir string) ([]string, error)
	// Create creates a new file, failing if it exists.
	Create(path string) (segmentFile, error)
	// OpenFile opens an existing file for reading and writing.
	OpenFile(path string) (segmentFile, error)
	// Open opens an existing file for reading.
	Open(path string) (io.ReadCloser, error)
	Remove(path string) error
	Rename(from, to string) error
	// SyncDir makes creations, renames and removals in dir durable.
	SyncDir(dir string) error
	// FreeBytes is the space left for unprivileged writes on dir's
	// filesystem.
	FreeBytes(dir string) (uint64, error)
}

// segmentFile is one open file of the journal.
type segmentFile interface {
	WriteAt(b []byte, off int64) (int, error)
	ReadAt(b []byte, off int64) (int, error)
	// Datasync makes the data written so far durable (fdatasync).
	Datasync() error
	// Allocate reserves size bytes for the file (fallocate), so that
	// writes below size do not need new blocks; without support for it
	// the file is extended sparsely. The tail reads as zeros.
	Allocate(size int64) error
	Truncate(size int64) error
	Size() (int64, error)
	Close() error
	Name() string
}

// osFS is the operating system's file system.
type osFS struct{}

func (osFS) MkdirAll(dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("persistence: %w", err)
	}
	return nil
}

func (osFS) Lock(dir string) (io.Closer, error) { return lockDir(dir) }

func (osFS) ReadDir(dir string) ([]string, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("persistence: %w", err)
	}
	names := make([]string, 0, len(des))
	for _, de := range des {
		if de.Type().IsRegular() {
			names = append(names, de.Name())
		}
	}
	return names, nil
}

func (osFS) Create(path string) (segmentFile, error) {
	fh, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return nil, err
	}
	return osFile{fh}, nil
}

func (osFS) OpenFile(path string) (segmentFile, error) {
	fh, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	return osFile{fh}, nil
}

func (osFS) Open(path string) (io.ReadCloser, error) { return os.Open(path) }
func (osFS) Remove(path string) error                { return os.Remove(path) }
func (osFS) Rename(from, to string) error            { return os.Rename(from, to) }
func (osFS) SyncDir(dir string) error                { return syncDir(dir) }
func (osFS) FreeBytes(dir string) (uint64, error)    { return freeBytes(dir) }

// osFile is a file on disk.
type osFile struct{ *os.File }

func (f osFile) Datasync() error           { return datasync(f.File) }
func (f osFile) Allocate(size int64) error { return preallocate(f.File, size) }

func (f osFile) Size() (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// syncDir makes creations and removals in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("persistence: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("persistence: sync directory %s: %w", dir, err)
	}
	return nil
}

// readFile reads a whole file through fsys.
func readFile(fsys fileSystem, path string) ([]byte, error) { return readFileInto(fsys, path, nil) }

// readFileInto reads a whole file through fsys into buf's space (a new
// buffer if it does not fit), so that recovery reuses one buffer for
// every segment instead of leaving one 64 MiB garbage buffer per segment
// for the collector.
func readFileInto(fsys fileSystem, path string, buf []byte) ([]byte, error) {
	fh, err := fsys.Open(path)
	if err != nil {
		return nil, fmt.Errorf("persistence: %w", err)
	}
	defer fh.Close()
	data := buf[:0]
	if st, ok := fh.(interface{ Stat() (fs.FileInfo, error) }); ok {
		// One buffer of the file's size: io.ReadAll would grow (and clear)
		// one 64 MiB segment's buffer many times over.
		if info, err := st.Stat(); err == nil && int64(cap(data)) <= info.Size() {
			data = make([]byte, 0, info.Size()+1)
		}
	}
	for {
		n, err := fh.Read(data[len(data):cap(data)])
		data = data[:len(data)+n]
		if err == io.EOF {
			return data, nil
		}
		if err != nil {
			return nil, fmt.Errorf("persistence: read %s: %w", path, err)
		}
		if len(data) == cap(data) {
			data = append(data, 0)[:len(data)] // grow
		}
	}
}

// readPrefix reads the first size bytes of a file.
func readPrefix(fsys fileSystem, path string, size int64) ([]byte, error) {
	fh, err := fsys.Open(path)
	if err != nil {
		return nil, fmt.Errorf("persistence: %w", err)
	}
	defer fh.Close()
	data := make([]byte, size)
	if _, err := io.ReadFull(fh, data); err != nil {
		return nil, fmt.Errorf("persistence: read %s: %w", path, err)
	}
	return data, nil
}

// writeFileAtomic replaces (or creates) path with data so that a crash
// leaves the old file or the new one, never a mix or a partial file: the
// data goes to path.tmp, is fsynced, renamed over path, and the directory
// is fsynced.
func writeFileAtomic(fsys fileSystem, path string, data []byte) error {
	tmp := path + ".tmp"
	if err := removeIfExists(fsys, tmp); err != nil {
		return err
	}
	fh, err := fsys.Create(tmp)
	if err != nil {
		return err
	}
	_, err = fh.WriteAt(data, 0)
	if err == nil {
		err = fh.Datasync()
	}
	if err = errors.Join(err, fh.Close()); err == nil {
		err = fsys.Rename(tmp, path)
	}
	if err == nil {
		err = fsys.SyncDir(filepath.Dir(path))
	}
	if err != nil {
		_ = fsys.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// removeIfExists removes path; a file already gone is not an error.
func removeIfExists(fsys fileSystem, path string) error {
	if err := fsys.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
