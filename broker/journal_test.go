package broker

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/stompbox/stompbox/frames"
)

// memJournal is an in-memory Journal that records what the broker asks of
// it, so tests can check what is journaled, in which call, and replay it.
type memJournal struct {
	mu      sync.Mutex
	appends [][]JournalRecord // one entry per Append call
	forgets []JournalRecord
	// full makes Append fail with ErrJournalFull, except (as a File with a
	// disk budget) an append of removals only.
	full bool
	fail error // Append fails with it (an I/O error)
}

func (j *memJournal) Append(_ context.Context, recs ...JournalRecord) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.fail != nil {
		return j.fail
	}
	if j.full && slices.ContainsFunc(recs, func(r JournalRecord) bool { return r.Op != OpRemove && r.Op != OpDurableDelete }) {
		return fmt.Errorf("mem: %w", ErrJournalFull)
	}
	j.appends = append(j.appends, slices.Clone(recs))
	return nil
}

func (j *memJournal) Forget(recs ...JournalRecord) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.forgets = append(j.forgets, recs...)
}

func (j *memJournal) Close() error { return nil }

// all is every record in the order the journal would hold them.
func (j *memJournal) all() []JournalRecord {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []JournalRecord
	for _, a := range j.appends {
		out = append(out, a...)
	}
	return append(out, j.forgets...)
}

// Replay gives the live records: enqueues not removed, durables not deleted.
func (j *memJournal) Replay(fn func(JournalRecord) error) error {
	all := j.all()
	type key struct{ queue, id string }
	removed := map[key]bool{}
	deleted := map[string]bool{}
	counts := map[key]int{}
	for _, r := range all {
		switch r.Op {
		case OpRemove:
			removed[key{r.Queue, r.MessageID}] = true
		case OpDurableDelete:
			deleted[r.Queue] = true
		case OpDeliveries:
			counts[key{r.Queue, r.MessageID}] = r.Deliveries
		}
	}
	for _, r := range all {
		live := (r.Op == OpEnqueue && !removed[key{r.Queue, r.MessageID}] && !deleted[r.Queue]) ||
			(r.Op == OpDurableCreate && !deleted[r.Queue])
		if live {
			if r.Op == OpEnqueue {
				r.Deliveries = counts[key{r.Queue, r.MessageID}]
			}
			if err := fn(r); err != nil {
				return err
			}
		}
	}
	return nil
}

func ops(recs []JournalRecord) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.Op.String()+" "+r.Queue)
	}
	return out
}

func TestJournalPersistentQueueMessage(t *testing.T) {
	j := &memJournal{}
	b := New(Config{Journal: j})
	c := newClient(t, b)
	c.connect()
	c.mustSend(frames.CmdSend, "keep", "destination:/queue/q", "persistent:true", "receipt:r")
	c.mustSend(frames.CmdSend, "volatile", "destination:/queue/q", "receipt:v")
	if got := ops(j.all()); !slices.Equal(got, []string{"enqueue /queue/q"}) {
		t.Fatalf("journal holds %v, want only the persistent message's enqueue", got)
	}
	if m := j.all()[0].Message; string(m.Body) != "keep" || !m.Persistent {
		t.Fatalf("journaled message %q persistent=%v", m.Body, m.Persistent)
	}
	c.mustSend(frames.CmdSubscribe, "", "destination:/queue/q", "id:s", "ack:client-individual")
	fs := c.poll()
	var msgs []*frames.Frame
	for _, f := range fs {
		if f.Command == frames.CmdMessage {
			msgs = append(msgs, f)
		}
	}
	if len(msgs) != 2 {
		t.Fatalf("got %d messages, want 2", len(msgs))
	}
	for _, m := range msgs {
		c.mustSend(frames.CmdAck, "", "id:"+hdr(m, "ack"))
	}
	if got := ops(j.all()); !slices.Equal(got, []string{"enqueue /queue/q", "remove /queue/q"}) {
		t.Fatalf("after ACKs the journal holds %v", got)
	}
}

func TestJournalRecoverRedelivers(t *testing.T) {
	j := &memJournal{}
	b := New(Config{Journal: j})
	c := newClient(t, b)
	c.connect("client-id:app")
	c.mustSend(frames.CmdSubscribe, "", "destination:/topic/news", "id:d", "durable-subscription-name:n", "ack:client")
	c.mustSend(frames.CmdUnsubscribe, "", "id:d")
	for i := range 3 {
		c.mustSend(frames.CmdSend, fmt.Sprint("q", i), "destination:/queue/work", "persistent:true")
	}
	c.mustSend(frames.CmdSend, "n0", "destination:/topic/news", "persistent:true", "x-k:a:b")
	c.s.Release()

	// A new broker on the same journal: a restart.
	b2 := New(Config{Journal: j})
	if err := b2.Recover(); err != nil {
		t.Fatal(err)
	}
	d := newClient(t, b2)
	d.connect("client-id:app")
	d.mustSend(frames.CmdSubscribe, "", "destination:/queue/work", "id:w")
	d.mustSend(frames.CmdSubscribe, "", "destination:/topic/news", "id:d", "durable-subscription-name:n")
	fs := d.poll()
	if got := bodies(fs); !slices.Equal(got, []string{"q0", "q1", "q2", "n0"}) {
		t.Fatalf("after recovery got %v", got)
	}
	for _, f := range fs {
		if hdr(f, "redelivered") != "true" {
			t.Fatalf("recovered %q without redelivered:true", f.Body)
		}
	}
	if hdr(fs[3], "x-k") != "a:b" || hdr(fs[3], "destination") != "/topic/news" {
		t.Fatalf("recovered durable message headers %v", headerLines(fs[3]))
	}
}

