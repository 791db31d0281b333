package persistence

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/persistence/journaltest"
)

// writeJournal opens a File in dir, makes one Append per element of
// appends, and closes it.
func writeJournal(t testing.TB, dir string, cfg Config, appends ...[]broker.JournalRecord) {
	t.Helper()
	f := open(t, dir, cfg)
	for _, recs := range appends {
		mustAppend(t, f, recs...)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// recordOffsets are the offsets of the good records of a segment file.
func recordOffsets(t testing.TB, path string) []int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var offs []int
	scan(data, func(off int, _ byte, _ []byte) error {
		offs = append(offs, off)
		return nil
	})
	return offs
}

func enqueues(queue string, from, to int) []broker.JournalRecord {
	var recs []broker.JournalRecord
	for i := from; i < to; i++ {
		recs = append(recs, journaltest.Enqueue(queue, journaltest.Message(i)))
	}
	return recs
}

func each(recs []broker.JournalRecord) [][]broker.JournalRecord {
	out := make([][]broker.JournalRecord, len(recs))
	for i := range recs {
		out[i] = recs[i : i+1]
	}
	return out
}

// TestTornTailEveryOffset cuts the journal at every offset inside its last
// record, which is one Append of two records (a batch): replay gives all
// the records before it, none of it, no error and no corruption count; the
// segment is truncated at the record; Append and reopen work after. The
// cut is tried as a short file and as a pre-allocated one (zeros after
// the cut).
func TestTornTailEveryOffset(t *testing.T) {
	src := t.TempDir()
	before := enqueues("/queue/torn", 0, 6)
	last := enqueues("/queue/torn", 10, 12)
	writeJournal(t, src, Config{}, append(each(before), last)...)
	path := filepath.Join(src, segmentName(1))
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	offs := recordOffsets(t, path)
	lastStart := offs[len(offs)-1]
	after := journaltest.Enqueue("/queue/torn", journaltest.Message(99))
	for _, prealloc := range []bool{false, true} {
		for cut := lastStart; cut < len(orig); cut++ {
			if prealloc && allZero(orig[cut:]) {
				continue // the zeros are the record's own last bytes: not torn
			}
			dir := t.TempDir()
			data := bytes.Clone(orig[:cut])
			if prealloc {
				data = append(data, make([]byte, 4096)...)
			}
			if err := os.WriteFile(filepath.Join(dir, segmentName(1)), data, 0o640); err != nil {
				t.Fatal(err)
			}
			quiet := Config{Logger: slog.New(slog.DiscardHandler)}
			f := open(t, dir, quiet)
			journaltest.Expect(t, replay(t, f), before)
			if n := f.CorruptRecords(); n != 0 {
				t.Fatalf("cut at %d (prealloc %v): %d corrupt records, want 0 for a torn tail", cut, prealloc, n)
			}
			if st, err := os.Stat(filepath.Join(dir, segmentName(1))); err != nil || st.Size() != int64(lastStart) {
				t.Fatalf("cut at %d (prealloc %v): segment not truncated to %d: %v %v", cut, prealloc, lastStart, st.Size(), err)
			}
			mustAppend(t, f, after)
			f.Close()
			f = open(t, dir, quiet)
			journaltest.Expect(t, replay(t, f), append(slices.Clone(before), after))
			f.Close()
		}
	}
}

// TestCorruptMiddleRecord flips bytes of a record in the middle: it is
// skipped, counted and logged; the records after it survive, also after
// more appends and a reopen.
func TestCorruptMiddleRecord(t *testing.T) {
	recs := enqueues("/queue/mid", 0, 10)
	for _, where := range []struct {
		name string
		at   func(off, next int) int
	}{
		{"crc", func(off, _ int) int { return off + 5 }},
		{"type", func(off, _ int) int { return off + frameHeader }},
		{"payload", func(off, next int) int { return (off + next) / 2 }},
		{"last-byte", func(_, next int) int { return next - 1 }},
	} {
		t.Run(where.name, func(t *testing.T) {
			dir := t.TempDir()
			writeJournal(t, dir, Config{}, each(recs)...)
			path := filepath.Join(dir, segmentName(1))
			offs := recordOffsets(t, path)
			data, _ := os.ReadFile(path)
			data[where.at(offs[4], offs[5])] ^= 0x5a
			os.WriteFile(path, data, 0o640)

			var logs syncBuffer
			f := open(t, dir, Config{Logger: testLogger(t, &logs)})
			want := append(slices.Clone(recs[:4]), recs[5:]...)
			journaltest.Expect(t, replay(t, f), want)
			if n := f.CorruptRecords(); n != 1 {
				t.Fatalf("CorruptRecords = %d, want 1", n)
			}
			if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "corrupt") {
				t.Fatalf("no error logged for the corrupt record:\n%s", logs.String())
			}
			extra := journaltest.Enqueue("/queue/mid", journaltest.Message(50))
			mustAppend(t, f, extra)
			f.Close()
			f = open(t, dir, Config{})
			journaltest.Expect(t, replay(t, f), append(want, extra))
			if n := f.CorruptRecords(); n != 1 {
				t.Fatalf("after reopen: CorruptRecords = %d, want 1", n)
			}
		})
	}
}

