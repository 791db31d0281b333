package persistence

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/frames"
	jt "github.com/stompbox/stompbox/persistence/journaltest"
)

// kib is enqueue i of a 1 KiB message to /queue/d.
func kib(i int) broker.JournalRecord {
	body := bytes.Repeat([]byte{byte('a' + i%26)}, 1024)
	m := broker.RecoveredMessage(fmt.Sprintf("k-%d", i), "/queue/d",
		[]frames.Header{{Key: []byte("destination"), Value: []byte("/queue/d")}}, body, true, 0)
	return jt.Enqueue("/queue/d", m)
}

func kibs(from, to int) []broker.JournalRecord {
	var recs []broker.JournalRecord
	for i := from; i < to; i++ {
		recs = append(recs, kib(i))
	}
	return recs
}

// asideFiles lists the damage directory of a journal.
func asideFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	des, err := os.ReadDir(filepath.Join(dir, damageDirName))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, de := range des {
		data, err := os.ReadFile(filepath.Join(dir, damageDirName, de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[de.Name()] = data
	}
	return out
}

// TestFlippedLengthBitIsNotATornTail is the case: 100 fsynced
// records of 1 KiB in the newest segment, one bit flipped in record 10's
// length. Format version 2 recovered 10 records and cut the file from
// 115 KB to 11 KB as a "torn write". Now only record 10 is lost: it is
// reported as corruption, its bytes are copied aside, and the file keeps
// its size.
func TestFlippedLengthBitIsNotATornTail(t *testing.T) {
	for _, bit := range []uint{0, 7, 13, 22, 31} {
		t.Run(fmt.Sprintf("bit %d", bit), func(t *testing.T) {
			dir := t.TempDir()
			recs := kibs(0, 100)
			writeJournal(t, dir, Config{}, each(recs)...)
			path := filepath.Join(dir, segmentName(1))
			offs := recordOffsets(t, path)
			if len(offs) != 100 {
				t.Fatalf("%d records written, want 100", len(offs))
			}
			data, _ := os.ReadFile(path)
			le.PutUint32(data[offs[10]:], le.Uint32(data[offs[10]:])^1<<bit)
			os.WriteFile(path, data, 0o640)

			var logs syncBuffer
			reg := prometheus.NewRegistry()
			f := open(t, dir, Config{Logger: testLogger(t, &logs), Registerer: reg})
			want := append(slices.Clone(recs[:10]), recs[11:]...)
			if r, b := gaugeValue(t, reg, "stompbox_journal_damaged_ranges"), gaugeValue(t, reg, "stompbox_journal_damaged_bytes"); r != 1 || b != float64(offs[11]-offs[10]) {
				t.Errorf("damaged_ranges %v, damaged_bytes %v; want 1 and %d", r, b, offs[11]-offs[10])
			}
			jt.Expect(t, replay(t, f), want)
			if n := f.CorruptRecords(); n != 1 {
				t.Errorf("CorruptRecords = %d, want 1", n)
			}
			if st, _ := os.Stat(path); st.Size() != int64(len(data)) {
				t.Errorf("segment cut from %d to %d bytes", len(data), st.Size())
			}
			aside := asideFiles(t, dir)
			name := fmt.Sprintf("%s.%d-%d", segmentName(1), offs[10], offs[11])
			if got, ok := aside[name]; !ok || !bytes.Equal(got, data[offs[10]:offs[11]]) {
				t.Errorf("damaged record not kept aside as %s: have %d files", name, len(aside))
			}
			if d := f.Damage(); !strings.Contains(d, "1 damaged range") {
				t.Errorf("Damage() = %q", d)
			}
			if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "corrupt data") {
				t.Errorf("corruption not logged as an error:\n%s", logs.String())
			}
			extra := kib(100)
			mustAppend(t, f, extra)
			f.Close()
			// Reported again at the next start, not copied twice.
			f = open(t, dir, Config{})
			jt.Expect(t, replay(t, f), append(want, extra))
			if n := f.CorruptRecords(); n != 1 || len(asideFiles(t, dir)) != 1 {
				t.Errorf("after a restart: CorruptRecords %d, %d files aside; want 1 and 1", n, len(asideFiles(t, dir)))
			}
			f.Close()
		})
	}
}

