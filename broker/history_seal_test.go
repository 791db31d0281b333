package broker

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"
)

// refusingJournal is a pipeJournal whose AppendAsync refuses the history
// appends refuse says (as a disk budget would).
type refusingJournal struct {
	*pipeJournal
	refuse func(JournalRecord) bool
}

func (j refusingJournal) AppendAsync(done JournalDone, recs ...JournalRecord) error {
	if slices.ContainsFunc(recs, j.refuse) {
		return fmt.Errorf("refusing: %w", ErrJournalFull)
	}
	return j.pipeJournal.AppendAsync(done, recs...)
}

// historyRecords are the history records of j's completed appends, in
// order, as "op topic epoch-seq" (appends and trims), "op topic seq"
// (seals) or "op topic" (drops).
func historyRecords(j *pipeJournal) []string {
	var out []string
	for _, r := range j.all() {
		switch r.Op {
		case OpHistorySeal:
			out = append(out, fmt.Sprintf("%v %s %d", r.Op, r.Queue, r.HistorySeq))
		case OpHistoryDrop:
			out = append(out, fmt.Sprintf("%v %s", r.Op, r.Queue))
		}
	}
	return out
}

// TestHistorySealAtShutdown: SealHistories writes one seal per history
// (after a trim of what was evicted since the last one, so the journal
// holds exactly the ring), waited; a history that lost a record (an
// append refused before it was queued, or failed after) gets a drop
// instead, so that a restart gives it a new epoch.
func TestHistorySealAtShutdown(t *testing.T) {
	pj := &pipeJournal{}
	j := refusingJournal{pj, func(r JournalRecord) bool { return r.Op == OpHistoryAppend && r.Queue == "/topic/refused" }}
	b := New(Config{Journal: j, TopicHistory: []HistoryRule{{Pattern: "/topic/#", Size: 32}}})
	sp := b.spaces[DefaultVirtualHost]
	msg := &Message{ID: "x", Destination: "/topic/x", Body: []byte("x")}
	for range 2 {
		sp.publishTopic("clean", msg)
		sp.publishTopic("failed", msg)
	}
	sp.publishTopic("refused", msg)
	for range 33 { // one evicted: not yet a trim (one per 2 evictions)
		sp.publishTopic("ring", msg)
	}
	n := pj.submitted()
	for i := range n {
		var err error
		if r := pj.pending[i].recs[0]; r.Queue == "/topic/failed" && r.HistorySeq == 2 {
			err = fmt.Errorf("disk filled: %w", ErrJournalFull)
		}
		pj.complete(t, i, err)
	}
	if err := b.SealHistories(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := historyRecords(pj)
	slices.Sort(got)
	want := []string{"history-drop /topic/failed", "history-drop /topic/refused",
		"history-seal /topic/clean 3", "history-seal /topic/ring 34"}
	if !slices.Equal(got, want) {
		t.Fatalf("records at shutdown %q, want %q", got, want)
	}
	last := pj.appends[len(pj.appends)-1]
	i := slices.IndexFunc(last, func(r JournalRecord) bool { return r.Op == OpHistorySeal && r.Queue == "/topic/ring" })
	if i < 1 || last[i-1].Op != OpHistoryTrim || last[i-1].Queue != "/topic/ring" || last[i-1].HistorySeq != 1 {
		t.Fatalf("the ring's seal is not preceded by its trim through 1: %+v", last)
	}
	if pj.submitted() != n {
		t.Fatal("seals went through AppendAsync: nobody waits for those")
	}
}

// TestHistorySealRecovery: recovery keeps a history's epoch only when its
// last record is a seal of the seq it goes on from; any other history (no
// seal: a crash; a record after the seal; a seal that does not match)
// keeps its retained messages under a new epoch, going on from the seq
// after them; a drop removes it.
func TestHistorySealRecovery(t *testing.T) {
	app := func(seq uint64) JournalRecord {
		m := &Message{ID: "m" + strconv.FormatUint(seq, 10), Destination: "/topic/t", Body: []byte("x")}
		return JournalRecord{Op: OpHistoryAppend, Queue: "/topic/t", MessageID: m.ID, Message: m.withOffset("ab12", seq),
			Epoch: "ab12", HistorySeq: seq, PublishedAt: time.Now().UnixMilli()}
	}
	seal := func(next uint64) JournalRecord {
		return JournalRecord{Op: OpHistorySeal, Queue: "/topic/t", Epoch: "ab12", HistorySeq: next}
	}
	trim := JournalRecord{Op: OpHistoryTrim, Queue: "/topic/t", Epoch: "ab12", HistorySeq: 1}
	drop := JournalRecord{Op: OpHistoryDrop, Queue: "/topic/t", Epoch: "ab12"}
	for _, tc := range []struct {
		name        string
		recs        []JournalRecord
		kept        bool   // epoch ab12 kept
		count, next uint64 // the ring then
		gone        bool   // no history at all
	}{
		{"sealed", []JournalRecord{app(1), app(2), seal(3)}, true, 2, 3, false},
		{"sealed after a trim", []JournalRecord{app(1), app(2), trim, seal(3)}, true, 1, 3, false},
		{"sealed empty", []JournalRecord{seal(7)}, true, 0, 7, false},
		{"crash: no seal", []JournalRecord{app(1), app(2)}, false, 2, 3, false},
		{"crash after a restart: append after the seal", []JournalRecord{app(1), app(2), seal(3), app(3)}, false, 3, 4, false},
		{"seal that does not match", []JournalRecord{app(1), app(2), seal(5)}, false, 2, 3, false},
		{"dropped", []JournalRecord{app(1), app(2), drop}, false, 0, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := New(Config{TopicHistory: []HistoryRule{{Pattern: "/topic/t", Size: 10}}})
			for _, r := range tc.recs {
				b.recoverHistory(r)
			}
			b.finishHistoryRecovery()
			h := b.spaces[DefaultVirtualHost].hist.topics["t"]
			if tc.gone {
				if h != nil {
					t.Fatalf("history of epoch %s left after a drop", h.epoch)
				}
				return
			}
			if h == nil {
				t.Fatal("no history")
			}
			if (h.epoch == "ab12") != tc.kept || uint64(h.count) != tc.count || h.next != tc.next || h.first != h.next-tc.count {
				t.Fatalf("epoch %s count %d first %d next %d; want kept %v count %d next %d",
					h.epoch, h.count, h.first, h.next, tc.kept, tc.count, tc.next)
			}
			if st := b.HistoryStats(); st.Topics != 1 || st.Messages != int64(tc.count) {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// TestHistoryDropJournaled: a history dropped from memory (idle, nothing
// retained, no subscriber) is dropped on the journal: its records would
// otherwise stay live for ever.
func TestHistoryDropJournaled(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	j := &pipeJournal{}
	b := New(Config{Journal: j, MaxHistoryBytes: 3 * historyTopicOverhead, Now: func() time.Time { return now },
		TopicHistory: []HistoryRule{{Pattern: "/topic/#", Size: 10, MaxAge: time.Second}}})
	sp := b.spaces[DefaultVirtualHost]
	msg := &Message{ID: "x", Destination: "/topic/x", Body: []byte("x")}
	sp.publishTopic("old", msg)
	old := sp.history("old")
	now = now.Add(2 * time.Second)
	for i := range 3 {
		sp.publishTopic("new"+strconv.Itoa(i), msg)
	}
	if sp.hist.topics["old"] != nil {
		t.Fatal("the idle history was not dropped")
	}
	for i := range j.submitted() {
		j.complete(t, i, nil)
	}
	drops := 0
	for _, r := range j.all() {
		if r.Op == OpHistoryDrop {
			drops++
			if r.Queue != "/topic/old" || r.Epoch != old.epoch {
				t.Fatalf("drop of %s %s, want /topic/old %s", r.Queue, r.Epoch, old.epoch)
			}
		}
	}
	if drops != 1 {
		t.Fatalf("%d drops journaled, want 1", drops)
	}
}

// TestHistoryExpireOnReadJournalsTrim: max_age evictions found by a
// SUBSCRIBE (a topic read but no longer published to) are journaled as a
// trim, as evictions by a publish are.
func TestHistoryExpireOnReadJournalsTrim(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	j := &pipeJournal{}
	b := New(Config{Journal: j, Now: func() time.Time { return now },
		TopicHistory: []HistoryRule{{Pattern: "/topic/#", Size: 16, MaxAge: time.Second}}})
	sp := b.spaces[DefaultVirtualHost]
	for i := range 3 {
		sp.publishTopic("r", &Message{ID: strconv.Itoa(i), Destination: "/topic/r", Body: []byte("x")})
	}
	now = now.Add(2 * time.Second)
	s := b.NewSession(&fakeTransport{}, "t")
	defer s.Release()
	if err := s.Feed([]byte("CONNECT\naccept-version:1.2\nheart-beat:0,0\n\n\x00SUBSCRIBE\nid:1\ndestination:/topic/r\nhistory:10\n\n\x00")); err != nil {
		t.Fatal(err)
	}
	for i := range j.submitted() {
		j.complete(t, i, nil)
	}
	var trims []uint64
	for _, r := range j.all() {
		if r.Op == OpHistoryTrim {
			trims = append(trims, r.HistorySeq)
		}
	}
	if !slices.Equal(trims, []uint64{3}) {
		t.Fatalf("trims %v, want one through 3", trims)
	}
}
