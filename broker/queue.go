package broker

import (
	"cmp"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/stompbox/stompbox/frames"
)

// queuedMessage is a message's place in one queue: the same Message may sit
// in several queues (durable subscriptions of one topic), each counting its
// own deliveries.
type queuedMessage struct {
	msg        *Message
	seq        uint64 // immutable: enqueue order within the queue
	deliveries int    // guarded by the queue's mu
	// at (immutable) is when it was enqueued here, in ms since the epoch
	// (recovered ones: when recovered), for the admin API's oldest age; it
	// keeps the struct at 48 bytes, the size class it had.
	at int64
	// settle (nil unless the cluster fed it) settles it with the cluster,
	// once: guarded by the queue's mu while the queue holds it, else by
	// the one goroutine that does (cluster_queue.go).
	settle Settler
}

// queue is point-to-point: messages wait while there is no consumer; each
// goes to one consumer, round-robin among those with credit; order is kept
// except for redeliveries, which go back to the front.
type queue struct {
	b       *Broker  // immutable
	sp      *space   // immutable: the virtual host it lives in
	name    string   // immutable: key in Broker.queues and the MESSAGE destination
	dlq     string   // immutable: dead-letter destination; "" drops instead
	owner   *Session // immutable: for temporary queues, the only session that may consume
	durable bool     // immutable: kept without consumers (backs a durable subscription)
	// creator (set under the table lock when the queue is created, then
	// immutable) is the user quota it counts against until it leaves the
	// table; nil: none (dead-letter, recovered and durable queues).
	creator *userQuota
	// journaled (immutable): persistent messages here are journaled (a
	// journal is configured and this is not a temporary queue).
	journaled bool
	// clustered (immutable): the queue lives in the cluster; what it
	// holds here was fed by feed (cluster_queue.go).
	clustered bool
	feed      QueueFeed       // guarded by mu: nil while it has no consumer
	feedGen   uint64          // guarded by mu: counts the feeds started
	settles   []pendingSettle // guarded by mu: settlements to make once mu is released

	mu        sync.Mutex
	ready     deque[*queuedMessage] // guarded by mu
	consumers []*subscription       // guarded by mu
	next      int                   // guarded by mu: round-robin position
	count     int                   // guarded by mu: ready plus unacknowledged
	bytes     int                   // guarded by mu
	deleted   bool                  // guarded by mu: removed from the broker; enqueue must look up again
	seq       uint64                // guarded by mu: last enqueue sequence number
	pending   []JournalRecord       // guarded by mu: removals and re-enqueues to journal once mu is released
	// enqueued and delivered count messages pushed and deliveries made
	// since the queue was created (guarded by mu: plain counters where
	// the lock is held anyway), for the admin API (admin_queue.go).
	enqueued, delivered uint64
	// reservedCount and reservedBytes are what open transactions will add
	// at COMMIT (guarded by mu): counted by roomLocked as if queued, and in
	// the broker's queued bytes, so a transaction cannot pile up more than
	// the queue and the broker may hold.
	reservedCount int
	reservedBytes int
	// waiters are the blocked producers to Poke once the queue drains to
	// its low-water mark (flow.go); nil when none, so the check on the
	// dequeue path is one nil test.
	waiters map[*Session]struct{} // guarded by mu
	// wakeBytes is the byte level at which waiters are woken: the
	// low-water mark, lower when a waiter needs more room than it leaves.
	wakeBytes int // guarded by mu
}

// errQueueDeleted makes a sender look the queue up again: it was removed
// between lookup and enqueue.
var errQueueDeleted = errors.New("broker: queue deleted")

func newQueue(sp *space, name string, owner *Session, durable bool) *queue {
	b := sp.b
	q := &queue{b: b, sp: sp, name: name, owner: owner, durable: durable, journaled: b.cfg.Journal != nil && owner == nil}
	if b.clusterQueueName(name, owner, durable) {
		q.clustered, q.journaled = true, false
	}
	if short, ok := strings.CutPrefix(name, "/queue/"); ok && !strings.HasPrefix(short, "DLQ.") {
		q.dlq = "/queue/DLQ." + short
	}
	return q
}

