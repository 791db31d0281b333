package persistence

import (
	"time"

	"github.com/stompbox/stompbox/broker"
)

var _ broker.PipelinedJournal = (*File)(nil)

// AppendAsync implements broker.PipelinedJournal: it queues recs as Append
// does (one atomic record, in order with every other Append and Forget)
// and returns without waiting. done.JournalDone is called once the sync
// policy is met, from the flusher goroutine, with nil or the error Append
// would have returned; the waiters of a round are told in queue order,
// after its one write and fsync (group commit). When AppendAsync returns an
// error nothing was queued and done is not called: the budget or
// journal.min_free cannot take the records (wrapping
// broker.ErrJournalFull), the journal has failed
// (broker.ErrJournalFailed) or is closed (ErrClosed).
func (f *File) AppendAsync(done broker.JournalDone, recs ...broker.JournalRecord) error {
	if len(recs) == 0 {
		if err := f.usable(); err != nil {
			return err
		}
		done.JournalDone(nil)
		return nil
	}
	start := time.Now()
	r, err := f.newRequest(recs, start)
	if err != nil {
		return err
	}
	r.timed = timedDone{f: f, done: done, start: start}
	r.notify = &r.timed
	return f.submit(r, r.grows)
}

// timedDone observes an AppendAsync's duration, submit to outcome, in the
// same histogram as Append's, then passes the outcome on.
type timedDone struct {
	f     *File
	done  broker.JournalDone
	start time.Time
}

// JournalDone implements broker.JournalDone.
func (t *timedDone) JournalDone(err error) {
	t.f.metrics.appendSeconds.Observe(since(t.start))
	t.done.JournalDone(err)
}
