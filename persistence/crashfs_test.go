package persistence

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// crashFS is an in-memory fileSystem that can simulate a machine crash:
// the page cache is lost, the disk keeps what was made durable. A file's
// data is durable up to its last Datasync; a directory entry (create,
// remove, rename) only once its directory has been synced. Crash returns
// the file system a reboot would find.
//
// A crashFS can also die on its own after a number of operations
// (dieAfter): from then on every operation fails with EIO and changes
// nothing, so whatever the journal was doing (a rotation, a compaction,
// an fsync) stops exactly there, and Crash takes the durable state of that
// moment. All methods are safe for concurrent use.
type crashFS struct {
	mu      sync.Mutex
	files   map[string]*crashNode // the namespace as the running system sees it
	durable map[string]*crashNode // the namespace on disk: as of each directory's last SyncDir
	locks   map[string]bool
	renames map[string]string // to -> from, since the last sync of their directory: atomic in a crash
	dead    bool
	ops     int // operations so far
	dieAt   int // the operation that kills the fs; 0: never
	last    *crashNode
}

// crashNode is one file: what a Datasync made durable and what was
// written since, as the list of operations since that Datasync.
type crashNode struct {
	data    []byte
	synced  []byte
	pending []crashWrite
}

// crashWrite is one unsynced change: bytes written at off, or (data nil)
// the size set to size by Truncate or Allocate.
type crashWrite struct {
	off  int64
	data []byte
	size int64
}

// errCrashed is what every operation of a dead crashFS returns.
var errCrashed = fmt.Errorf("crashfs: the machine crashed: %w", syscall.EIO)

func newCrashFS() *crashFS {
	return &crashFS{files: map[string]*crashNode{}, durable: map[string]*crashNode{}, locks: map[string]bool{}, renames: map[string]string{}}
}

// dieAfter makes the fs die at its n-th operation from now (n >= 1).
func (c *crashFS) dieAfter(n int) {
	c.mu.Lock()
	c.dieAt = c.ops + n
	c.mu.Unlock()
}

// dying reports whether the fs is set to die (dieAfter) and has not yet.
func (c *crashFS) dying() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dieAt > c.ops
}

// isDead reports whether the fs has died (dieAfter or Crash).
func (c *crashFS) isDead() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dead
}

// opLocked counts one operation and reports whether the fs is dead.
func (c *crashFS) opLocked() error {
	c.ops++
	if c.dieAt != 0 && c.ops >= c.dieAt {
		c.dead = true
	}
	if c.dead {
		return errCrashed
	}
	return nil
}

// tornMode says what Crash does with what was never made durable.
type tornMode uint8

const (
	// tornNone: only what was fsynced survives.
	tornNone tornMode = iota
	// tornWrites: each directory entry changed since its directory's last
	// sync (a create, a remove, a rename) reached the disk or not, at
	// random and in no particular order, as POSIX allows; and the last
	// written file keeps a random prefix of its unsynced writes, each
	// whole (a record or a group of them).
	tornWrites
	// tornBytes: as tornWrites, and the last kept write is cut at a
	// random byte.
	tornBytes
)

func (m tornMode) String() string { return [...]string{"clean", "torn-writes", "torn-bytes"}[m] }

// Crash kills c and returns the file system found after a reboot: the
// durable namespace, each file with its fsynced bytes, and for mode other
// than tornNone part of what was not durable yet.
func (c *crashFS) Crash(mode tornMode, rng *rand.Rand) *crashFS {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dead = true
	entries := maps.Clone(c.durable)
	if mode != tornNone {
		var changed []string
		for path, n := range c.files {
			if c.durable[path] != n {
				changed = append(changed, path)
			}
		}
		for path := range c.durable {
			if c.files[path] == nil {
				changed = append(changed, path)
			}
		}
		slices.Sort(changed) // map order is not seeded
		reached := map[string]bool{}
		for _, path := range changed {
			reached[path] = rng.IntN(2) == 0
		}
		for to, from := range c.renames {
			reached[from] = reached[to] // a rename is atomic: one name or the other
		}
		for _, path := range changed {
			if !reached[path] {
				continue
			}
			if n := c.files[path]; n != nil {
				entries[path] = n
			} else {
				delete(entries, path)
			}
		}
	}
	next := newCrashFS()
	for path, n := range entries {
		data := slices.Clone(n.synced)
		if n == c.last && mode != tornNone && len(n.pending) > 0 {
			keep := rng.IntN(len(n.pending) + 1)
			for i, w := range n.pending[:keep] {
				if w.data == nil {
					data = resize(data, w.size)
					continue
				}
				b := w.data
				if mode == tornBytes && i == keep-1 {
					b = b[:rng.IntN(len(b)+1)]
				}
				data = writeAt(data, b, w.off)
			}
		}
		next.files[path] = &crashNode{data: data, synced: slices.Clone(data)}
		next.durable[path] = next.files[path]
	}
	return next
}