// enqueue adds m; with checkLimits, a full queue refuses it with the
// limit-exceeded error its producer gets.
func (q *queue) enqueue(m *Message, checkLimits bool) error {
	size := m.size()
	q.mu.Lock()
	defer q.unlock()
	if q.deleted {
		return errQueueDeleted
	}
	if checkLimits {
		if err := q.roomLocked(1, size); err != nil {
			return err
		}
	}
	q.b.queuedBytes.Add(int64(size))
	q.pushLocked(m, size)
	return nil
}

// pushLocked appends m (of size bytes, already in the broker's queued
// bytes) to the ready messages and dispatches.
func (q *queue) pushLocked(m *Message, size int) {
	q.seq++
	q.ready.PushBack(&queuedMessage{msg: m, seq: q.seq, at: q.b.nowMs()})
	q.enqueued++
	q.count++
	q.bytes += size
	q.dispatchLocked()
}

// connLimitErr is the ERROR for a limit of the connection itself
// (subscriptions, transactions, destinations it created): the same client
// doing the same thing again hits it again, so it is not retryable.
func connLimitErr(detail string) *stompError {
	return &stompError{code: CodeLimitExceeded, message: "limit exceeded",
		detail: detail + "; close some before opening more, or ask the operator to raise the limit.",
		reason: CloseLimitExceeded}
}

func limitErr(detail string) *stompError {
	return &stompError{code: CodeLimitExceeded, message: "limit exceeded",
		detail:    detail + "; the message was not accepted. Retry after consumers catch up.",
		retryable: true, reason: CloseLimitExceeded}
}

// dispatchLocked hands ready messages to consumers with credit and room.
func (q *queue) dispatchLocked() {
	defer q.moreLocked()
	if q.ready.Len() == 0 || len(q.consumers) == 0 {
		return
	}
	now := q.b.nowMs()
	for q.ready.Len() > 0 {
		qm := q.ready.Front()
		if qm.msg.expired(now) {
			q.ready.PopFront()
			q.settleLocked(qm, settleTerm)
			q.forgetLocked(qm)
			q.b.stats.Expired.Add(1)
			continue
		}
		c := q.pickLocked(qm.msg)
		if c == nil {
			return
		}
		q.ready.PopFront()
		qm.deliveries++
		if !c.offer(qm) { // closed or filled since it was picked
			qm.deliveries--
			q.ready.PushFront(qm)
			return
		}
		q.delivered++
		if c.ackMode == ackAuto {
			// Consumed for the queue's counts; its removal is journaled
			// by the session's writer once it takes the MESSAGE
			// (appendOutput), or never if it comes back (putBack).
			q.dropLocked(qm)
		}
	}
}

// pickLocked returns the next consumer, round-robin, with credit and outbox
// room for a delivery of m; nil if none has.
func (q *queue) pickLocked(m *Message) *subscription {
	n := len(q.consumers)
	for i := range n {
		c := q.consumers[(q.next+i)%n]
		if c.canTake(deliverySize(m, c), q) {
			q.next = (q.next + i + 1) % n
			return c
		}
	}
	return nil
}

// forgetLocked drops a message that left the queue for good, and queues its
// removal for the journal.
func (q *queue) forgetLocked(qm *queuedMessage) {
	q.settleLocked(qm, settleAck)
	q.dropLocked(qm)
	q.pending = q.appendRemoval(q.pending, qm)
}

// dropLocked is forgetLocked without the journal record, for a caller that
// journals the removal itself (dead-lettering: with the DLQ's enqueue).
func (q *queue) dropLocked(qm *queuedMessage) {
	size := qm.msg.size()
	q.count--
	q.bytes -= size
	q.b.queuedBytes.Add(-int64(size))
	q.wakeLocked()
}

// wakeLocked pokes the producers waiting for room in q or in the broker's
// total, if any, after q gave some back.
func (q *queue) wakeLocked() {
	if q.waiters != nil {
		q.wakeWaitersLocked()
	}
	if q.b.flow.totalWaiting.Load() != 0 {
		q.b.wakeTotalWaiters()
	}
}