// TestDamagedSegmentHeaderKeepsRecords: version 2 skipped a segment whose
// header checksum failed, and with it its removals, so that acknowledged
// messages came back. Now its records are read (and the damage
// reported), so the removals still hold.
func TestDamagedSegmentHeaderKeepsRecords(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(h []byte)
	}{
		{"checksum", func(h []byte) { h[21] ^= 0x40 }},
		{"magic", func(h []byte) { copy(h, "XXXXXXXX") }},
		{"zeros", func(h []byte) { clear(h) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			first := kibs(0, 4)
			writeJournal(t, dir, Config{}, each(first)...) // segment 1
			writeJournal(t, dir, Config{},                 // segment 2: acks of k-0, k-1, and k-4
				[]broker.JournalRecord{jt.Remove(first[0])}, []broker.JournalRecord{jt.Remove(first[1])},
				[]broker.JournalRecord{kib(4)})
			path := filepath.Join(dir, segmentName(2))
			data, _ := os.ReadFile(path)
			tc.damage(data[:headerSize])
			os.WriteFile(path, data, 0o640)

			f := open(t, dir, Config{})
			want := []broker.JournalRecord{first[2], first[3], kib(4)}
			jt.Expect(t, replay(t, f), want)
			if d := f.Damage(); d == "" {
				t.Error("damaged header not reported")
			}
			if _, ok := asideFiles(t, dir)[segmentName(2)+".0-24"]; !ok {
				t.Error("damaged header not kept aside")
			}
			mustAppend(t, f, jt.Remove(first[2]))
			f.compactSync()
			f.Close()
			jt.Expect(t, replay(t, open(t, dir, Config{})), want[1:])
		})
	}
}

// TestTornTailKeptAside: the torn tail of the newest segment is still cut
// (a crash in the middle of a write), but only after its bytes are copied
// aside, and with a warning.
func TestTornTailKeptAside(t *testing.T) {
	dir := t.TempDir()
	recs := kibs(0, 5)
	writeJournal(t, dir, Config{}, each(recs)...)
	path := filepath.Join(dir, segmentName(1))
	offs := recordOffsets(t, path)
	data, _ := os.ReadFile(path)
	torn := data[:offs[4]+300] // the last record half written
	os.WriteFile(path, torn, 0o640)

	var logs syncBuffer
	f := open(t, dir, Config{Logger: testLogger(t, &logs)})
	jt.Expect(t, replay(t, f), recs[:4])
	if n := f.CorruptRecords(); n != 0 || f.Damage() != "" {
		t.Errorf("a torn tail counted as corruption: %d, %q", n, f.Damage())
	}
	if st, _ := os.Stat(path); st.Size() != int64(offs[4]) {
		t.Errorf("segment is %d bytes, want it cut at %d", st.Size(), offs[4])
	}
	name := fmt.Sprintf("%s.%d-%d", segmentName(1), offs[4], len(torn))
	if got := asideFiles(t, dir)[name]; !bytes.Equal(got, torn[offs[4]:]) {
		t.Errorf("torn tail not kept aside as %s", name)
	}
	if !strings.Contains(logs.String(), "torn tail") {
		t.Errorf("torn tail not logged:\n%s", logs.String())
	}
	f.Close()
}