// processRestart returns the file system a new process finds after this
// one died: everything written is there (the kernel still has it, and
// will write it back), fsynced or not. c itself is left as it is.
func (c *crashFS) processRestart() *crashFS {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.processRestartLocked()
}

// processCrash kills the process using c (every later operation of c
// fails) and returns processRestart's file system.
func (c *crashFS) processCrash() *crashFS {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dead = true
	return c.processRestartLocked()
}

func (c *crashFS) processRestartLocked() *crashFS {
	next := newCrashFS()
	for path, n := range c.files {
		next.files[path] = &crashNode{data: slices.Clone(n.data), synced: slices.Clone(n.data)}
		next.durable[path] = next.files[path]
	}
	return next
}

func resize(b []byte, size int64) []byte {
	if int64(len(b)) >= size {
		return b[:size]
	}
	return append(b, make([]byte, size-int64(len(b)))...)
}

func writeAt(data, b []byte, off int64) []byte {
	if end := off + int64(len(b)); end > int64(len(data)) {
		data = resize(data, end)
	}
	copy(data[off:], b)
	return data
}

func pathErr(op, path string, err error) error { return &fs.PathError{Op: op, Path: path, Err: err} }

func (c *crashFS) MkdirAll(string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.opLocked()
}

func (c *crashFS) Lock(dir string) (io.Closer, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.opLocked(); err != nil {
		return nil, err
	}
	if c.locks[dir] {
		return nil, fmt.Errorf("persistence: journal %s is in use: %w", dir, syscall.EWOULDBLOCK)
	}
	c.locks[dir] = true
	return crashLock{c, dir}, nil
}

type crashLock struct {
	c   *crashFS
	dir string
}

// Close releases the lock, even on a dead fs: a lock dies with its process.
func (l crashLock) Close() error {
	l.c.mu.Lock()
	delete(l.c.locks, l.dir)
	l.c.mu.Unlock()
	return nil
}

func (c *crashFS) ReadDir(dir string) ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.opLocked(); err != nil {
		return nil, err
	}
	var names []string
	for path := range c.files {
		if filepath.Dir(path) == dir {
			names = append(names, filepath.Base(path))
		}
	}
	slices.Sort(names)
	return names, nil
}

func (c *crashFS) Create(path string) (segmentFile, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.opLocked(); err != nil {
		return nil, pathErr("create", path, err)
	}
	if c.files[path] != nil {
		return nil, pathErr("create", path, fs.ErrExist)
	}
	n := &crashNode{}
	c.files[path] = n
	return &crashHandle{c: c, n: n, name: path}, nil
}

func (c *crashFS) OpenFile(path string) (segmentFile, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.opLocked(); err != nil {
		return nil, pathErr("open", path, err)
	}
	n := c.files[path]
	if n == nil {
		return nil, pathErr("open", path, fs.ErrNotExist)
	}
	return &crashHandle{c: c, n: n, name: path}, nil
}

func (c *crashFS) Open(path string) (io.ReadCloser, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.opLocked(); err != nil {
		return nil, pathErr("open", path, err)
	}
	n := c.files[path]
	if n == nil {
		return nil, pathErr("open", path, fs.ErrNotExist)
	}
	return &crashReader{c: c, r: bytes.NewReader(slices.Clone(n.data))}, nil
}

func (c *crashFS) Remove(path string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.opLocked(); err != nil {
		return pathErr("remove", path, err)
	}
	if c.files[path] == nil {
		return pathErr("remove", path, fs.ErrNotExist)
	}
	delete(c.files, path)
	return nil
}

func (c *crashFS) Rename(from, to string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.opLocked(); err != nil {
		return &fs.PathError{Op: "rename", Path: from, Err: err}
	}
	n := c.files[from]
	if n == nil {
		return pathErr("rename", from, fs.ErrNotExist)
	}
	delete(c.files, from)
	c.files[to] = n
	c.renames[to] = from
	return nil
}

