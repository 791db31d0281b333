package persistence

import (
	"bytes"
	"io"
	"io/fs"
	"slices"
)

// crashHandle is an open file of a crashFS. Like a Unix file descriptor
// it keeps working on its file after the name is removed.
type crashHandle struct {
	c      *crashFS
	n      *crashNode
	name   string
	closed bool // guarded by c.mu
}

// op counts an operation on h; the caller holds c.mu.
func (h *crashHandle) opLocked(op string) error {
	if h.closed {
		return pathErr(op, h.name, fs.ErrClosed)
	}
	if err := h.c.opLocked(); err != nil {
		return pathErr(op, h.name, err)
	}
	return nil
}

func (h *crashHandle) WriteAt(b []byte, off int64) (int, error) {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	if err := h.opLocked("write"); err != nil {
		return 0, err
	}
	h.n.data = writeAt(h.n.data, b, off)
	h.n.pending = append(h.n.pending, crashWrite{off: off, data: slices.Clone(b)})
	h.c.last = h.n
	return len(b), nil
}

func (h *crashHandle) ReadAt(b []byte, off int64) (int, error) {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	if err := h.opLocked("read"); err != nil {
		return 0, err
	}
	if off >= int64(len(h.n.data)) {
		return 0, io.EOF
	}
	n := copy(b, h.n.data[off:])
	if n < len(b) {
		return n, io.EOF
	}
	return n, nil
}

func (h *crashHandle) Datasync() error {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	if err := h.opLocked("fdatasync"); err != nil {
		return err
	}
	h.n.synced = slices.Clone(h.n.data)
	h.n.pending = nil
	return nil
}

func (h *crashHandle) setSize(op string, size int64, grow bool) error {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	if err := h.opLocked(op); err != nil {
		return err
	}
	if grow && size <= int64(len(h.n.data)) {
		return nil // fallocate never shrinks
	}
	h.n.data = resize(h.n.data, size)
	h.n.pending = append(h.n.pending, crashWrite{size: size})
	h.c.last = h.n
	return nil
}

func (h *crashHandle) Allocate(size int64) error { return h.setSize("fallocate", size, true) }
func (h *crashHandle) Truncate(size int64) error { return h.setSize("truncate", size, false) }

func (h *crashHandle) Size() (int64, error) {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	if err := h.opLocked("stat"); err != nil {
		return 0, err
	}
	return int64(len(h.n.data)), nil
}

func (h *crashHandle) Close() error {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	if h.closed {
		return pathErr("close", h.name, fs.ErrClosed)
	}
	h.closed = true
	if h.c.dead {
		return pathErr("close", h.name, errCrashed)
	}
	return nil
}

func (h *crashHandle) Name() string { return h.name }

// crashReader reads a copy of a file taken at Open; it fails once the fs
// is dead.
type crashReader struct {
	c *crashFS
	r *bytes.Reader
}

func (r *crashReader) Read(b []byte) (int, error) {
	r.c.mu.Lock()
	err := r.c.opLocked()
	r.c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return r.r.Read(b)
}

func (r *crashReader) Close() error { return nil }
