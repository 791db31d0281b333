package broker

import (
	"context"
	"errors"

	"github.com/stompbox/stompbox/frames"
)

// Transport is the write side of one connection, implemented by the driver
// that owns the socket. The session never writes itself: it queues output
// and wakes the transport.
type Transport interface {
	// Wake says the session has output pending. It must not block; the
	// driver then calls Session.Output from its writer.
	Wake()
	// Close says the session has ended for reason: the driver flushes what
	// Output still returns (the last frame, if any) and closes the
	// connection. For a peer that is not reading (slow consumer) or when
	// the server is going away, the driver should not wait long for that
	// flush. It must not block and may be called more than once.
	Close(reason CloseReason)
	// Poke asks the driver to call Session.Tick (poked) from its reader soon:
	// the session has read-loop work that did not arrive on the socket
	// (room freed for a blocked producer, a token expiring, rights
	// reloaded). It must not block, may be called from any goroutine and
	// any number of times; several pokes may be answered by one Tick.
	Poke()
}

// Journal is what the broker needs from durable storage. With a journal
// configured, persistent messages (persistent:true) to queues and to durable
// subscriptions, their removal (ACK, expiry, dead-lettering) and durable
// subscriptions themselves are recorded, and replayed at start. Package
// persistence implements it; persistence/journaltest checks any
// implementation.
type Journal interface {
	// Append records recs, in order, and returns once they are as durable
	// as the journal's sync policy promises (policy "always": fsynced), so
	// a RECEIPT sent after it means on disk. Concurrent calls may share one
	// fsync. It returns an error wrapping ErrJournalFull when the disk
	// budget cannot take the records; nothing is recorded then.
	Append(ctx context.Context, recs ...JournalRecord) error
	// Replay calls fn with every record still live (an enqueue not yet
	// removed, a durable subscription not deleted, a topic history's
	// appends not trimmed and its newest trim) in the order they were
	// appended. The Message of a replayed enqueue is built with
	// RecoveredMessage; its Deliveries is the count of the last
	// OpDeliveries record appended for it since its enqueue (0: none):
	// OpDeliveries records are not replayed on their own. It is called
	// once, before the broker serves.
	Replay(fn func(JournalRecord) error) error
	// Close flushes and releases the journal.
	Close() error
}

// PipelinedJournal is an optional extension of Journal: a journal that can
// take an append without making its caller wait. With one, a session keeps
// many persistent SENDs in flight at once and sends their RECEIPTs in order
// as they complete (docs/persistence.md, "Pipelined publishing"); other
// journals are called through Append, one SEND at a time. A
// PipelinedJournal should also have a method Forget(recs ...JournalRecord)
// taking removal records without waiting (persistence.File has): topic
// history publishes under a topic's lock, and a removal it causes in a
// durable subscription's queue is otherwise a waited Append under that
// lock, holding up the topic's publishers for a disk write.
type PipelinedJournal interface {
	// AppendAsync queues recs as Append would and returns without waiting.
	// Once they are as durable as the sync policy promises, or cannot be,
	// done.JournalDone is called exactly once, with nil or the error Append
	// would have returned: a failed write wraps ErrJournalFailed; a disk
	// that filled after the records were queued (no room to write them)
	// wraps ErrJournalFull, and nothing of them was written, so the broker
	// may hand them over again. When AppendAsync returns an error nothing
	// was queued and done is never called: the disk budget or free-space
	// floor refuses them (wrapping ErrJournalFull), or the journal has
	// failed or is closed.
	AppendAsync(done JournalDone, recs ...JournalRecord) error
}

// JournalDone is told the outcome of one PipelinedJournal.AppendAsync. The
// journal calls it from its own goroutine, possibly before AppendAsync
// returns, so it must be cheap and must not block: the broker's only
// records the outcome and pokes the session, which applies it on its read
// loop.
type JournalDone interface {
	JournalDone(err error)
}

// ErrJournalFull is returned (wrapped) by Journal.Append when the disk
// budget is exhausted; the producer gets ERROR limit-exceeded.
var ErrJournalFull = errors.New("broker: journal full")

// ErrJournalFailed is returned (wrapped) by Journal.Append once a write or
// fsync of the journal has failed: what reached the disk is unknown, so the
// journal takes nothing more until the process restarts and recovers from
// it. The producer gets ERROR journal-failed (retryable).
var ErrJournalFailed = errors.New("broker: journal failed")