// unlock releases mu and then journals the records made under it: no
// journal I/O happens under a queue lock.
func (q *queue) unlock() {
	recs, settles := q.pending, q.settles
	q.pending, q.settles = nil, nil
	q.mu.Unlock()
	if len(recs) > 0 {
		q.b.journalRemoves(recs)
	}
	for _, p := range settles {
		p.run()
	}
}

// dispatch is dispatchLocked for callers without the lock (a writer whose
// outbox drained).
func (q *queue) dispatch() {
	q.mu.Lock()
	q.releaseFedLocked() // its consumers may all be parked now
	q.startFeedLocked()  // a new consumer's feed starts once its RECEIPT is queued
	q.dispatchLocked()
	q.unlock()
	q.retireIfIdle()
}

// attach adds a consumer without dispatching to it yet (its SUBSCRIBE's
// RECEIPT must go first); false if the queue was retired meanwhile, and the
// subscriber must look it up again.
func (q *queue) attach(sub *subscription) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.deleted {
		return false
	}
	q.consumers = append(q.consumers, sub)
	return true
}

// putBack returns an auto-ack message that was never written to its
// consumer to the front of the queue, still counting its delivery. Its
// removal was never journaled (the writer journals it when it takes the
// MESSAGE), so on disk it is still where it was: nothing to record.
func (q *queue) putBack(qm *queuedMessage) {
	size := qm.msg.size()
	q.mu.Lock()
	if q.deleted {
		q.mu.Unlock()
		q.putBackDeleted(qm)
		return
	}
	q.ready.PushFront(qm)
	q.count++
	q.bytes += size
	q.b.queuedBytes.Add(int64(size))
	q.releaseFedLocked()
	q.dispatchLocked()
	q.unlock()
}

// room reports whether n more messages of bytes total fit the queue's
// limits; a transaction checks it for each SEND it takes.
func (q *queue) room(n, bytes int) *stompError {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.roomLocked(n, bytes)
}

func (q *queue) roomLocked(n, bytes int) *stompError {
	cfg := &q.b.cfg
	switch {
	case n > cfg.MaxQueueMessages || bytes > cfg.MaxQueueBytes || bytes > cfg.MaxTotalQueuedBytes:
		// Never fits, however long the producer waits: not a reason to
		// block, nor to retry.
		return &stompError{code: CodeLimitExceeded, message: "limit exceeded", reason: CloseLimitExceeded,
			detail: "queue " + q.name + " cannot hold " + strconv.Itoa(n) + " messages of " + strconv.Itoa(bytes) +
				" bytes at all (limits: " + strconv.Itoa(cfg.MaxQueueMessages) + " messages, " +
				strconv.Itoa(cfg.MaxQueueBytes) + " bytes, " + strconv.Itoa(cfg.MaxTotalQueuedBytes) + " bytes in all queues)."}
	case q.count+q.reservedCount+n > cfg.MaxQueueMessages:
		return q.fullErr("queue "+q.name+" holds its limit of "+strconv.Itoa(cfg.MaxQueueMessages)+" messages", bytes)
	case q.bytes+q.reservedBytes+bytes > cfg.MaxQueueBytes:
		return q.fullErr("queue "+q.name+" holds its limit of "+strconv.Itoa(cfg.MaxQueueBytes)+" bytes", bytes)
	case q.b.queuedBytes.Load()+int64(bytes) > int64(cfg.MaxTotalQueuedBytes):
		e := fullErr(FullTotal, "the broker holds its limit of "+strconv.Itoa(cfg.MaxTotalQueuedBytes)+" queued bytes")
		e.fullNeed = bytes
		return e
	}
	return nil
}

// removeConsumer detaches sub and puts back what it left unacknowledged.
func (q *queue) removeConsumer(sub *subscription, unacked []delivery) {
	q.mu.Lock()
	for i, c := range q.consumers {
		if c == sub {
			q.consumers = append(q.consumers[:i], q.consumers[i+1:]...)
			q.consumers = q.consumers[:len(q.consumers):len(q.consumers)]
			break
		}
	}
	dead := q.requeueLocked(unacked, nil)
	q.releaseFedLocked()
	q.dispatchLocked()
	q.unlock()
	q.deadLetter(dead, "consumer gone after max redeliveries")
	q.retireIfIdle()
}

