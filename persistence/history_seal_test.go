package persistence

import (
	"strconv"
	"testing"

	"github.com/stompbox/stompbox/broker"
	jt "github.com/stompbox/stompbox/persistence/journaltest"
)

// TestHistorySealLiveness: a seal is live until the next history record
// of its topic (append, trim, seal, another epoch's record) and a topic
// has at most one live seal; other topics' records leave it alone.
func TestHistorySealLiveness(t *testing.T) {
	seal := func(next uint64) broker.JournalRecord { return jt.HistorySeal("/topic/chat", "ab12", next) }
	other := jt.HistoryAppend("/topic/other", "cd34", 1, jt.Message(50))
	cases := []struct {
		name  string
		after []broker.JournalRecord // after appends 1-3 and seal(4)
		want  []broker.JournalRecord
	}{
		{"sealed", nil, []broker.JournalRecord{hist(1), hist(2), hist(3), seal(4)}},
		{"another topic", []broker.JournalRecord{other}, []broker.JournalRecord{hist(1), hist(2), hist(3), seal(4), other}},
		{"append", []broker.JournalRecord{hist(4)}, []broker.JournalRecord{hist(1), hist(2), hist(3), hist(4)}},
		{"trim", []broker.JournalRecord{jt.HistoryTrim("/topic/chat", "ab12", 1)},
			[]broker.JournalRecord{hist(2), hist(3), jt.HistoryTrim("/topic/chat", "ab12", 1)}},
		{"seal again", []broker.JournalRecord{seal(4)}, []broker.JournalRecord{hist(1), hist(2), hist(3), seal(4)}},
		{"new epoch seal", []broker.JournalRecord{jt.HistorySeal("/topic/chat", "ef56", 1)},
			[]broker.JournalRecord{jt.HistorySeal("/topic/chat", "ef56", 1)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			f := open(t, dir, Config{})
			for i := 1; i <= 3; i++ {
				mustAppend(t, f, hist(i))
			}
			mustAppend(t, f, seal(4))
			for _, r := range c.after {
				mustAppend(t, f, r)
			}
			jt.Expect(t, replay(t, f), c.want)
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			f = open(t, dir, Config{})
			jt.Expect(t, replay(t, f), c.want)
			// Compaction keeps exactly the live records, one seal at most.
			sealNow(t, f)
			f.compactSync()
			jt.Expect(t, replay(t, f), c.want)
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestHistoryDropLiveness: a drop kills every record of its topic, of
// any epoch (appends, trim, seal), and is dead itself: compaction then
// deletes the segments that held only that topic, and a reopen finds
// nothing of it. A later history of the topic starts from nothing.
func TestHistoryDropLiveness(t *testing.T) {
	dir := t.TempDir()
	f := open(t, dir, Config{CompactBelow: -1})
	for i := 1; i <= 4; i++ {
		mustAppend(t, f, hist(i))
	}
	mustAppend(t, f, jt.HistoryTrim("/topic/chat", "ab12", 1), jt.HistorySeal("/topic/chat", "ab12", 5))
	sealNow(t, f) // segment 1: only /topic/chat
	keep := jt.HistoryAppend("/topic/other", "cd34", 1, jt.Message(50))
	mustAppend(t, f, keep)
	mustAppend(t, f, jt.HistoryDrop("/topic/chat", "ab12"))
	jt.Expect(t, replay(t, f), []broker.JournalRecord{keep})
	sealNow(t, f)
	f.compactSync()
	if exists(t, dir, 1) {
		t.Fatal("segment 1 holds only a dropped history but was not deleted")
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	f = open(t, dir, Config{})
	jt.Expect(t, replay(t, f), []broker.JournalRecord{keep})
	// A drop of a topic with nothing live is harmless; a new history
	// of the dropped topic is live as usual.
	mustAppend(t, f, jt.HistoryDrop("/topic/none", "0"))
	fresh := jt.HistoryAppend("/topic/chat", "ef56", 1, jt.Message(60))
	mustAppend(t, f, fresh)
	jt.Expect(t, replay(t, f), []broker.JournalRecord{keep, fresh})
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestHistoryChurnBounded: topics whose histories are dropped leave
// nothing live, so a journal of many short-lived topics stays small
// after compaction.
func TestHistoryChurnBounded(t *testing.T) {
	dir := t.TempDir()
	f := open(t, dir, Config{SegmentSize: 64 << 10})
	for i := range 2000 {
		topic := "/topic/room." + strconv.Itoa(i)
		mustAppend(t, f, jt.HistoryAppend(topic, "ab12", 1, jt.Message(i)), jt.HistoryAppend(topic, "ab12", 2, jt.Message(i)))
		mustAppend(t, f, jt.HistoryDrop(topic, "ab12"))
	}
	sealNow(t, f)
	f.compactSync()
	if got := replay(t, f); len(got) != 0 {
		t.Fatalf("%d records live after every history was dropped", len(got))
	}
	if st := f.Stats(); st.SegmentsDeleted == 0 {
		t.Fatalf("no segment deleted: %+v", st)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestHistoryNewEpochKillsSeal: a record of a new epoch kills everything
// the old epoch left, its seal included (as after a restart that renewed
// an unsealed history's epoch): compaction then deletes the segment that
// held only the old epoch.
func TestHistoryNewEpochKillsSeal(t *testing.T) {
	dir := t.TempDir()
	f := open(t, dir, Config{CompactBelow: -1})
	mustAppend(t, f, hist(1), hist(2))
	mustAppend(t, f, jt.HistorySeal("/topic/chat", "ab12", 9)) // a seal that does not match: not kept by recovery
	sealNow(t, f)                                              // segment 1: only the old epoch
	renewed := jt.HistoryAppend("/topic/chat", "ef56", 1, jt.Message(60))
	mustAppend(t, f, renewed)
	jt.Expect(t, replay(t, f), []broker.JournalRecord{renewed})
	sealNow(t, f)
	f.compactSync()
	if exists(t, dir, 1) {
		t.Fatal("segment 1 holds only the old epoch's records (its seal too) but was not deleted")
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}
