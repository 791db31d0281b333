package broker

import (
	"cmp"
	"slices"
	"sync"
	"unicode/utf8"

	"github.com/stompbox/stompbox/frames"
	"sync/atomic"
)

// ackMode is a SUBSCRIBE's ack header (STOMP 1.2, "SUBSCRIBE ack Header").
type ackMode uint8

const (
	ackAuto             ackMode = iota // delivered = acknowledged
	ackClient                          // cumulative per subscription
	ackClientIndividual                // one message at a time
)

func parseAckMode(v []byte, present bool) (ackMode, bool) {
	if !present {
		return ackAuto, true
	}
	switch string(v) {
	case "auto":
		return ackAuto, true
	case "client":
		return ackClient, true
	case "client-individual":
		return ackClientIndividual, true
	}
	return 0, false
}

// delivery is one unacknowledged MESSAGE.
type delivery struct {
	ackID uint64
	msg   *Message
	qm    *queuedMessage // nil for a topic delivery (nothing to requeue)
}

// subscription is one SUBSCRIBE of one session, or (session nil, feed set)
// the topic side of a durable subscription, which enqueues into its queue.
type subscription struct {
	// The fields are ordered so that the struct has no padding: an idle
	// connection carries one per subscription (issue 15).

	// session (nil for a durable feed) is guarded by mu: a resumed
	// session adopts its parked one's subscriptions by re-pointing it
	// with every one of them locked (resume_adopt.go). Publishers read it
	// only under mu; the owning session's read loop may read it freely.
	session  *Session
	id       string   // immutable: the client's id header
	dest     string   // immutable: as subscribed
	pattern  string   // immutable: topic name or wildcard pattern
	prefetch int      // immutable: max unacked; 0 = unlimited
	header   []byte   // immutable: "subscription:<id>\n" escaped for the session
	queue    *queue   // immutable: the queue consumed (queue, temp, durable)
	feed     *queue   // immutable: for a durable feed, the queue it fills
	durable  *durable // immutable: the durable subscription consumed, if any
	// presence is the presence set it joins (presence:true) or watches
	// (/presence/...), if any: read loop only (presence_session.go).
	presence *presenceLink
	// spec (read loop only; cluster mode) is what of its SUBSCRIBE
	// another node needs to make it again when the session resumes there
	// (cluster_session.go).
	spec []frames.Header
	num  uint32 // immutable: session-local number, first part of ack ids
	// fedOut counts the auto-ack deliveries the cluster fed this
	// subscription that are still in its session's outbox: the credit
	// they take until the writer has them (cluster_queue.go).
	fedOut atomic.Int32

	mu      sync.Mutex
	unacked []delivery // guarded by mu: ascending ackID
	// hist (guarded by mu; nil until needed) is the cluster-mode state of
	// a topic subscription (subscription_topic.go): few subscriptions use
	// it, every idle one would carry it.
	hist *subHistory

	ackMode ackMode // immutable
	// headerText (immutable) says header is valid UTF-8.
	headerText bool
	closed     bool // guarded by mu
	// pending (guarded by mu) marks a SUBSCRIBE whose RECEIPT is not
	// queued yet: no queue delivers to it before (the client must know
	// the subscription is live when its first MESSAGE arrives).
	pending bool
	// holding (guarded by mu) keeps topic deliveries in hist.held while a
	// session handed over by another node is made again.
	holding bool
}

// subHistory is a subscription's cluster-mode state, guarded by its mu:
// skipEpoch and skipThrough name an offset a resume asked to go on after
// that this node's history mirror has not reached yet; lastHist is the
// newest message of a cluster's history delivered; held (heldBytes;
// heldOver past the outbox's limit) is what holding kept back.
type subHistory struct {
	skipEpoch   string
	skipThrough uint64
	lastHist    *Message
	held        []heldDelivery
	heldBytes   int
	heldOver    bool
}

// histLocked returns sub.hist, made on first use. Caller holds mu.
func (sub *subscription) histLocked() *subHistory {
	if sub.hist == nil {
		sub.hist = &subHistory{}
	}
	return sub.hist
}

// creditLocked reports whether a queue may hand this consumer another
// message, as far as its acknowledgements go. sub.mu is held.
func (sub *subscription) creditLocked() bool {
	return !sub.closed && !sub.pending && (sub.ackMode == ackAuto || sub.prefetch == 0 || len(sub.unacked) < sub.prefetch)
}

// canTake reports whether a queue may hand this consumer a delivery of
// size bytes now: credit, and room in its session's outbox. The session
// is read under mu (a resume may re-point it); mu nests the outbox's lock,
// as the lock order allows.
func (sub *subscription) canTake(size int, q *queue) bool {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	return sub.creditLocked() && sub.session.out.hasQueueRoom(size, q)
}

