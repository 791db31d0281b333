package persistence

import "os"

// segmentFile is what the flusher does to a segment it writes: *os.File
// through osSegment in production; tests wrap it to inject write and
// fsync failures (File.wrap).
type segmentFile interface {
	WriteAt(b []byte, off int64) (int, error)
	// Datasync makes the data written so far durable (fdatasync).
	Datasync() error
	Truncate(size int64) error
	Close() error
	Name() string
}

// osSegment is a segment file on disk.
type osSegment struct{ *os.File }

// Datasync implements segmentFile.
func (s osSegment) Datasync() error { return datasync(s.File) }

// wrapOS is the production File.wrap.
func wrapOS(fh *os.File) segmentFile { return osSegment{fh} }