// TestTornTailNotCutWhenItCannotBeKept: if the tail's bytes cannot be
// copied aside (the damage directory cannot be created), the segment is
// left as it is; recovery still works.
func TestTornTailNotCutWhenItCannotBeKept(t *testing.T) {
	dir := t.TempDir()
	recs := kibs(0, 3)
	writeJournal(t, dir, Config{}, each(recs)...)
	path := filepath.Join(dir, segmentName(1))
	offs := recordOffsets(t, path)
	data, _ := os.ReadFile(path)
	torn := data[:offs[2]+100]
	os.WriteFile(path, torn, 0o640)
	os.WriteFile(filepath.Join(dir, damageDirName), []byte("a file where the directory should be"), 0o640)

	f := open(t, dir, Config{})
	jt.Expect(t, replay(t, f), recs[:2])
	if st, _ := os.Stat(path); st.Size() != int64(len(torn)) {
		t.Errorf("segment cut to %d bytes although its tail could not be kept", st.Size())
	}
	f.Close()
}

// TestUnknownRecordTypeIsNewer: a record with good checksums and a type
// this build does not know was written by a newer version: Open refuses
// the journal (skipping it could lose data), it is not corruption.
func TestUnknownRecordTypeIsNewer(t *testing.T) {
	dir := t.TempDir()
	writeJournal(t, dir, Config{}, each(kibs(0, 3))...)
	path := filepath.Join(dir, segmentName(1))
	offs := recordOffsets(t, path)
	data, _ := os.ReadFile(path)
	data[offs[1]+frameHeader] = maxRecordType + 1
	sealFrame(data[offs[1]:])
	os.WriteFile(path, data, 0o640)
	f, err := Open(dir, Config{Logger: testLogger(t, nil)})
	if !errors.Is(err, ErrUnsupportedVersion) || !strings.Contains(fmt.Sprint(err), "newer version") {
		if f != nil {
			f.Close()
		}
		t.Fatalf("Open: %v, want an error wrapping ErrUnsupportedVersion saying a newer version wrote it", err)
	}
}

// TestUnknownHeaderFlags: a header with a flag this build does not know
// was written by a newer version.
func TestUnknownHeaderFlags(t *testing.T) {
	dir := t.TempDir()
	writeJournal(t, dir, Config{}, each(kibs(0, 1))...)
	path := filepath.Join(dir, segmentName(1))
	data, _ := os.ReadFile(path)
	le.PutUint16(data[10:], 1)
	le.PutUint32(data[20:], checksum(data[:20]))
	os.WriteFile(path, data, 0o640)
	if f, err := Open(dir, Config{Logger: testLogger(t, nil)}); !errors.Is(err, ErrUnsupportedVersion) {
		if f != nil {
			f.Close()
		}
		t.Fatalf("Open: %v, want ErrUnsupportedVersion", err)
	}
}

// TestLegacySegmentResync: in a version 2 segment (no header checksum), a
// damaged length is found around too.
func TestLegacySegmentResync(t *testing.T) {
	src := filepath.Join(goldenV2Dir, segmentName(1))
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	var offs []int
	res := scanFrames(data, 2, func(off int, _ byte, _ []byte) error { offs = append(offs, off); return nil })
	if len(offs) < 3 || res.tail.len() != 0 {
		t.Fatalf("golden v2 segment 1: %d records, tail %v", len(offs), res.tail)
	}
	le.PutUint32(data[offs[1]:], le.Uint32(data[offs[1]:])^1<<9)
	var got []int
	res = scan(data, func(off int, _ byte, _ []byte) error { got = append(got, off); return nil })
	want := slices.Delete(slices.Clone(offs), 1, 2)
	if !slices.Equal(got, want) || len(res.damaged) != 1 || res.damaged[0] != (span{offs[1], offs[2]}) {
		t.Fatalf("records at %v, damaged %v; want %v and [%d, %d)", got, res.damaged, want, offs[1], offs[2])
	}
}

// openCountingFS counts the files opened for reading.
type openCountingFS struct {
	osFS
	opens atomic.Int64
}

func (c *openCountingFS) Open(path string) (io.ReadCloser, error) {
	c.opens.Add(1)
	return c.osFS.Open(path)
}