// offer queues one delivery of qm (from a queue, under its lock) to the
// session; false when the subscription closed or the outbox is full.
func (sub *subscription) offer(qm *queuedMessage) bool {
	sub.mu.Lock()
	s := sub.session
	if sub.closed {
		sub.mu.Unlock()
		return false
	}
	e := outEntry{msg: qm.msg, sub: sub, deliveries: qm.deliveries}
	if sub.ackMode != ackAuto {
		e.ackID = s.nextAck.Add(1)
	} else {
		e.qm = qm
	}
	// Counted before the push: once pushed, the writer may take it (and
	// settle it) at once.
	fed := e.qm != nil && qm.settle != nil
	if fed {
		sub.fedOut.Add(1)
	}
	ok := s.out.pushMessage(e, deliverySize(qm.msg, sub), true)
	if !ok && fed {
		sub.fedOut.Add(-1)
	}
	if ok && sub.ackMode != ackAuto {
		sub.unacked = append(sub.unacked, delivery{ackID: e.ackID, msg: qm.msg, qm: qm})
	}
	sub.mu.Unlock()
	if ok {
		s.b.stats.Delivered.Add(s.stripe, 1)
		if qm.deliveries > 1 {
			s.b.stats.Redelivered.Add(1)
		}
		s.t.Wake()
	}
	return ok
}

// deliverTopic hands a published message to a topic subscriber. It never
// blocks: a subscriber that cannot take it is closed as a slow consumer.
func (sub *subscription) deliverTopic(m *Message) { sub.deliverTopicEntry(m, false) }

// take removes and returns (appended to into) the deliveries an ACK or NACK
// of ackID covers: all up to it when cumulative, else just it.
func (sub *subscription) take(ackID uint64, cumulative bool, into []delivery) ([]delivery, bool) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	i, found := slices.BinarySearchFunc(sub.unacked, ackID, byAckID)
	if !found {
		return into, false
	}
	from := i
	if cumulative {
		from = 0
	}
	into = append(into, sub.unacked[from:i+1]...)
	sub.releaseTopic(sub.unacked[from : i+1])
	if from == 0 {
		// The oldest ones (in-order acknowledgement, the common case):
		// drop the prefix instead of moving everything after it, which
		// made each ACK cost the number of unacknowledged deliveries.
		clear(sub.unacked[:i+1])
		sub.unacked = sub.unacked[i+1:]
		return into, true
	}
	n := copy(sub.unacked[from:], sub.unacked[i+1:])
	clear(sub.unacked[from+n:])
	sub.unacked = sub.unacked[:from+n]
	return into, true
}

// peek appends to into the deliveries take(ackID, cumulative) would return
// once every delivery up to after was taken, without taking them: a COMMIT
// journals their removals before it applies its ACKs.
func (sub *subscription) peek(ackID, after uint64, cumulative bool, into []delivery) []delivery {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	i, found := slices.BinarySearchFunc(sub.unacked, ackID, byAckID)
	if !found {
		return into
	}
	from := i
	if cumulative {
		from, _ = slices.BinarySearchFunc(sub.unacked, after+1, byAckID)
	}
	return append(into, sub.unacked[from:i+1]...)
}

// findByMessageID returns the ack id of the unacked delivery of a message
// (STOMP 1.0/1.1 acknowledge by message-id).
func (sub *subscription) findByMessageID(id []byte) (uint64, bool) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	for _, d := range sub.unacked {
		if d.msg.ID == string(id) {
			return d.ackID, true
		}
	}
	return 0, false
}

// has reports whether ackID is still unacknowledged.
func (sub *subscription) has(ackID uint64) bool {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	_, found := slices.BinarySearchFunc(sub.unacked, ackID, byAckID)
	return found
}

// close stops deliveries and returns what was left unacknowledged.
func (sub *subscription) close() []delivery {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	sub.closed = true
	left := sub.unacked
	sub.unacked = nil
	sub.releaseTopic(left)
	return left
}

// releaseTopic gives back to the session's budget what unacknowledged
// topic deliveries (qm nil) charged; queue deliveries are counted by their
// queue instead.
func (sub *subscription) releaseTopic(ds []delivery) {
	for _, d := range ds {
		if d.qm == nil {
			sub.session.budget.release(d.msg.size())
		}
	}
}

// subscriptionHeader is the "subscription:<id>" line of every MESSAGE to sub.
func subscriptionHeader(esc frames.Escaping, id string) []byte {
	return frames.AppendHeaderString(nil, esc, "subscription", id)
}

// headerFor sets sub's subscription header for id and whether it is valid
// UTF-8 (known once, not per delivery: AppendOutputFrames).
func (sub *subscription) headerFor(esc frames.Escaping, id string) {
	sub.header = subscriptionHeader(esc, id)
	sub.headerText = utf8.Valid(sub.header)
}

func byAckID(d delivery, id uint64) int { return cmp.Compare(d.ackID, id) }