func TestJournalFullRefusesPersistentSend(t *testing.T) {
	j := &memJournal{full: true}
	b := New(Config{Journal: j, FullPolicy: FullError})
	c := newClient(t, b)
	c.connect()
	c.mustSend(frames.CmdSend, "fine", "destination:/queue/q") // not persistent: never touches the journal
	err := c.send(frames.CmdSend, "keep", "destination:/queue/q", "persistent:true", "receipt:r")
	if !isClosed(err) {
		t.Fatalf("persistent SEND with a full journal: %v", err)
	}
	f := c.next()
	if hdr(f, "error-code") != CodeLimitExceeded || hdr(f, "retryable") != "true" || hdr(f, "receipt-id") != "r" {
		t.Fatalf("got %v", headerLines(f))
	}
	q, _ := b.spaces[DefaultVirtualHost].queue("/queue/q", nil)
	if q == nil || q.count != 1 {
		t.Fatal("the refused persistent message must not be queued; the other one must")
	}
}

// A journal that failed for good (a failed fsync) refuses every kind of
// persistent work with ERROR journal-failed: retryable, since a restart
// recovers, and a close reason of its own (internal), not internal-error.
func TestJournalFailedRefusesPersistentWork(t *testing.T) {
	tests := []struct {
		name  string
		setup [][]string // frames before the refused one: command, then headers
		frame []string
	}{
		{"persistent SEND", nil, []string{"SEND", "destination:/queue/q", "persistent:true", "receipt:r"}},
		{"COMMIT of a persistent SEND",
			[][]string{{"BEGIN", "transaction:tx"}, {"SEND", "destination:/queue/q", "persistent:true", "transaction:tx"}},
			[]string{"COMMIT", "transaction:tx", "receipt:r"}},
		{"durable SUBSCRIBE", nil,
			[]string{"SUBSCRIBE", "id:d", "destination:/topic/t", "durable-subscription-name:d", "receipt:r"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := &memJournal{fail: fmt.Errorf("disk: %w: fsync: input/output error", ErrJournalFailed)}
			b := New(Config{Journal: j})
			c := newClient(t, b)
			c.connect("client-id:c1")
			for _, f := range tt.setup {
				c.mustSend(frames.ParseCommand([]byte(f[0])), "x", f[1:]...)
			}
			err := c.send(frames.ParseCommand([]byte(tt.frame[0])), "x", tt.frame[1:]...)
			if !isClosed(err) {
				t.Fatalf("%s with a failed journal: %v, want the session closed", tt.frame[0], err)
			}
			f := c.next()
			if f.Command != frames.CmdError || hdr(f, "error-code") != CodeJournalFailed ||
				hdr(f, "retryable") != "true" || hdr(f, "receipt-id") != "r" {
				t.Fatalf("got %s %v, want ERROR error-code:%s retryable:true receipt-id:r", f.Command, headerLines(f), CodeJournalFailed)
			}
			if r, _ := c.s.CloseReason(); r != CloseInternal {
				t.Errorf("close reason %v, want %v", r, CloseInternal)
			}
		})
	}
}

func TestJournalTransactionIsOneAppend(t *testing.T) {
	j := &memJournal{}
	b := New(Config{Journal: j})
	c := newClient(t, b)
	c.connect()
	c.mustSend(frames.CmdBegin, "", "transaction:t")
	c.mustSend(frames.CmdSend, "a", "destination:/queue/a", "persistent:true", "transaction:t")
	c.mustSend(frames.CmdSend, "b", "destination:/queue/b", "persistent:true", "transaction:t")
	if len(j.all()) != 0 {
		t.Fatal("journaled before COMMIT")
	}
	c.mustSend(frames.CmdCommit, "", "transaction:t")
	if len(j.appends) != 1 || !slices.Equal(ops(j.appends[0]), []string{"enqueue /queue/a", "enqueue /queue/b"}) {
		t.Fatalf("appends %v, want one append with both enqueues", j.appends)
	}
}

func TestJournalDeadLetterIsAtomic(t *testing.T) {
	j := &memJournal{}
	b := New(Config{Journal: j, MaxRedeliveries: 1})
	c := newClient(t, b)
	c.connect()
	c.mustSend(frames.CmdSend, "poison", "destination:/queue/jobs", "persistent:true")
	c.mustSend(frames.CmdSubscribe, "", "destination:/queue/jobs", "id:s", "ack:client-individual")
	for range 2 {
		fs := c.poll()
		c.mustSend(frames.CmdNack, "", "id:"+hdr(fs[len(fs)-1], "ack"))
	}
	last := j.appends[len(j.appends)-1]
	if !slices.Equal(ops(last), []string{"remove /queue/jobs", "enqueue /queue/DLQ.jobs"}) {
		t.Fatalf("dead-lettering appended %v, want the removal and the DLQ enqueue together", ops(last))
	}
}
