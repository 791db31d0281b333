package persistence

import (
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stompbox/stompbox/broker"
	jt "github.com/stompbox/stompbox/persistence/journaltest"
)

// FuzzReplay recovers a journal whose one segment holds arbitrary bytes.
// With fixCRC the harness first recomputes the CRC of every record it can
// frame, so that the fuzzer reaches the payload decoders too. Recovery
// must never panic or fail (but for a newer format version), and the
// journal must stay usable: what it replays, plus an Append, is what it
// replays after a reopen.
func FuzzReplay(f *testing.F) {
	if names, _ := filepath.Glob(filepath.Join(goldenDir, "*.seg")); len(names) > 0 {
		for _, name := range names {
			data, err := os.ReadFile(name)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data, false)
			f.Add(data, true)
		}
	}
	f.Add([]byte{}, false)
	f.Add(appendHeader(nil, 1), false)
	f.Add(append(appendHeader(nil, 1), 9, 0, 0, 0, 0, 0, 0, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8), true)
	f.Fuzz(func(t *testing.T, data []byte, fixCRC bool) {
		if fixCRC {
			data = fixChecksums(data)
		}
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, segmentName(1)), data, 0o640); err != nil {
			t.Fatal(err)
		}
		cfg := Config{SegmentSize: 1024, Logger: slog.New(slog.DiscardHandler)}
		j, err := Open(dir, cfg)
		if err != nil {
			return // a newer version: refused, not misread
		}
		defer j.Close()
		first := replayChecked(t, j)
		extra := jt.Enqueue("/queue/fuzz-extra", jt.Message(1))
		if err := j.Append(t.Context(), extra); err != nil {
			t.Fatalf("Append after recovery: %v", err)
		}
		if err := j.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		j2, err := Open(dir, cfg)
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		defer j2.Close()
		want := slices.DeleteFunc(first, func(r broker.JournalRecord) bool {
			return r.Op == extra.Op && r.Queue == extra.Queue && r.MessageID == extra.MessageID // replaced by extra
		})
		jt.Expect(t, replayChecked(t, j2), append(want, extra))
	})
}

func replayChecked(t *testing.T, j *File) []broker.JournalRecord {
	var got []broker.JournalRecord
	err := j.Replay(func(r broker.JournalRecord) error {
		if r.Op == broker.OpEnqueue && r.Message == nil {
			t.Fatalf("enqueue of %q without a message", r.MessageID)
		}
		if r.Op != broker.OpEnqueue && r.Op != broker.OpDurableCreate {
			t.Fatalf("replayed a %v record", r.Op)
		}
		got = append(got, r)
		return nil
	})
	if err != nil {
		t.Fatalf("Replay: %v", err)
	}
	return got
}

// fixChecksums sets the CRC of every frame whose length fits in data.
func fixChecksums(data []byte) []byte {
	off := headerSize
	for off+frameHeader <= len(data) {
		n := int(le.Uint32(data[off:]))
		if n == 0 || n > len(data)-off-frameHeader {
			break
		}
		le.PutUint32(data[off+4:], checksum(data[off+frameHeader:off+frameHeader+n]))
		off += frameHeader + n
	}
	return data
}
