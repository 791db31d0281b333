package persistence

import (
	"testing"

	"github.com/stompbox/stompbox/broker"
	jt "github.com/stompbox/stompbox/persistence/journaltest"
)

func hist(seq int) broker.JournalRecord {
	return jt.HistoryAppend("/topic/chat", "ab12", uint64(seq), jt.Message(seq))
}

// TestHistoryRecordsReplay: appends are live until a trim of their epoch
// reaches them; only the newest trim stays live; an append of a new epoch
// kills the old epoch's records. Replay gives the live ones in append
// order, across a reopen.
func TestHistoryRecordsReplay(t *testing.T) {
	dir := t.TempDir()
	f := open(t, dir, Config{})
	for i := 1; i <= 5; i++ {
		mustAppend(t, f, hist(i))
	}
	mustAppend(t, f, jt.HistoryTrim("/topic/chat", "ab12", 2))
	mustAppend(t, f, jt.HistoryTrim("/topic/chat", "ab12", 3))
	mustAppend(t, f, jt.HistoryTrim("/topic/chat", "ab12", 1)) // older than the newest: nothing
	other := jt.HistoryAppend("/topic/other", "cd34", 9, jt.Message(9))
	mustAppend(t, f, other)
	want := []broker.JournalRecord{hist(4), hist(5), jt.HistoryTrim("/topic/chat", "ab12", 3), other}
	jt.Expect(t, replay(t, f), want)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	f = open(t, dir, Config{})
	jt.Expect(t, replay(t, f), want)
	// A new epoch of /topic/chat kills everything of the old one.
	fresh := jt.HistoryAppend("/topic/chat", "ef56", 1, jt.Message(20))
	mustAppend(t, f, fresh)
	jt.Expect(t, replay(t, f), []broker.JournalRecord{other, fresh})
}

// TestHistoryCompaction: a segment whose history appends were all trimmed
// is deleted; one holding appends still retained is kept (or rewritten),
// and replay still gives them.
func TestHistoryCompaction(t *testing.T) {
	dir := t.TempDir()
	f := open(t, dir, Config{CompactBelow: -1})
	for i := 1; i <= 4; i++ {
		mustAppend(t, f, hist(i))
	}
	sealNow(t, f) // segment 1: appends 1-4
	for i := 5; i <= 6; i++ {
		mustAppend(t, f, hist(i))
	}
	mustAppend(t, f, jt.HistoryTrim("/topic/chat", "ab12", 3))
	sealNow(t, f) // segment 2: appends 5-6, trim 3
	f.compactSync()
	if !exists(t, dir, 1) {
		t.Fatal("segment 1 deleted while append 4 in it is retained")
	}
	mustAppend(t, f, jt.HistoryTrim("/topic/chat", "ab12", 4))
	f.compactSync()
	if exists(t, dir, 1) {
		t.Fatal("segment 1 holds only trimmed history but was not deleted")
	}
	want := []broker.JournalRecord{hist(5), hist(6), jt.HistoryTrim("/topic/chat", "ab12", 4)}
	jt.Expect(t, replay(t, f), want)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	jt.Expect(t, replay(t, open(t, dir, Config{})), want)
}

// TestHistoryCompactionRewrite: rewriting a segment copies its live
// history appends and trim; replay after the rewrite is unchanged.
func TestHistoryCompactionRewrite(t *testing.T) {
	dir := t.TempDir()
	f := open(t, dir, Config{})
	for i := 1; i <= 40; i++ {
		mustAppend(t, f, hist(i))
	}
	mustAppend(t, f, jt.HistoryTrim("/topic/chat", "ab12", 38))
	sealNow(t, f)
	mustAppend(t, f, jt.Enqueue("/queue/x", jt.Message(100)))
	sealNow(t, f)
	f.compactSync()
	if exists(t, dir, 1) {
		t.Fatal("segment 1, mostly dead history, was not rewritten")
	}
	want := []broker.JournalRecord{hist(39), hist(40), jt.HistoryTrim("/topic/chat", "ab12", 38), jt.Enqueue("/queue/x", jt.Message(100))}
	jt.Expect(t, replay(t, f), want)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	jt.Expect(t, replay(t, open(t, dir, Config{})), want)
}
