package persistence

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/frames"
	jt "github.com/stompbox/stompbox/persistence/journaltest"
)

var update = flag.Bool("update", false, "rewrite testdata/golden from TestGoldenWrite")

// goldenDir holds the fixture of the current format; goldenV2Dir the
// same history as format version 2 wrote it (records framed without a
// header checksum), goldenV1Dir as version 1 wrote it (durable
// subscriptions without owners, too): kept so that journals of older
// builds stay readable.
const (
	goldenDir   = "testdata/golden"
	goldenV2Dir = "testdata/golden-v2"
	goldenV1Dir = "testdata/golden-v1"
)

// goldenConfig makes small segments, so the fixture spans several, and
// no rewriting, so nothing but the appends decides the bytes.
var goldenConfig = Config{SegmentSize: 512, CompactBelow: -1}

// goldenMessage is message i of the fixture. It is defined here, not taken
// from journaltest, so that only a format change can change the bytes.
func goldenMessage(i int) *broker.Message {
	id := fmt.Sprintf("m-%d", i)
	hs := []frames.Header{
		{Key: []byte("destination"), Value: []byte("/queue/orders")},
		{Key: []byte("content-type"), Value: []byte("text/plain")},
		{Key: []byte("x-rep"), Value: []byte("a")},
		{Key: []byte("x-rep"), Value: []byte("b:\n")},
		{Key: []byte("x-empty"), Value: []byte{}},
	}
	var expires int64
	if i%3 != 0 {
		expires = 1_700_000_000_000 + int64(i)
	}
	body := fmt.Appendf(nil, "order %d \x00\xff", i)
	return broker.RecoveredMessage(id, "/queue/orders", hs[:1+i%5], body, i%2 == 1, expires)
}

var (
	goldenD1 = jt.DurableCreate(broker.DurableSpec{User: "alice", ClientID: "client-1", Name: "sub-1", Topic: "prices.*"})
	goldenD2 = jt.DurableCreate(broker.DurableSpec{User: "alice", ClientID: "client-1", Name: "sub-2", Topic: "news.#"})
)

func orders(i int) broker.JournalRecord { return jt.Enqueue("/queue/orders", goldenMessage(i)) }

// goldenAppends is the history the fixture records, one Append each.
func goldenAppends() [][]broker.JournalRecord {
	return [][]broker.JournalRecord{
		{goldenD1},
		{orders(1)},
		{orders(2)},
		{jt.Enqueue(goldenD1.Queue, goldenMessage(4))},
		{jt.Remove(orders(2)), jt.Enqueue("/queue/DLQ.orders", goldenMessage(5))}, // dead-lettered: one atomic Append
		{orders(6)},
		{goldenD2},
		{jt.Enqueue(goldenD2.Queue, goldenMessage(7))},
		{jt.DurableDelete(goldenD2)}, // takes m-7 with it
		{orders(10)},
		{jt.Remove(orders(1))},
		{orders(11)},
		{jt.Remove(orders(10))},
		{orders(10)}, // back in the queue after a failed delivery
	}
}

// goldenLive is what replaying the fixture must give.
func goldenLive() []broker.JournalRecord {
	return []broker.JournalRecord{
		goldenD1,
		jt.Enqueue(goldenD1.Queue, goldenMessage(4)),
		jt.Enqueue("/queue/DLQ.orders", goldenMessage(5)),
		orders(6),
		orders(11),
		orders(10),
	}
}

func segmentFiles(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range names {
		names[i] = filepath.Base(names[i])
	}
	slices.Sort(names)
	return names
}

// TestGoldenWrite writes the golden history and compares the segment
// files with the committed ones byte for byte: any change to the format
// fails here. go test -run Golden -update rewrites them (then review the
// diff and docs/persistence.md).
func TestGoldenWrite(t *testing.T) { checkGolden(t, goldenDir, goldenAppends()) }

