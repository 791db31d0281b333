package broker

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// journalTimeout bounds one wait for the journal.
const journalTimeout = 30 * time.Second

// asyncJournal is implemented by journals that can take records without
// making the caller wait: removals, whose loss in a crash only means a
// redelivery.
type asyncJournal interface {
	Forget(recs ...JournalRecord)
}

// persists reports whether m must be journaled before it is acknowledged.
func (b *Broker) persists(m *Message) bool { return b.cfg.Journal != nil && m.Persistent }

// journalAppend writes recs and waits as the sync policy says; a full
// journal is the producer's limit-exceeded, a failed one journal-failed.
func (b *Broker) journalAppend(recs ...JournalRecord) *stompError {
	ctx, cancel := context.WithTimeout(context.Background(), journalTimeout)
	defer cancel()
	return b.journalError(b.cfg.Journal.Append(ctx, recs...))
}

// journalError is the ERROR a producer gets for err, the outcome of an
// Append (or of an AppendAsync); nil for nil.
func (b *Broker) journalError(err error) *stompError {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrJournalFull):
		// The journal's error says which bound: its disk budget, the file
		// system's free space under its minimum, or no space left.
		return fullErr(FullJournal, "the journal takes no new persistent messages now ("+err.Error()+")")
	case errors.Is(err, ErrJournalFailed):
		// The journal logged its failure once; each refused client is
		// counted by its close reason, not logged.
		return &stompError{code: CodeJournalFailed, message: "journal failed",
			detail: "The broker's journal could not write to disk, so it accepts no persistent work until the broker " +
				"restarts and recovers; this frame was not accepted. Reconnect and retry.",
			retryable: true, reason: CloseInternal}
	}
	b.cfg.Logger.Error("journal append failed", "err", err)
	return &stompError{code: CodeInternal, message: "journal write failed",
		detail:    "The message could not be written to disk and was not accepted: " + err.Error(),
		retryable: true, reason: CloseInternal}
}

// journalRemoves records removals (and re-enqueues) without holding any
// lock; a journal that can take them asynchronously does.
func (b *Broker) journalRemoves(recs []JournalRecord) {
	if len(recs) == 0 || b.cfg.Journal == nil {
		return
	}
	if aj, ok := b.cfg.Journal.(asyncJournal); ok {
		aj.Forget(recs...)
		return
	}
	if err := b.journalAppend(recs...); err != nil {
		b.cfg.Logger.Error("journal removal failed; the messages may come back after a restart", "err", err.message)
	}
}

// deadLetterTo moves qm from q to its DLQ as the new message m. With a
// journal, the DLQ's enqueue and q's removal are one atomic append, so a
// crash cannot lose the message between the two, and it is made before qm
// leaves q: if the journal refuses it, moved is false and qm is still
// counted in q, for the caller to put back. moved with an error means qm
// left q but the DLQ did not take it in memory.
func (b *Broker) deadLetterTo(q *queue, qm *queuedMessage, m *Message) (moved bool, err error) {
	if recs := q.appendRemoval(nil, qm); recs != nil {
		recs = append(recs, JournalRecord{Op: OpEnqueue, Queue: q.sp.journalPrefix + q.dlq, MessageID: m.ID, Message: m})
		if err := b.journalAppend(recs...); err != nil {
			return false, err
		}
		err = asError(q.sp.enqueueNamed(q.dlq, m, false, anyCreator))
	} else {
		err = asError(q.sp.enqueueNamed(q.dlq, m, true, anyCreator))
	}
	q.drop(qm)
	return true, err
}

// asError keeps a nil *stompError from becoming a non-nil error.
func asError(e *stompError) error {
	if e == nil {
		return nil
	}
	return e
}

// persistRecords returns the enqueue records a persistent SEND needs: one
// for a queue, one per durable subscription of a topic.
func (sp *space) persistRecords(r route, m *Message, recs []JournalRecord) []JournalRecord {
	if !sp.b.persists(m) {
		return recs
	}
	switch r.kind {
	case kindQueue:
		if sp.b.clusterRoute(r) {
			return recs // stored in the cluster, not journaled here
		}
		return append(recs, JournalRecord{Op: OpEnqueue, Queue: sp.journalPrefix + r.key, MessageID: m.ID, Message: m})
	case kindTopic:
		return durableRecords(sp.durableQueuesFor(r.key), m, recs)
	}
	return recs
}

// durableRecords appends the enqueue of m into each durable queue of qs.
func durableRecords(qs []*queue, m *Message, recs []JournalRecord) []JournalRecord {
	for _, q := range qs {
		recs = append(recs, JournalRecord{Op: OpEnqueue, Queue: q.journalName(), MessageID: m.ID, Message: m})
	}
	return recs
}

