package broker

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/stompbox/stompbox/frames"
)

// A COMMIT journals its persistent SENDs and the removals of the
// persistent messages its ACKs settle in one append, before its RECEIPT;
// a crash right after the RECEIPT (a journal holding exactly what was
// appended by then) never brings an acknowledged message back, and
// always holds the transaction's message.
func TestJournalCommitAcksInTheSameAppend(t *testing.T) {
	for _, tc := range []struct {
		mode string
		acks func(ackIDs []string) []string // the ack ids the transaction ACKs
	}{
		{"client-individual", func(ids []string) []string { return ids }},
		{"client", func(ids []string) []string { return ids[len(ids)-1:] }}, // cumulative: the last covers both
	} {
		t.Run(tc.mode, func(t *testing.T) {
			j := &memJournal{}
			b := New(Config{Journal: j})
			c := newClient(t, b)
			c.connect()
			for i := range 2 {
				c.mustSend(frames.CmdSend, fmt.Sprint("in", i), "destination:/queue/in", "persistent:true")
			}
			c.mustSend(frames.CmdSubscribe, "", "destination:/queue/in", "id:s", "ack:"+tc.mode)
			var ackIDs []string
			for _, f := range c.poll() {
				if f.Command == frames.CmdMessage {
					ackIDs = append(ackIDs, hdr(f, "ack"))
				}
			}
			if len(ackIDs) != 2 {
				t.Fatalf("got %d messages, want 2", len(ackIDs))
			}
			before := len(j.appends)
			c.mustSend(frames.CmdBegin, "", "transaction:t")
			c.mustSend(frames.CmdSend, "out", "destination:/queue/out", "persistent:true", "transaction:t")
			for _, id := range tc.acks(ackIDs) {
				c.mustSend(frames.CmdAck, "", "id:"+id, "transaction:t")
			}
			c.poll()
			c.mustSend(frames.CmdCommit, "", "transaction:t", "receipt:c")
			if f := c.next(); f.Command != frames.CmdReceipt || hdr(f, "receipt-id") != "c" {
				t.Fatalf("COMMIT answered %v", headerLines(f))
			}
			// The crash: what was appended when the RECEIPT went out.
			j.mu.Lock()
			crashed := &memJournal{appends: slices.Clone(j.appends)}
			forgets := slices.Clone(j.forgets)
			j.mu.Unlock()

			b2 := New(Config{Journal: crashed})
			if err := b2.Recover(); err != nil {
				t.Fatal(err)
			}
			sp := b2.spaces[DefaultVirtualHost]
			if q, _ := sp.queue("/queue/in", nil); q != nil && q.count != 0 {
				t.Fatalf("after the crash /queue/in holds %d acknowledged messages", q.count)
			}
			if q, _ := sp.queue("/queue/out", nil); q == nil || q.count != 1 {
				t.Fatal("after the crash the committed message is missing")
			}
			want := []string{"enqueue /queue/out", "remove /queue/in", "remove /queue/in"}
			if got := crashed.appends[before:]; len(got) != 1 || !slices.Equal(ops(got[0]), want) {
				t.Fatalf("COMMIT appended %d times: %v, want one append of %v", len(got), got, want)
			}
			if len(forgets) != 0 {
				t.Fatalf("the ACKs' removals were journaled again: %v", ops(forgets))
			}
		})
	}
}