// JournalOp is what a JournalRecord records.
type JournalOp uint8

// The journal operations.
const (
	// OpEnqueue: Message entered Queue.
	OpEnqueue JournalOp = iota + 1
	// OpRemove: message MessageID left Queue for good (acknowledged,
	// expired, dead-lettered, or its durable subscription deleted).
	OpRemove
	// OpDurableCreate: durable subscription Durable was created; its
	// messages live in Queue.
	OpDurableCreate
	// OpDurableDelete: durable subscription Durable and its Queue were
	// deleted.
	OpDurableDelete
	// OpDeliveries: message MessageID, still in Queue, has been delivered
	// Deliveries times (it went back to its queue after a NACK or its
	// consumer left). Only the last one for an enqueue matters; a remove,
	// its durable subscription's delete or a new enqueue of the message
	// ends it.
	OpDeliveries
	// OpHistoryAppend: Message, with offset Epoch-HistorySeq, was
	// retained in the history of topic Queue (history_journal.go) at
	// PublishedAt.
	OpHistoryAppend
	// OpHistoryTrim: every message of topic Queue's history of Epoch up
	// to HistorySeq was evicted; the history goes on after HistorySeq.
	OpHistoryTrim
	// OpHistorySeal: topic Queue's history of Epoch was complete on the
	// journal at a clean shutdown, HistorySeq being the seq its next
	// message gets: a restart keeps the epoch only then
	// (history_seal.go).
	OpHistorySeal
	// OpHistoryDrop: topic Queue's history (of Epoch) was dropped: none
	// of its records is needed any more.
	OpHistoryDrop
)

// String names the operation.
func (op JournalOp) String() string {
	switch op {
	case OpEnqueue:
		return "enqueue"
	case OpRemove:
		return "remove"
	case OpDurableCreate:
		return "durable-create"
	case OpDurableDelete:
		return "durable-delete"
	case OpDeliveries:
		return "deliveries"
	case OpHistoryAppend:
		return "history-append"
	case OpHistoryTrim:
		return "history-trim"
	case OpHistorySeal:
		return "history-seal"
	case OpHistoryDrop:
		return "history-drop"
	}
	return "unknown"
}

// JournalRecord is one change to durable state.
type JournalRecord struct {
	Op        JournalOp
	Queue     string   // the queue key: /queue/<name>, or /durable/<user>/<client-id>/<name> (each part path-escaped)
	MessageID string   // OpEnqueue, OpRemove, OpDeliveries
	Message   *Message // OpEnqueue
	Durable   DurableSpec
	// Deliveries is OpDeliveries' count; on a replayed OpEnqueue, the
	// last count journaled for it (Journal.Replay).
	Deliveries int
	// Epoch and HistorySeq are the offset of OpHistoryAppend's message,
	// OpHistoryTrim's point and OpHistorySeal's next seq (OpHistoryDrop:
	// Epoch only); PublishedAt (ms since the epoch) is when
	// an appended message was published (its history's max_age).
	Epoch       string
	HistorySeq  uint64
	PublishedAt int64
}

// DurableSpec identifies a durable subscription and what it subscribes to.
// A durable subscription belongs to the user who created it: another user
// with the same client-id names a different one.
type DurableSpec struct {
	// User is the owner: the Principal.Name that created it.
	User           string
	ClientID, Name string
	Topic          string // the topic name or pattern, without /topic/
	// Unowned marks a durable subscription recovered from a journal
	// written before durable subscriptions had owners (journal format
	// version 1): no user can attach to, re-point or remove it; it keeps
	// its backlog until the idle TTL removes it (docs/persistence.md).
	Unowned bool
}

// RecoveredMessage rebuilds a journaled message for Replay. The slices
// become the message's own: the caller must not reuse them.
func RecoveredMessage(id, destination string, headers []frames.Header, body []byte, persistent bool, expiresAt int64) *Message {
	m := &Message{ID: id, Destination: destination, Headers: headers, Body: body, Persistent: persistent,
		ExpiresAt: expiresAt, enc12: appendHeaders12(nil, headers)}
	m.markText()
	return m
}
