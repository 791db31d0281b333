package broker

import (
	"sync"
	"sync/atomic"
)

// outEntry is one frame waiting to be written: a MESSAGE delivery, encoded
// by the writer from the shared Message, or a control frame already encoded
// into the outbox's ctrl bytes.
type outEntry struct {
	msg        *Message       // nil for a control frame
	qm         *queuedMessage // set for an auto-ack queue delivery, so a discard can put it back
	sub        *subscription
	ackID      uint64
	deliveries int  // how many times msg has been delivered, this one included
	replayed   bool // replayed from a topic's history (history_subscribe.go)
	ctrlStart  int
	ctrlEnd    int
}

// outbox is the only part of a Session that other goroutines touch: any
// publisher pushes into it, the connection's writer takes from it. Pushes
// never block; past limit bytes they fail and the caller decides (a topic
// closes the session as a slow consumer, a queue keeps the message).
type outbox struct {
	mu      sync.Mutex
	closing bool        // guarded by mu: accepts nothing more; the writer closes after flushing
	reason  CloseReason // guarded by mu
	closed  atomic.Bool // mirrors closing for the read loop's lock-free check
	entries []outEntry  // guarded by mu
	ctrl    []byte      // guarded by mu: encoded control frames
	bytes   int         // guarded by mu: estimated encoded size of entries
	limit   int         // immutable
	// starved (guarded by mu; nil until a queue first skips this session
	// for lack of room) is the queues that did, to dispatch again once
	// the writer took the backlog.
	starved *[]*queue
	// park (guarded by mu; nil: not parking) says the connection dropped
	// but the session may be resumed (resume_park.go): closing for the
	// writer, control frames and queues, while topic deliveries go on
	// into its kept for the connection that resumes it. Behind a pointer:
	// few sessions ever park, and every idle one would carry it.
	park *outPark
	// budget (immutable) is the session's: bytes counts in it (see budget)
	// while the entries wait, until the writer takes them.
	budget *budget
}

// outPark is what a parking outbox keeps, guarded by the outbox's mu.
type outPark struct {
	kept []outEntry // counted in bytes
	// resend (counted in bytes) reserves room for the unacknowledged
	// deliveries a resume sends again (resume_adopt.go), so a parked
	// session overflows while parked, not right after its resume.
	resend int
}

// deliveryHeadersMax bounds the per-delivery lines of a MESSAGE besides
// the subscription header and the message id: the message-id line's
// framing, an ack header with two maximal numbers, and redelivered plus
// delivery-count.
const deliveryHeadersMax = len("message-id:\n") + len("ack:4294967295.18446744073709551615\n") +
	len("redelivered:true\ndelivery-count:-9223372036854775808\n")

// deliverySize is an upper bound of the encoded size of one delivery of m
// to sub, computed without encoding: what the message counts in a queue
// (its escaped headers, body and framing) plus the lines appendMessage adds
// for this delivery. An 8 KB subscription id is 8 KB per delivery, so the
// outbox must count it, not only the message.
func deliverySize(m *Message, sub *subscription) int {
	return m.size() + len(sub.header) + len(m.ID) + deliveryHeadersMax
}

// pushMessage queues a delivery of size bytes (deliverySize). It fails
// when closing, when the entry would take the outbox past its limit, or,
// unless force is set, the connection's budget past its own. Queue
// deliveries force: hasQueueRoom checked the budget already, and a queue
// delivery that cannot be pushed is simply kept.
func (o *outbox) pushMessage(e outEntry, size int, force bool) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closing && (o.park == nil || force) || o.bytes+size > o.limit || (!force && !o.budget.roomLocked(o.bytes, size)) {
		return false
	}
	o.bytes += size
	if o.closing { // parking: kept for the connection that resumes the session
		o.park.kept = append(o.park.kept, e)
		return true
	}
	o.entries = append(o.entries, e)
	return true
}

// hasQueueRoom reports whether a queue may push size more bytes. Queues may
// fill only half the outbox: a backlog a queue can hold back must not leave
// a topic message (which cannot wait) without room and get its consumer
// closed as slow. When there is no room, q is remembered and dispatched
// again once the writer has taken the backlog.
func (o *outbox) hasQueueRoom(size int, q *queue) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closing {
		return false
	}
	// An empty outbox takes one message whatever its size, or a message
	// larger than half the limit would never leave its queue. Otherwise
	// the connection's budget must have room too: it may be taken by the
	// session's open transactions or unacknowledged topic messages.
	if o.bytes == 0 || (o.bytes+size <= o.limit/2 && o.budget.roomLocked(o.bytes, size)) {
		return true
	}
	if o.starved == nil {
		o.starved = new([]*queue)
	}
	for _, s := range *o.starved {
		if s == q {
			return false
		}
	}
	*o.starved = append(*o.starved, q)
	return false
}