// A COMMIT whose ACKs only remove is taken by a full journal (removals
// free space), and the queue does not journal them a second time.
func TestJournalCommitAcksOnlyWithFullJournal(t *testing.T) {
	j := &memJournal{}
	b := New(Config{Journal: j})
	c := newClient(t, b)
	c.connect()
	c.mustSend(frames.CmdSend, "x", "destination:/queue/in", "persistent:true")
	c.mustSend(frames.CmdSubscribe, "", "destination:/queue/in", "id:s", "ack:client-individual")
	m := c.next()
	j.mu.Lock()
	j.full = true
	j.mu.Unlock()
	c.mustSend(frames.CmdBegin, "", "transaction:t")
	c.mustSend(frames.CmdAck, "", "id:"+hdr(m, "ack"), "transaction:t")
	c.mustSend(frames.CmdCommit, "", "transaction:t", "receipt:c")
	if f := c.next(); f.Command != frames.CmdReceipt || hdr(f, "receipt-id") != "c" {
		t.Fatalf("COMMIT answered %v", headerLines(f))
	}
	if got := ops(j.all()); !slices.Equal(got, []string{"enqueue /queue/in", "remove /queue/in"}) {
		t.Fatalf("journal holds %v", got)
	}
	if q, _ := b.spaces[DefaultVirtualHost].queue("/queue/in", nil); q != nil && q.count != 0 {
		t.Fatalf("the acknowledged message is still counted (%d)", q.count)
	}
}

// A dead-letter move the journal refuses leaves the message in its queue,
// ready with its delivery count, and is counted; once the journal takes
// it, the move happens.
func TestJournalDeadLetterRefusedKeepsMessage(t *testing.T) {
	for _, tc := range []struct {
		name         string
		breakJournal func(j *memJournal)
	}{
		{"io error", func(j *memJournal) { j.fail = errors.New("mem: disk on fire") }},
		{"full", func(j *memJournal) { j.full = true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := &memJournal{}
			b := New(Config{Journal: j, MaxRedeliveries: 1})
			c := newClient(t, b)
			c.connect()
			c.mustSend(frames.CmdSend, "poison", "destination:/queue/jobs", "persistent:true")
			c.mustSend(frames.CmdSubscribe, "", "destination:/queue/jobs", "id:s", "ack:client-individual")
			m := c.next()
			c.mustSend(frames.CmdNack, "", "id:"+hdr(m, "ack"))
			m = c.next() // delivery 2: past MaxRedeliveries once NACKed
			j.mu.Lock()
			tc.breakJournal(j)
			appends := len(j.appends)
			j.mu.Unlock()

			c.mustSend(frames.CmdNack, "", "id:"+hdr(m, "ack"))
			if got := b.Stats().DeadLetterFailures.Load(); got != 1 {
				t.Fatalf("DeadLetterFailures = %d, want 1", got)
			}
			if b.Stats().DeadLettered.Load() != 0 || b.Stats().Dropped.Load() != 0 {
				t.Fatal("a refused move counted as moved or dropped")
			}
			sp := b.spaces[DefaultVirtualHost]
			q, _ := sp.queue("/queue/jobs", nil)
			if q == nil || q.count != 1 {
				t.Fatal("the message left its queue though the journal refused its move")
			}
			if dlq, _ := sp.queue("/queue/DLQ.jobs", nil); dlq != nil && dlq.count != 0 {
				t.Fatal("the DLQ holds the message though the journal refused it")
			}
			if len(j.appends) != appends {
				t.Fatalf("refused appends recorded: %v", j.appends[appends:])
			}
			m = c.next() // redelivered, its count kept
			if string(m.Body) != "poison" || hdr(m, "delivery-count") != "3" {
				t.Fatalf("redelivery %v", headerLines(m))
			}

			j.mu.Lock()
			j.fail, j.full = nil, false
			j.mu.Unlock()
			c.mustSend(frames.CmdNack, "", "id:"+hdr(m, "ack"))
			if q.count != 0 || b.Stats().DeadLettered.Load() != 1 {
				t.Fatalf("after the journal recovered: queue holds %d, dead-lettered %d", q.count, b.Stats().DeadLettered.Load())
			}
			last := j.appends[len(j.appends)-1]
			if !slices.Equal(ops(last), []string{"remove /queue/jobs", "enqueue /queue/DLQ.jobs"}) {
				t.Fatalf("dead-lettering appended %v", ops(last))
			}
			if dlq, _ := sp.queue("/queue/DLQ.jobs", nil); dlq == nil || dlq.count != 1 {
				t.Fatal("the DLQ does not hold the message")
			}
		})
	}
}