// acked forgets acknowledged deliveries and refills the freed credit;
// journaled says their removals are in the journal already (a COMMIT's).
func (q *queue) acked(ds []delivery, journaled bool) {
	q.mu.Lock()
	for _, d := range ds {
		if journaled {
			q.settleLocked(d.qm, settleAck)
			q.dropLocked(d.qm)
		} else {
			q.forgetLocked(d.qm)
		}
	}
	q.dispatchLocked()
	q.unlock()
	q.retireIfIdle()
}

// nacked puts deliveries back for redelivery, or dead-letters them.
func (q *queue) nacked(ds []delivery) {
	q.mu.Lock()
	dead := q.requeueLocked(ds, nil)
	q.dispatchLocked()
	q.unlock()
	q.deadLetter(dead, "rejected (NACK) after max redeliveries")
	q.retireIfIdle()
}

// requeueLocked puts deliveries back in front in the order they were first
// enqueued (a message redelivered before sorts after later ones by ack id),
// except those past MaxRedeliveries, which it returns for dead-lettering.
func (q *queue) requeueLocked(ds []delivery, dead []*queuedMessage) []*queuedMessage {
	slices.SortFunc(ds, func(a, b delivery) int { return cmp.Compare(a.qm.seq, b.qm.seq) })
	limit := q.b.cfg.MaxRedeliveries
	naked := len(q.settles)
	defer func() { slices.Reverse(q.settles[naked:]) }() // given back oldest first, as they came
	for i := len(ds) - 1; i >= 0; i-- {
		qm := ds[i].qm
		if q.deleted { // removed (a durable deleted): the message goes with it
			q.settleLocked(qm, settleNak)
			q.forgetLocked(qm)
			continue
		}
		if limit >= 0 && qm.deliveries > limit {
			// Still counted here until its move to the DLQ is journaled
			// (deadLetter), so a refused move loses nothing.
			dead = append(dead, qm)
			continue
		}
		if qm.settle != nil { // fed by the cluster: back to it, for any node
			q.settleLocked(qm, settleNak)
			q.dropLocked(qm)
			continue
		}
		q.ready.PushFront(qm)
		q.pending = q.appendDeliveries(q.pending, qm)
	}
	return dead
}

// deadLetter moves messages to the queue's DLQ with the reason, outside any
// queue lock (the DLQ has its own). Without a DLQ they are dropped. Each
// stays counted in q until its move is journaled; a move the journal
// refuses leaves the message in q, ready with its delivery count, so the
// next NACK or disconnect tries again.
func (q *queue) deadLetter(dead []*queuedMessage, reason string) {
	if q.clustered {
		q.deadLetterClustered(dead, reason)
		return
	}
	var kept []*queuedMessage // ascending seq, as dead is walked
	for i := len(dead) - 1; i >= 0; i-- {
		qm := dead[i]
		if q.dlq == "" {
			q.forget(qm)
			q.b.stats.Dropped.Add(1)
			q.b.cfg.Logger.Warn("message dropped after max redeliveries", "queue", q.name, "message_id", qm.msg.ID)
			continue
		}
		m := q.deadLetterMessage(qm, reason)
		moved, err := q.b.deadLetterTo(q, qm, m)
		switch {
		case !moved:
			kept = append(kept, qm)
			q.b.stats.DeadLetterFailures.Add(1)
			q.b.cfg.Logger.Error("dead-letter move refused by the journal; the message stays in its queue and will be redelivered",
				"queue", q.name, "dlq", q.dlq, "message_id", qm.msg.ID, "deliveries", qm.deliveries, "err", err)
		case err != nil:
			q.b.stats.Dropped.Add(1)
			q.b.cfg.Logger.Warn("dead-letter queue refused the message; dropped", "queue", q.name, "dlq", q.dlq,
				"message_id", qm.msg.ID, "err", err)
		default:
			q.b.stats.DeadLettered.Add(1)
		}
	}
	if len(kept) > 0 {
		q.keep(kept)
	}
}