// durableQueuesFor lists the durable subscriptions' queues a message to
// topic name reaches.
func (sp *space) durableQueuesFor(name string) []*queue {
	exact, wild := sp.topics.match(name)
	qs := exact.appendFeeds(nil)
	for _, set := range wild {
		qs = set.appendFeeds(qs)
	}
	return qs
}

// Recover rebuilds queues and durable subscriptions from the journal. Call
// it once, before serving. A recovered message counts the deliveries
// journaled for it (when it last went back to its queue) plus one: a
// client may have received it since without acknowledging it (that
// delivery is not journaled), so it is delivered with redelivered:true,
// and max_redeliveries does not start over with a restart.
func (b *Broker) Recover() error {
	if b.cfg.Journal == nil {
		return nil
	}
	var messages, durables, unowned, historyMessages int
	err := b.cfg.Journal.Replay(func(r JournalRecord) error {
		switch r.Op {
		case OpDurableCreate:
			sp, _ := b.spaceOfJournalName(r.Queue)
			if sp == nil {
				b.cfg.Logger.Warn("journal: durable subscription of an unknown virtual host skipped", "queue", r.Queue)
				return nil
			}
			if sp.durIndex != nil {
				// Durable subscriptions live in the cluster now, which
				// never saw this one: refuse, as for queues.
				return fmt.Errorf("%w: the journal holds durable subscription %s, and durable subscriptions now live in the cluster; "+
					"start this node once without cluster mode and let its clients drain or remove it, "+
					"or move the journal directory aside (docs/cluster.md)", ErrJournalHoldsClusterQueues, r.Queue)
			}
			sp.mu.Lock()
			if sp.durables[keyOf(r.Durable)] == nil {
				// A recovered durable counts against its owner again, even
				// past the quota (which then only stops new ones); an
				// unowned one counts against nobody.
				var quota *userQuota
				if !r.Durable.Unowned && r.Durable.User != "" { // anonymous ones count against nobody, as when created
					quota = sp.quotaLocked(r.Durable.User)
					quota.durables++
				} else {
					unowned++
				}
				sp.createDurableLocked(r.Durable, quota)
				durables++
			}
			sp.mu.Unlock()
		case OpHistoryAppend, OpHistoryTrim, OpHistorySeal, OpHistoryDrop:
			if b.recoverHistory(r) && r.Op == OpHistoryAppend {
				historyMessages++
			}
		case OpEnqueue:
			if r.Message == nil {
				return fmt.Errorf("broker: journal enqueue of %s without a message", r.MessageID)
			}
			q := b.recoveredQueue(r.Queue)
			if q == nil {
				b.cfg.Logger.Warn("journal: message for an unknown queue skipped", "queue", r.Queue, "message_id", r.MessageID)
				return nil
			}
			if q.clustered {
				// Its queue lives in the cluster now, which never saw it:
				// refuse rather than lose or duplicate it.
				return fmt.Errorf("%w: the journal holds messages of %s, a queue that now lives in the cluster; "+
					"start this node once without cluster mode and let consumers drain its queues, "+
					"or move the journal directory aside (docs/cluster.md)", ErrJournalHoldsClusterQueues, q.name)
			}
			q.mu.Lock()
			q.seq++
			q.ready.PushBack(&queuedMessage{msg: r.Message, seq: q.seq, deliveries: max(r.Deliveries, 0) + 1, at: b.nowMs()})
			q.count++
			q.bytes += r.Message.size()
			q.b.queuedBytes.Add(int64(r.Message.size()))
			q.mu.Unlock()
			messages++
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("broker: recovery: %w", err)
	}
	sealedHistories, restartedHistories := b.finishHistoryRecovery()
	b.cfg.Logger.Info("journal recovered", "messages", messages, "durable_subscriptions", durables, "history_messages", historyMessages,
		"histories_kept", sealedHistories, "histories_restarted", restartedHistories)
	if unowned > 0 {
		b.cfg.Logger.Warn("journal: durable subscriptions without an owner (written by an older stompbox) recovered; "+
			"no user can attach to them, and durable_idle_ttl removes them (docs/persistence.md)", "count", unowned)
	}
	return nil
}

// recoveredQueue finds the queue a journaled message belongs to: a durable
// subscription's (created by its record first) or a /queue/ one.
func (b *Broker) recoveredQueue(journalName string) *queue {
	sp, name := b.spaceOfJournalName(journalName)
	if sp == nil {
		return nil // a virtual host no longer configured
	}
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if q := sp.queues[name]; q != nil {
		return q
	}
	if len(name) < len("/queue/") || name[:len("/queue/")] != "/queue/" {
		return nil
	}
	q := newQueue(sp, name, nil, false)
	sp.setQueueLocked(name, q)
	return q
}
