package broker

import "testing"

// nopPipeJournal takes every append at once and writes nothing (a
// benchmark of the broker's side of journaling).
type nopPipeJournal struct{ memJournal }

func (*nopPipeJournal) AppendAsync(done JournalDone, _ ...JournalRecord) error {
	done.JournalDone(nil)
	return nil
}

// BenchmarkHistoryPublishJournaled: a publish to a history topic with a
// pipelined journal (the history-append and its JournalDone): the
// JournalDone that marks a lost append holds one pointer, so it costs no
// allocation.
func BenchmarkHistoryPublishJournaled(b *testing.B) {
	br := New(Config{Journal: &nopPipeJournal{}, TopicHistory: []HistoryRule{{Pattern: "/topic/#", Size: 1024}}})
	sp := br.spaces[DefaultVirtualHost]
	m := &Message{ID: "x", Destination: "/topic/bench", Body: []byte("hello")}
	b.ReportAllocs()
	for b.Loop() {
		sp.publishTopic("bench", m)
	}
}