// SyncDir makes dir's namespace durable: entries created, removed or
// renamed since the last SyncDir.
func (c *crashFS) SyncDir(dir string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.opLocked(); err != nil {
		return pathErr("sync", dir, err)
	}
	for path := range c.durable {
		if filepath.Dir(path) == dir && c.files[path] == nil {
			delete(c.durable, path)
		}
	}
	for path, n := range c.files {
		if filepath.Dir(path) == dir {
			c.durable[path] = n
		}
	}
	for to := range c.renames {
		if filepath.Dir(to) == dir {
			delete(c.renames, to)
		}
	}
	return nil
}

func (c *crashFS) FreeBytes(string) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.opLocked(); err != nil {
		return 0, err
	}
	return 1 << 40, nil
}

// snapshot returns the names and contents of the files in the namespace
// (tests).
func (c *crashFS) snapshot() map[string][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string][]byte{}
	for path, n := range c.files {
		out[filepath.Base(path)] = slices.Clone(n.data)
	}
	return out
}

var (
	_ fileSystem  = (*crashFS)(nil)
	_ segmentFile = (*crashHandle)(nil)
)

// TestCrashFS checks the crash simulation itself: only fsynced data and
// synced directory entries survive a clean crash; a torn crash keeps a
// prefix of the unsynced writes; a dead fs changes nothing.
func TestCrashFS(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	c := newCrashFS()
	a, err := c.Create("/d/a")
	if err != nil {
		t.Fatal(err)
	}
	mustDo := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err = a.WriteAt([]byte("synced"), 0)
	mustDo(err)
	mustDo(a.Datasync())
	mustDo(c.SyncDir("/d"))
	_, err = a.WriteAt([]byte("+lost"), 6)
	mustDo(err)
	b, err := c.Create("/d/b") // fsynced, but its entry never is
	mustDo(err)
	_, err = b.WriteAt([]byte("b"), 0)
	mustDo(err)
	mustDo(b.Datasync())

	got := c.Crash(tornNone, rng).snapshot()
	if len(got) != 1 || string(got["a"]) != "synced" {
		t.Fatalf("after a clean crash: %q, want only a = \"synced\"", got)
	}
	if _, err := a.WriteAt([]byte("x"), 0); !errors.Is(err, syscall.EIO) {
		t.Fatalf("write after the crash: %v, want EIO", err)
	}

	// A removal is durable only once the directory is synced.
	c = newCrashFS()
	f, _ := c.Create("/d/f")
	mustDo(f.Datasync())
	mustDo(c.SyncDir("/d"))
	mustDo(c.Remove("/d/f"))
	if got := c.Crash(tornNone, rng).snapshot(); len(got) != 1 {
		t.Fatalf("an unsynced remove survived a crash: %q", got)
	}

	// The directory lock works in memory, and dies with the process.
	c = newCrashFS()
	lock, err := c.Lock("/d")
	mustDo(err)
	if _, err := c.Lock("/d"); err == nil {
		t.Fatal("a second Lock of a locked directory succeeded")
	}
	if _, err := c.Crash(tornNone, rng).Lock("/d"); err != nil {
		t.Fatalf("Lock after a crash: %v", err)
	}
	mustDo(lock.Close())

	// Torn: a prefix of the unsynced writes, never more, never reordered.
	for range 50 {
		c = newCrashFS()
		f, _ := c.Create("/d/f")
		mustDo(c.SyncDir("/d"))
		for _, s := range []string{"one", "two", "three"} {
			n, _ := f.Size()
			_, err := f.WriteAt([]byte(s), n)
			mustDo(err)
		}
		mode := tornMode(1 + rng.IntN(2))
		got := string(c.Crash(mode, rng).snapshot()["f"])
		if !strings.HasPrefix("onetwothree", got) {
			t.Fatalf("%v crash kept %q: not a prefix of the writes", mode, got)
		}
		if mode == tornWrites && !slices.Contains([]string{"", "one", "onetwo", "onetwothree"}, got) {
			t.Fatalf("%v crash kept %q: not whole writes", mode, got)
		}
	}

	// A dying fs fails its n-th operation and every later one, changing
	// nothing.
	c = newCrashFS()
	c.dieAfter(2)
	f, err = c.Create("/d/f")
	mustDo(err)
	if _, err := f.WriteAt([]byte("x"), 0); !errors.Is(err, syscall.EIO) {
		t.Fatalf("second operation of a fs dying at its second: %v", err)
	}
	if got := c.snapshot(); len(got["f"]) != 0 {
		t.Fatalf("a dead fs changed a file: %q", got)
	}
}