// TestCorruptTailOfOlderSegment: bad bytes at the end of a segment that is
// not the newest are corruption, not a torn write: counted, and the file
// is left as it is.
func TestCorruptTailOfOlderSegment(t *testing.T) {
	dir := t.TempDir()
	first, second := enqueues("/queue/old", 0, 4), enqueues("/queue/old", 4, 8)
	writeJournal(t, dir, Config{}, each(first)...)
	writeJournal(t, dir, Config{}, each(second)...)
	path := filepath.Join(dir, segmentName(1))
	offs := recordOffsets(t, path)
	data, _ := os.ReadFile(path)
	data[offs[3]+12] ^= 0xff
	os.WriteFile(path, data, 0o640)

	f := open(t, dir, Config{})
	journaltest.Expect(t, replay(t, f), append(slices.Clone(first[:3]), second...))
	if n := f.CorruptRecords(); n != 1 {
		t.Fatalf("CorruptRecords = %d, want 1", n)
	}
	if st, _ := os.Stat(path); st.Size() != int64(len(data)) {
		t.Fatalf("older segment truncated to %d", st.Size())
	}
}

func TestZeroLengthSegment(t *testing.T) {
	recs := enqueues("/queue/z", 0, 3)
	for _, name := range []string{"newest", "only", "oldest"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			var want []broker.JournalRecord
			empty := segmentName(5)
			switch name {
			case "newest":
				writeJournal(t, dir, Config{}, each(recs)...)
				want = recs
			case "oldest":
				empty = segmentName(1)
				os.WriteFile(filepath.Join(dir, empty), nil, 0o640)
				writeJournal(t, dir, Config{}, each(recs)...) // in segment 2
				want = recs
			}
			os.WriteFile(filepath.Join(dir, empty), nil, 0o640)
			f := open(t, dir, Config{})
			journaltest.Expect(t, replay(t, f), want)
			if n := f.CorruptRecords(); n != 0 {
				t.Fatalf("CorruptRecords = %d", n)
			}
			f.compactSync()
			if _, err := os.Stat(filepath.Join(dir, empty)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("empty segment not deleted: %v", err)
			}
			extra := journaltest.Enqueue("/queue/z", journaltest.Message(9))
			mustAppend(t, f, extra)
			f.Close()
			journaltest.Expect(t, replay(t, open(t, dir, Config{})), append(slices.Clone(want), extra))
		})
	}
}

func TestGarbageSegment(t *testing.T) {
	dir := t.TempDir()
	recs := enqueues("/queue/g", 0, 3)
	writeJournal(t, dir, Config{}, each(recs)...)
	garbage := filepath.Join(dir, segmentName(2))
	junk := bytes.Repeat([]byte("this is not a journal segment\x00\xff"), 40)
	os.WriteFile(garbage, junk, 0o640)

	var logs syncBuffer
	f := open(t, dir, Config{Logger: testLogger(t, &logs)})
	journaltest.Expect(t, replay(t, f), recs)
	if n := f.Stats().CorruptSegments; n != 1 {
		t.Fatalf("CorruptSegments = %d, want 1", n)
	}
	if !strings.Contains(logs.String(), "not a segment") {
		t.Fatalf("garbage segment not logged:\n%s", logs.String())
	}
	extra := journaltest.Enqueue("/queue/g", journaltest.Message(7))
	mustAppend(t, f, extra) // goes to segment 3
	f.Close()
	if got, _ := os.ReadFile(garbage); !bytes.Equal(got, junk) {
		t.Fatal("garbage segment was modified")
	}
	journaltest.Expect(t, replay(t, open(t, dir, Config{})), append(slices.Clone(recs), extra))
}

func TestUnsupportedVersion(t *testing.T) {
	dir := t.TempDir()
	h := appendHeader(nil, 1)
	le.PutUint16(h[8:], formatVersion+1)
	le.PutUint32(h[20:], checksum(h[:20]))
	os.WriteFile(filepath.Join(dir, segmentName(1)), h, 0o640)
	if f, err := Open(dir, Config{Logger: testLogger(t, nil)}); !errors.Is(err, ErrUnsupportedVersion) {
		if f != nil {
			f.Close()
		}
		t.Fatalf("Open of a newer format: %v, want ErrUnsupportedVersion", err)
	}
}