// pushControl queues an already encoded control frame (CONNECTED, RECEIPT,
// ERROR) built by encode, which appends to the outbox's ctrl bytes. It is
// counted at its encoded size, like a delivery: a client that sends BEGIN
// and ABORT with long receipts and never reads must not make the broker
// hold the RECEIPTs without bound. pushed is false when the outbox is
// closing (the frame is dropped) or full: then full is set and nothing was
// queued.
func (o *outbox) pushControl(encode func(dst []byte) []byte) (pushed, full bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closing {
		return false, false
	}
	start := len(o.ctrl)
	o.ctrl = encode(o.ctrl)
	n := len(o.ctrl) - start
	if o.bytes+n > o.limit || !o.budget.roomLocked(o.bytes, n) {
		o.ctrl = o.ctrl[:start]
		return false, true
	}
	o.bytes += n
	o.entries = append(o.entries, outEntry{ctrlStart: start, ctrlEnd: len(o.ctrl)})
	return true, false
}

// close marks the outbox closing after one final control frame (nil: none).
// With discard set, what is still queued is dropped first (a slow consumer
// gets its ERROR now, not after the backlog it cannot read), and the
// auto-ack queue deliveries among it are returned so they can go back to
// their queues. ok is false if the outbox was already closing.
func (o *outbox) close(reason CloseReason, discard bool, final func(dst []byte) []byte) (ok bool, unsent []outEntry) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closing {
		return false, nil
	}
	if discard {
		for _, e := range o.entries {
			if e.qm != nil {
				unsent = append(unsent, e)
			}
		}
		clear(o.entries)
		o.entries, o.ctrl, o.bytes = o.entries[:0], o.ctrl[:0], 0
	}
	if final != nil {
		// The final ERROR is always taken: it is one frame, and it is how
		// the client learns why it is closed. It is still counted, so the
		// budget says what is held until the writer takes it.
		start := len(o.ctrl)
		o.ctrl = final(o.ctrl)
		o.bytes += len(o.ctrl) - start
		o.entries = append(o.entries, outEntry{ctrlStart: start, ctrlEnd: len(o.ctrl)})
	}
	o.closing, o.reason = true, reason
	o.closed.Store(true)
	return true, unsent
}

// Spares up to these sizes are always kept by take; larger ones only
// while the batches taken are at least a quarter of their size. A burst
// (a CONNECTED with its limits, a fan-out backlog) then does not stay with
// a connection that went quiet, while a steady flow, small or large
// batches, reuses its buffers without allocating.
const (
	maxSpareCtrl    = 128 // bytes: a RECEIPT with a long receipt-id fits
	maxSpareEntries = 64  // entries: 4 KiB
)

// keepSpare reports whether a spare of capacity spare is kept when the
// batch taken holds used: up to small always, else up to 4 times used.
func keepSpare(spare, used, small int) bool { return spare <= max(small, 4*used) }

// take swaps the queued entries and control bytes for the writer's spare
// ones, so neither side allocates in steady state. A spare much larger
// than the batch taken is let go instead (keepSpare).
func (o *outbox) take(spareEntries []outEntry, spareCtrl []byte, spareStarved []*queue) (entries []outEntry, ctrl []byte, starved []*queue, closing bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !keepSpare(cap(spareCtrl), len(o.ctrl), maxSpareCtrl) {
		spareCtrl = nil
	}
	if !keepSpare(cap(spareEntries), len(o.entries), maxSpareEntries) {
		spareEntries = nil
	}
	entries, o.entries = o.entries, spareEntries[:0]
	ctrl, o.ctrl = o.ctrl, spareCtrl[:0]
	starved = spareStarved[:0]
	if o.starved != nil {
		starved, *o.starved = *o.starved, starved
	}
	if o.park != nil {
		o.bytes -= len(ctrl) // entries hold only control frames; the kept deliveries stay
	} else {
		o.bytes = 0
	}
	return entries, ctrl, starved, o.closing
}

// releaseIfEmpty lets go of the queue's buffers when nothing is queued.
func (o *outbox) releaseIfEmpty() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.entries) == 0 && len(o.ctrl) == 0 {
		o.entries, o.ctrl = nil, nil
	}
}

func (o *outbox) closeReason() (CloseReason, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.reason, o.closing
}