// checkGolden writes history to a new journal and compares its segment
// files with those of fixture (or, with -update, replaces them).
func checkGolden(t *testing.T, fixture string, history [][]broker.JournalRecord) {
	dir := t.TempDir()
	f := open(t, dir, goldenConfig)
	for _, recs := range history {
		mustAppend(t, f, recs...)
	}
	f.compactSync()
	if n := f.Stats().SegmentsDeleted; n != 0 {
		t.Fatalf("compaction deleted %d segments: the fixture would depend on timing", n)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	got := segmentFiles(t, dir)
	if len(got) < 2 {
		t.Fatalf("the fixture has %d segments, want several", len(got))
	}
	if *update {
		os.RemoveAll(fixture)
		if err := os.MkdirAll(fixture, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, name := range got {
			data, _ := os.ReadFile(filepath.Join(dir, name))
			if err := os.WriteFile(filepath.Join(fixture, name), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("rewrote %s: %s", fixture, strings.Join(got, " "))
		return
	}
	want := segmentFiles(t, fixture)
	if !slices.Equal(got, want) {
		t.Fatalf("segments %v, golden has %v (go test -run Golden -update rewrites it)", got, want)
	}
	for _, name := range got {
		g, _ := os.ReadFile(filepath.Join(dir, name))
		w, _ := os.ReadFile(filepath.Join(fixture, name))
		if !bytes.Equal(g, w) {
			i := 0
			for i < min(len(g), len(w)) && g[i] == w[i] {
				i++
			}
			t.Errorf("%s differs from the golden file at byte %d (%d bytes, golden %d)", name, i, len(g), len(w))
		}
	}
}

// TestGoldenReplay recovers the committed fixture: the bytes on disk from
// an earlier build must keep meaning the same records.
func TestGoldenReplay(t *testing.T) {
	f := openGolden(t, goldenDir)
	jt.Expect(t, replay(t, f), goldenLive())
	if n := f.CorruptRecords(); n != 0 {
		t.Fatalf("%d corrupt records in the golden fixture", n)
	}
}

// TestGoldenReplayV2 recovers the fixture format version 2 wrote, and
// keeps working when new records go to a version 3 segment after it.
func TestGoldenReplayV2(t *testing.T) {
	dir := t.TempDir()
	f := openGolden(t, goldenV2Dir, dir)
	jt.Expect(t, replay(t, f), goldenLive())
	if n := f.CorruptRecords(); n != 0 || f.Damage() != "" {
		t.Fatalf("%d corrupt records in the version 2 fixture (%s)", n, f.Damage())
	}
	extra := orders(12)
	mustAppend(t, f, extra)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	f = open(t, dir, goldenConfig)
	jt.Expect(t, replay(t, f), append(goldenLive(), extra))
	f.compactSync()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	f = open(t, dir, goldenConfig)
	jt.Expect(t, replay(t, f), append(goldenLive(), extra))
}

// TestGoldenReplayV1 recovers the fixture format version 1 wrote: its
// durable subscriptions come back unowned, under their old queue names,
// with their messages; and a journal of both forms keeps working after
// new records are appended (in a version 2 segment).
func TestGoldenReplayV1(t *testing.T) {
	legacy := broker.DurableSpec{ClientID: "client-1", Name: "sub-1", Topic: "prices.*", Unowned: true}
	legacyQueue := "/durable/client-1/sub-1"
	var want []broker.JournalRecord
	for _, r := range goldenLive() {
		if r.Queue == goldenD1.Queue {
			r.Queue = legacyQueue
			if r.Op == broker.OpDurableCreate {
				r.Durable = legacy
			}
		}
		want = append(want, r)
	}
	dir := t.TempDir()
	f := openGolden(t, goldenV1Dir, dir)
	jt.Expect(t, replay(t, f), want)
	if n := f.CorruptRecords(); n != 0 {
		t.Fatalf("%d corrupt records in the version 1 fixture", n)
	}
	owned := jt.DurableCreate(broker.DurableSpec{User: "alice", ClientID: "client-1", Name: "sub-1", Topic: "prices.*"})
	mustAppend(t, f, owned)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	f = open(t, dir, goldenConfig)
	jt.Expect(t, replay(t, f), append(want, owned))
}

// openGolden opens a copy of the fixture in dir (in a temporary
// directory without one) and returns the File.
func openGolden(t *testing.T, fixture string, dir ...string) *File {
	t.Helper()
	into := t.TempDir()
	if len(dir) > 0 {
		into = dir[0]
	}
	names := segmentFiles(t, fixture)
	if len(names) == 0 {
		t.Fatalf("no golden segments in %s", fixture)
	}
	for _, name := range names {
		data, err := os.ReadFile(filepath.Join(fixture, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(into, name), data, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	return open(t, into, goldenConfig)
}
