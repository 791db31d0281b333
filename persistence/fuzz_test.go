package persistence

import (
	"bytes"
	"errors"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stompbox/stompbox/broker"
	jt "github.com/stompbox/stompbox/persistence/journaltest"
)

// FuzzReplay runs recovery and replay over arbitrary bytes of one
// segment. With fixCRC the harness first recomputes the CRC of every
// record it can frame, so that the fuzzer reaches the payload decoders
// too. Nothing may panic; the live set's accounting must match what
// replay gives; and cutting the segment where recovery would truncate it
// must replay the same records.
//
// It drives the recovery code directly, without a File: a File's
// goroutines make coverage vary from run to run, which blinds the fuzzer.
// TestOpenMutatedSegments covers Open on mutated files.
func FuzzReplay(f *testing.F) {
	for _, seed := range goldenSeeds(f) {
		f.Add(seed, false)
		f.Add(seed, true)
	}
	f.Add([]byte{}, false)
	f.Add(appendHeader(nil, 1), false)
	f.Add(append(appendHeader(nil, 1), 9, 0, 0, 0, 0, 0, 0, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8), true)
	f.Fuzz(func(t *testing.T, data []byte, fixCRC bool) {
		if fixCRC {
			data = fixChecksums(bytes.Clone(data))
		}
		if h, err := readHeader(data); err != nil || h.state == headerEmpty {
			return
		}
		segs := map[uint64]*segment{1: {id: 1, sealed: true}}
		idx := newLiveSet(segs)
		res, _ := replaySegment(idx, 1, data, nil)
		if res.end < headerSize || res.end > len(data) {
			t.Fatalf("end %d outside [%d, %d]", res.end, headerSize, len(data))
		}
		if res.newer != nil {
			return
		}
		for _, d := range res.damaged {
			if d.start < headerSize || d.end > res.end || d.len() <= 0 {
				t.Fatalf("damaged range [%d, %d), not before end %d", d.start, d.end, res.end)
			}
		}
		if tl := res.tail; tl.len() < 0 || (tl.len() > 0 && (tl.start < res.end || tl.end > len(data))) {
			t.Fatalf("tail [%d, %d) outside [%d, %d]", tl.start, tl.end, res.end, len(data))
		}
		live := len(idx.durables)
		for _, m := range idx.queues {
			live += len(m)
			for _, e := range m {
				if e.count != nil {
					live++ // its deliveries record
				}
			}
		}
		if s := segs[1]; s.liveRecs != live || s.live < 0 || (live == 0) != (s.live == 0) {
			t.Fatalf("accounting: %d live records, %d bytes; the live set has %d", s.liveRecs, s.live, live)
		}
		got := replayBytes(t, data)
		if len(got) != live-counted(idx) {
			t.Fatalf("replayed %d records, the live set has %d", len(got), live)
		}
		cut := data[:res.end]
		if again := scan(cut, func(int, byte, []byte) error { return nil }); again.tail.len() != 0 || again.end != res.end {
			t.Fatalf("after the cut: end %d (want %d), tail %v", again.end, res.end, again.tail)
		}
		jt.Expect(t, replayBytes(t, cut), got)
	})
}

// counted is how many live enqueues of set have a deliveries record.
func counted(set *liveSet) int {
	n := 0
	for _, m := range set.queues {
		for _, e := range m {
			if e.count != nil {
				n++
			}
		}
	}
	return n
}

// replayBytes is what Replay gives for one segment of bytes.
func replayBytes(t *testing.T, data []byte) []broker.JournalRecord {
	set := newLiveSet(nil)
	collectSegment(set, 1, data)
	var recs []broker.JournalRecord
	for _, e := range set.sorted() {
		r := e.replayed()
		if r.Op == broker.OpEnqueue && r.Message == nil {
			t.Fatalf("enqueue of %q without a message", r.MessageID)
		}
		if r.Op != broker.OpEnqueue && r.Op != broker.OpDurableCreate {
			t.Fatalf("replayed a %v record", r.Op)
		}
		recs = append(recs, r)
	}
	return recs
}

func goldenSeeds(t testing.TB) [][]byte {
	names, err := filepath.Glob(filepath.Join(goldenDir, "*.seg"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no golden segments: %v", err)
	}
	// And the record types added since (deliveries, multi-enqueue).
	more, err := filepath.Glob(filepath.Join(goldenRecordsDir, "*.seg"))
	if err != nil || len(more) == 0 {
		t.Fatalf("no golden segments in %s: %v", goldenRecordsDir, err)
	}
	names = append(names, more...)
	var seeds [][]byte
	for _, name := range names {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, data)
	}
	return seeds
}

// fixChecksums sets the checksums of every (version 3) frame whose
// length fits in data.
func fixChecksums(data []byte) []byte {
	off := headerSize
	for off+frameHeader <= len(data) {
		n := int(le.Uint32(data[off:]))
		if n == 0 || n > len(data)-off-frameHeader {
			break
		}
		sealFrame(data[off:])
		off += frameHeader + n
	}
	return data
}

// TestOpenMutatedSegments opens journals whose one segment is a golden
// segment with random bytes changed (a fixed seed, so failures repeat):
// Open must not fail or panic, and the journal must stay usable: what it
// replays plus an Append is what it replays after a reopen.
func TestOpenMutatedSegments(t *testing.T) {
	seeds := goldenSeeds(t)
	rng := rand.New(rand.NewPCG(5, 1))
	cfg := Config{SegmentSize: 1024, Sync: SyncNever, Logger: slog.New(slog.DiscardHandler)}
	extra := jt.Enqueue("/queue/extra", jt.Message(1))
	for i := range 300 {
		data := bytes.Clone(seeds[i%len(seeds)])
		for range 1 + rng.IntN(4) {
			data[headerSize+rng.IntN(len(data)-headerSize)] = byte(rng.IntN(256))
		}
		fixed := rng.IntN(2) == 0
		if fixed {
			data = fixChecksums(data)
		}
		if rng.IntN(4) == 0 {
			data = data[:headerSize+rng.IntN(len(data)-headerSize)]
		}
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, segmentName(1)), data, 0o640); err != nil {
			t.Fatal(err)
		}
		f, err := Open(dir, cfg)
		if fixed && errors.Is(err, ErrUnsupportedVersion) {
			continue // a record type no version wrote, with good checksums: what a newer version would write
		}
		if err != nil {
			t.Fatalf("mutation %d: Open: %v", i, err)
		}
		first := replay(t, f)
		mustAppend(t, f, extra)
		if err := f.Close(); err != nil {
			t.Fatalf("mutation %d: Close: %v", i, err)
		}
		want := slices.DeleteFunc(first, func(r broker.JournalRecord) bool {
			return r.Queue == extra.Queue && r.MessageID == extra.MessageID // replaced by extra
		})
		f = open(t, dir, cfg)
		jt.Expect(t, replay(t, f), append(want, extra))
		f.Close()
	}
}