// TestReplayReadsTheJournalOnce: Open reads each segment once and Replay
// reads none again; a Replay after an Append made since Open reads them
// again and still gives everything.
func TestReplayReadsTheJournalOnce(t *testing.T) {
	dir := t.TempDir()
	recs := kibs(0, 30)
	writeJournal(t, dir, Config{SegmentSize: 8 << 10}, each(recs)...)
	writeJournal(t, dir, Config{SegmentSize: 8 << 10}, []broker.JournalRecord{jt.Remove(recs[3])})
	segments := len(segmentFiles(t, dir))
	cfs := &openCountingFS{}
	f, err := openWith(dir, Config{SegmentSize: 8 << 10, Logger: testLogger(t, nil)}, cfs)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if n := cfs.opens.Load(); n != int64(segments) {
		t.Fatalf("Open read %d files, want each of the %d segments once", n, segments)
	}
	want := slices.Delete(slices.Clone(recs), 3, 4)
	jt.Expect(t, replay(t, f), want)
	if n := cfs.opens.Load(); n != int64(segments) {
		t.Fatalf("Replay read %d files again", n-int64(segments))
	}
	extra := kib(30)
	mustAppend(t, f, extra)
	jt.Expect(t, replay(t, f), append(want, extra))
	if cfs.opens.Load() == int64(segments) {
		t.Fatal("a second Replay did not read the segments")
	}
}

// TestTornNewSegmentHeader: a crash while a segment was being created
// can leave its header half written with nothing after it. That is not
// corruption: the file is taken as empty (and deleted by compaction),
// after its bytes are kept aside; it was reported as "not a segment" at
// every start before (found by TestCrashModel).
func TestTornNewSegmentHeader(t *testing.T) {
	dir := t.TempDir()
	recs := kibs(0, 3)
	writeJournal(t, dir, Config{}, each(recs)...)
	torn := appendHeader(nil, 2)[:13]
	os.WriteFile(filepath.Join(dir, segmentName(2)), append(torn, make([]byte, 4096)...), 0o640)
	f := open(t, dir, Config{})
	jt.Expect(t, replay(t, f), recs)
	if st := f.Stats(); st.CorruptSegments != 0 || st.CorruptRecords != 0 || f.Damage() != "" {
		t.Fatalf("a torn new segment reported as damage: %+v, %q", st, f.Damage())
	}
	if got := asideFiles(t, dir)[segmentName(2)+".0-13"]; !bytes.Equal(got, torn) {
		t.Fatalf("the torn header's bytes were not kept aside: %q", got)
	}
	f.compactSync()
	if _, err := os.Stat(filepath.Join(dir, segmentName(2))); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the torn segment was not deleted: %v", err)
	}
	f.Close()
}

// TestKeepAsideCopiesBounded: the same range with other bytes gets a
// numbered copy of its own (a tail cut twice at the same offset), the
// same bytes no new one, and past maxAsideCopies different copies
// keeping another fails (loudly: recovery then cuts nothing).
func TestKeepAsideCopiesBounded(t *testing.T) {
	dir := t.TempDir()
	r := span{100, 104}
	for i := range maxAsideCopies + 1 {
		b := []byte{byte(i), byte(i >> 8), 1, 2}
		if err := keepAside(osFS{}, dir, 7, r, b); err != nil {
			t.Fatalf("copy %d: %v", i, err)
		}
		if err := keepAside(osFS{}, dir, 7, r, b); err != nil { // the same bytes again: nothing new
			t.Fatalf("copy %d again: %v", i, err)
		}
	}
	if n := len(asideFiles(t, dir)); n != maxAsideCopies+1 {
		t.Fatalf("%d files aside, want %d", n, maxAsideCopies+1)
	}
	if err := keepAside(osFS{}, dir, 7, r, []byte{9, 9, 9, 9}); err == nil {
		t.Fatalf("copy %d of one range was kept, want an error past the bound", maxAsideCopies+2)
	}
}
