package persistence

import (
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"sync"
)

// opKind is a kind of file system operation a faultFS can fail.
type opKind uint8

const (
	opCreate   opKind = iota // fileSystem.Create
	opOpen                   // OpenFile and Open
	opRead                   // ReadAt, and Read of a file from Open
	opAllocate               // segmentFile.Allocate
	opWrite                  // segmentFile.WriteAt
	opDatasync               // segmentFile.Datasync
	opTruncate               // segmentFile.Truncate
	opClose                  // segmentFile.Close
	opRemove
	opRename
	opSyncDir
	opReadDir
)

func (k opKind) String() string {
	return [...]string{"create", "open", "read", "allocate", "write", "datasync", "truncate", "close",
		"remove", "rename", "syncdir", "readdir"}[k]
}

// faultRule fails one operation: the nth of its kind on its path (the
// file's base name, "(dir)" for the directory; "" matches every path) since the rule was armed. A
// short write writes the first half of its bytes, then fails.
type faultRule struct {
	kind  opKind
	path  string
	nth   int
	err   error
	short bool

	seen  int
	fired string // the phase it fired in, "" until it has
}

func (r *faultRule) String() string {
	s := fmt.Sprintf("%v #%d of %s: %v", r.kind, r.nth, r.path, r.err)
	if r.short {
		s = "short " + s
	}
	return s
}

// faultOp is one operation a faultFS saw.
type faultOp struct {
	kind opKind
	path string
	nth  int // its number among the operations of its kind on its path
}

// faultFS wraps a fileSystem (osFS or a crashFS) and fails the operation
// its rule names, once: a later operation of the same kind succeeds, as a
// second fsync does on Linux after the kernel dropped the pages that
// failed. It can also record every operation (trace), so that a test can
// fail each step of a run in turn. Safe for concurrent use.
type faultFS struct {
	inner fileSystem

	mu      sync.Mutex
	rule    *faultRule
	phase   string // what the test is doing: recorded with the fault
	tracing bool
	trace   []faultOp
	counts  map[faultOp]int // operations so far by kind and path (nth 0)
}

func newFaultFS(inner fileSystem) *faultFS {
	return &faultFS{inner: inner, counts: map[faultOp]int{}}
}

// arm makes r the rule, and starts counting from here.
func (f *faultFS) arm(r *faultRule) {
	f.mu.Lock()
	f.rule = r
	f.mu.Unlock()
}

func (f *faultFS) setPhase(p string) {
	f.mu.Lock()
	f.phase = p
	f.mu.Unlock()
}

// startTrace records every operation from now on; stopTrace returns them.
func (f *faultFS) startTrace() {
	f.mu.Lock()
	f.tracing, f.trace = true, nil
	clear(f.counts)
	f.mu.Unlock()
}

func (f *faultFS) stopTrace() []faultOp {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tracing = false
	return f.trace
}

// check counts one operation and returns the error it must fail with, if
// the rule names it.
func (f *faultFS) check(kind opKind, path string) (err error, short bool) {
	base := filepath.Base(path)
	if kind == opReadDir || kind == opSyncDir {
		base = "(dir)" // the same in every test's directory
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.tracing {
		k := faultOp{kind: kind, path: base}
		f.counts[k]++
		f.trace = append(f.trace, faultOp{kind: kind, path: base, nth: f.counts[k]})
	}
	r := f.rule
	if r == nil || r.fired != "" || r.kind != kind || (r.path != "" && r.path != base) {
		return nil, false
	}
	r.seen++
	if r.seen != r.nth {
		return nil, false
	}
	r.fired = f.phase
	if r.fired == "" {
		r.fired = "?"
	}
	return &fs.PathError{Op: "injected " + kind.String(), Path: path, Err: r.err}, r.short
}

// fired returns the phase the rule fired in, or "".
func (f *faultFS) fired() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.rule == nil {
		return ""
	}
	return f.rule.fired
}

