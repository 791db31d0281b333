package persistence

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for the zero fields of Config.
const (
	DefaultSegmentSize  = 64 << 20
	DefaultSyncInterval = 100 * time.Millisecond
	DefaultCompactBelow = 0.25
	// DefaultMinFree is the free space under which a journal without a
	// disk budget stops taking new persistent messages (Config.MinFree):
	// room for the operating system, logs and an operator's shell, as
	// RabbitMQ's default disk_free_limit of 50 MB leaves.
	DefaultMinFree = 50 << 20
	// MinSegmentSize is the smallest segment size Open accepts; small
	// segments are for tests, production wants the default.
	MinSegmentSize = 256
	// MaxRecordSize bounds one Append: its records, framed, must fit in
	// MaxRecordSize bytes.
	MaxRecordSize = 1 << 30
)

// SyncPolicy says when Append returns relative to fsync.
type SyncPolicy uint8

// The sync policies. The zero value is SyncAlways.
const (
	// SyncAlways: Append returns after the records are written and
	// fsynced. Concurrent Appends share one fsync (group commit).
	SyncAlways SyncPolicy = iota
	// SyncInterval: Append returns after the write; the journal fsyncs
	// every Config.SyncInterval. A crash of the process loses nothing; a
	// crash of the machine loses at most the last interval.
	SyncInterval
	// SyncNever: Append returns after the write; the operating system
	// decides when the data reaches the disk.
	SyncNever
)

// String names the policy as ParseSyncPolicy reads it.
func (p SyncPolicy) String() string {
	switch p {
	case SyncAlways:
		return "always"
	case SyncInterval:
		return "interval"
	case SyncNever:
		return "never"
	}
	return fmt.Sprintf("SyncPolicy(%d)", uint8(p))
}

// ParseSyncPolicy reads "always", "interval" or "never".
func ParseSyncPolicy(s string) (SyncPolicy, error) {
	switch s {
	case "always":
		return SyncAlways, nil
	case "interval":
		return SyncInterval, nil
	case "never":
		return SyncNever, nil
	}
	return 0, fmt.Errorf("persistence: unknown sync policy %q (want always, interval or never)", s)
}

// Config configures a File. The zero value is usable: 64 MiB segments,
// sync always, no disk budget, compaction below 25% live.
type Config struct {
	// SegmentSize is the size a segment is pre-allocated to; a segment is
	// sealed once the next Append does not fit. Default 64 MiB. With a
	// MaxBytes budget, segments are at most a quarter of it, so that
	// compaction can always free whole segments.
	SegmentSize int64
	// Sync is when Append returns relative to fsync. Default SyncAlways.
	Sync SyncPolicy
	// SyncInterval is the fsync period of SyncInterval. Default 100 ms.
	SyncInterval time.Duration
	// MaxBytes is the disk budget: the bytes of all segments' data (file
	// headers and records, not the unwritten pre-allocated tail of the
	// active segment). An Append that would go past it fails with an
	// error wrapping broker.ErrJournalFull. 0 means no budget.
	MaxBytes int64
	// MinFree applies when MaxBytes is 0: once the file system holding
	// the journal has less than MinFree bytes free, Appends that add
	// enqueues or durable creates fail with an error wrapping
	// broker.ErrJournalFull (flow control for persistent producers) until
	// space frees; removals are still taken. Free space is read at most
	// every 100 ms and at each rotation. Default DefaultMinFree; negative
	// means no check.
	MinFree int64
	// CompactBelow is the live fraction under which a sealed segment is
	// rewritten: its live records are appended again and it is deleted.
	// Default 0.25; a negative value disables rewriting (segments with no
	// live record are still deleted), and with it the disk bound: the
	// oldest segment is also rewritten whenever the sealed segments hold
	// more than twice the live bytes plus a segment (docs/persistence.md,
	// "Disk bound").
	CompactBelow float64
	// Logger receives recovery and I/O errors. Default slog.Default().
	Logger *slog.Logger
	// Registerer, when set, gets the journal's metrics: append and fsync
	// latency histograms, size, budget and counters. Default: none.
	Registerer prometheus.Registerer
}

// withDefaults fills the zero fields and checks the rest.
func (c Config) withDefaults() (Config, error) {
	if c.SegmentSize == 0 {
		c.SegmentSize = DefaultSegmentSize
	}
	if c.SyncInterval == 0 {
		c.SyncInterval = DefaultSyncInterval
	}
	if c.CompactBelow == 0 {
		c.CompactBelow = DefaultCompactBelow
	}
	if c.MinFree == 0 {
		c.MinFree = DefaultMinFree
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	switch {
	case c.SegmentSize < MinSegmentSize:
		return c, fmt.Errorf("persistence: segment size %d is below the minimum %d", c.SegmentSize, MinSegmentSize)
	case c.Sync > SyncNever:
		return c, fmt.Errorf("persistence: unknown sync policy %d", c.Sync)
	case c.SyncInterval < 0:
		return c, fmt.Errorf("persistence: negative sync interval %v", c.SyncInterval)
	case c.MaxBytes < 0:
		return c, fmt.Errorf("persistence: negative disk budget %d", c.MaxBytes)
	case c.CompactBelow >= 1:
		return c, fmt.Errorf("persistence: compact-below %v must be below 1", c.CompactBelow)
	}
	if c.MaxBytes > 0 && c.SegmentSize > c.MaxBytes/4 {
		c.SegmentSize = max(c.MaxBytes/4, MinSegmentSize)
	}
	return c, nil
}

// Errors of package persistence. I/O failures are returned wrapped, with
// the operation and file in the message.
var (
	// ErrClosed is returned by Append after Close.
	ErrClosed = errors.New("persistence: journal closed")
	// ErrInvalidRecord is returned (wrapped) by Append for a record it
	// cannot encode: an unknown op, an enqueue without a message, or
	// records too large for one Append.
	ErrInvalidRecord = errors.New("persistence: invalid record")
	// ErrUnsupportedVersion is returned (wrapped) by Open for a segment
	// written by a newer format version: skipping it would lose data.
	ErrUnsupportedVersion = errors.New("persistence: unsupported segment format version")
)