// deadLetterMessage is qm's copy for the dead-letter queue, saying why.
func (q *queue) deadLetterMessage(qm *queuedMessage, reason string) *Message {
	return qm.msg.withHeaders(q.b.newMessageID(), q.dlq,
		frames.Header{Key: []byte("dlq-reason"), Value: []byte(reason)},
		frames.Header{Key: []byte("original-destination"), Value: []byte(q.name)},
		frames.Header{Key: []byte("original-message-id"), Value: []byte(qm.msg.ID)},
		frames.Header{Key: []byte("original-delivery-count"), Value: []byte(strconv.Itoa(qm.deliveries))},
	)
}

// drop takes out of q a message it still counts that left it for good
// and whose removal is journaled (or needs none).
func (q *queue) drop(qm *queuedMessage) {
	q.mu.Lock()
	q.dropLocked(qm)
	q.unlock()
}

// forget is forgetLocked for callers without the lock.
func (q *queue) forget(qm *queuedMessage) {
	q.mu.Lock()
	q.forgetLocked(qm)
	q.unlock()
}

// keep puts back in front, in order, messages q still counts whose
// dead-letter move failed; a queue deleted meanwhile takes them with it.
func (q *queue) keep(qms []*queuedMessage) {
	q.mu.Lock()
	for i := len(qms) - 1; i >= 0; i-- {
		if q.deleted {
			q.forgetLocked(qms[i])
			q.b.stats.Dropped.Add(1)
			continue
		}
		q.ready.PushFront(qms[i])
		q.pending = q.appendDeliveries(q.pending, qms[i])
	}
	q.dispatchLocked()
	q.unlock()
}

// retireIfIdle removes a plain queue that has no messages and no consumers,
// so queues named once do not accumulate.
func (q *queue) retireIfIdle() {
	if q.durable || q.owner != nil {
		return
	}
	q.mu.Lock()
	idle := q.count == 0 && q.reservedCount == 0 && len(q.consumers) == 0 && !q.deleted
	q.mu.Unlock()
	if !idle {
		return
	}
	sp := q.sp
	sp.mu.Lock()
	q.mu.Lock()
	if q.count == 0 && q.reservedCount == 0 && len(q.consumers) == 0 && !q.deleted && sp.queues[q.name] == q {
		q.deleted = true
		sp.dropQueueLocked(q.name)
		sp.releaseQueueLocked(q)
	}
	q.mu.Unlock()
	sp.mu.Unlock()
}

// tooManyQueues is the error for a queue that would pass MaxQueues.
func (b *Broker) tooManyQueues() *stompError {
	return limitErr("the broker holds its limit of " + strconv.Itoa(b.cfg.MaxQueues) + " queues")
}

// queue returns the queue named name. With create nil it only looks; else
// a missing queue is created, once create (called under the table lock)
// allows it: that is where a session counts the destinations it creates.
func (sp *space) queue(name string, create queueCreator) (*queue, *stompError) {
	q := sp.index.get(name) // not sp.mu: every SEND comes here (queue_index.go)
	if q != nil || create == nil {
		return q, nil
	}
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if q = sp.queues[name]; q != nil {
		return q, nil
	}
	if len(sp.queues) >= sp.b.cfg.MaxQueues {
		return nil, sp.b.tooManyQueues()
	}
	creator, err := create()
	if err != nil {
		return nil, err
	}
	q = newQueue(sp, name, nil, false)
	q.creator = creator
	sp.setQueueLocked(name, q)
	return q, nil
}

// enqueueNamed puts m into the named queue, creating it, and retries if the
// queue was retired between lookup and enqueue.
func (sp *space) enqueueNamed(name string, m *Message, checkLimits bool, create queueCreator) *stompError {
	for range 8 {
		q, serr := sp.queue(name, create)
		if serr != nil {
			return serr
		}
		err := q.enqueue(m, checkLimits)
		if err == nil {
			return nil
		}
		var se *stompError
		if errors.As(err, &se) {
			return se
		}
	}
	return limitErr("queue " + name + " is being recreated too often")
}