func (f *faultFS) MkdirAll(dir string) error          { return f.inner.MkdirAll(dir) }
func (f *faultFS) Lock(dir string) (io.Closer, error) { return f.inner.Lock(dir) }

func (f *faultFS) FreeBytes(dir string) (uint64, error) { return f.inner.FreeBytes(dir) }

func (f *faultFS) ReadDir(dir string) ([]string, error) {
	if err, _ := f.check(opReadDir, dir); err != nil {
		return nil, err
	}
	return f.inner.ReadDir(dir)
}

func (f *faultFS) Create(path string) (segmentFile, error) {
	if err, _ := f.check(opCreate, path); err != nil {
		return nil, err
	}
	sf, err := f.inner.Create(path)
	if err != nil {
		return nil, err
	}
	return faultFile{sf, f}, nil
}

func (f *faultFS) OpenFile(path string) (segmentFile, error) {
	if err, _ := f.check(opOpen, path); err != nil {
		return nil, err
	}
	sf, err := f.inner.OpenFile(path)
	if err != nil {
		return nil, err
	}
	return faultFile{sf, f}, nil
}

func (f *faultFS) Open(path string) (io.ReadCloser, error) {
	if err, _ := f.check(opOpen, path); err != nil {
		return nil, err
	}
	rc, err := f.inner.Open(path)
	if err != nil {
		return nil, err
	}
	return faultReader{rc, f, path}, nil
}

func (f *faultFS) Remove(path string) error {
	if err, _ := f.check(opRemove, path); err != nil {
		return err
	}
	return f.inner.Remove(path)
}

func (f *faultFS) Rename(from, to string) error {
	if err, _ := f.check(opRename, from); err != nil {
		return err
	}
	return f.inner.Rename(from, to)
}

func (f *faultFS) SyncDir(dir string) error {
	if err, _ := f.check(opSyncDir, dir); err != nil {
		return err
	}
	return f.inner.SyncDir(dir)
}

// faultFile is a segment file of a faultFS.
type faultFile struct {
	segmentFile
	fs *faultFS
}

func (f faultFile) WriteAt(b []byte, off int64) (int, error) {
	err, short := f.fs.check(opWrite, f.Name())
	switch {
	case err == nil:
		return f.segmentFile.WriteAt(b, off)
	case short:
		n, werr := f.segmentFile.WriteAt(b[:len(b)/2], off)
		if werr != nil {
			return n, werr
		}
		return n, err
	}
	return 0, err
}

func (f faultFile) ReadAt(b []byte, off int64) (int, error) {
	if err, _ := f.fs.check(opRead, f.Name()); err != nil {
		return 0, err
	}
	return f.segmentFile.ReadAt(b, off)
}

func (f faultFile) Datasync() error {
	if err, _ := f.fs.check(opDatasync, f.Name()); err != nil {
		return err
	}
	return f.segmentFile.Datasync()
}

func (f faultFile) Allocate(size int64) error {
	if err, _ := f.fs.check(opAllocate, f.Name()); err != nil {
		return err
	}
	return f.segmentFile.Allocate(size)
}

func (f faultFile) Truncate(size int64) error {
	if err, _ := f.fs.check(opTruncate, f.Name()); err != nil {
		return err
	}
	return f.segmentFile.Truncate(size)
}

// Close closes the file even when it reports a failure, as close(2) does.
func (f faultFile) Close() error {
	err, _ := f.fs.check(opClose, f.Name())
	if cerr := f.segmentFile.Close(); err == nil {
		err = cerr
	}
	return err
}

// faultReader is a file of a faultFS opened for reading.
type faultReader struct {
	io.ReadCloser
	fs   *faultFS
	path string
}

func (r faultReader) Read(b []byte) (int, error) {
	if err, _ := r.fs.check(opRead, r.path); err != nil {
		return 0, err
	}
	return r.ReadCloser.Read(b)
}

var (
	_ fileSystem  = (*faultFS)(nil)
	_ segmentFile = faultFile{}
)
