package broker

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/stompbox/stompbox/frames"
)

// route is where a SEND goes, resolved before anything is enqueued so that
// a transaction can validate at SEND and apply at COMMIT.
type route struct {
	kind destKind
	key  string // queue key, or topic name
}

// handleSend publishes one message (or adds it to its transaction).
func (s *Session) handleSend(f *frames.Frame) *stompError {
	m, r, err := s.buildMessage(f)
	if err != nil {
		return err
	}
	key, err := s.dedupeKey(f)
	if err != nil {
		return err
	}
	if m != nil && key != nil && (s.b.clusterRoute(r) || s.historyRoute(r) >= 0) && s.b.cfg.DedupeWindow > 0 {
		// The cluster recognizes a repeat on any node, within the window.
		m.DedupeID = clusterDedupeID(s.space.name, s.principal.Name, m.Destination, key)
	}
	if tx, ok := f.Header("transaction"); ok {
		op := txOp{cmd: frames.CmdSend, msg: m, route: r}
		if key != nil {
			op.idemKey = string(key) // claimed at COMMIT (dedupe.go)
		}
		return s.addToTransaction(f, tx, op)
	}
	if m != nil {
		// The key is claimed before the SEND is applied and given back if
		// it is refused or must wait: only an accepted SEND burns it.
		claim, dup := s.claimKey(m.Destination, key)
		if dup {
			s.duplicateReceipt(f)
			return nil
		}
		if s.b.pipelined != nil || s.b.cfg.Cluster != nil {
			piped, err := s.sendPipelined(f, r, m, claim)
			if err != nil {
				claim.release()
				return err
			}
			if piped {
				return nil
			}
		}
		if s.pipe.waiting() {
			claim.release() // claimed again when it runs
			s.pipeHold(f)   // it keeps its order behind the SENDs in flight
			return nil
		}
		// A pipelined journal left nothing to journal here: sendPipelined
		// took every SEND that has records.
		if err := s.applySend(r, m, s.b.pipelined == nil); err != nil {
			claim.release()
			return err
		}
		claim.settle()
	} else if s.pipe.waiting() {
		s.pipeReceipt(f) // expired: only its RECEIPT keeps its place
		return nil
	}
	s.receipt(f)
	return nil
}

// applySend enqueues or publishes m now (a SEND outside a transaction
// and the pipeline), journaling it first when journal says it may have
// records.
func (s *Session) applySend(r route, m *Message, journal bool) *stompError {
	if r.kind == kindTopic {
		if err := s.publishTopicClustered(r.key, m); err != nil {
			return err
		}
	}
	checkLimits := true
	var recs []JournalRecord
	if journal {
		var err *stompError
		if recs, err = s.persistentRecords(r, m); err != nil {
			return err
		}
	}
	if len(recs) > 0 {
		// Acknowledged means on disk: the journal has the message before
		// any consumer can see it and before the RECEIPT.
		if err := s.b.journalAppend(recs...); err != nil {
			return err
		}
		checkLimits = false
	}
	if err := s.deliverRoute(r, m, checkLimits); err != nil {
		return err
	}
	s.b.stats.Published.Add(s.stripe, 1)
	return nil
}

// buildMessage validates a SEND and copies it into a Message. A nil
// message with no error means it expired before it was sent.
func (s *Session) buildMessage(f *frames.Frame) (*Message, route, *stompError) {
	destination, err := requireHeader(f, "destination")
	if err != nil {
		return nil, route{}, err
	}
	dest := string(destination)
	if _, ok := presenceTopic(dest); ok {
		return nil, route{}, presenceSendErr(dest)
	}
	kind, name, err := parseDestination(dest)
	if err != nil {
		return nil, route{}, err
	}
	if err := s.authorize(ActionPublish, kind, dest); err != nil {
		return nil, route{}, err
	}
	r := route{kind: kind, key: name}
	switch kind {
	case kindTopic:
		if isWildcard(name) {
			return nil, route{}, protocolErr(CodeInvalidDestination, "invalid destination",
				"Wildcards are for SUBSCRIBE; SEND to a concrete topic name.")
		}
	case kindQueue:
		r.key = dest
	case kindTempQueue:
		r.key = s.replyAddress(name)
	case kindReplyQueue:
		r.key = dest
	}
	var expires int64
	if v, ok := f.Header("expires"); ok {
		n, perr := strconv.ParseInt(string(v), 10, 64)
		if perr != nil || n < 0 {
			return nil, route{}, protocolErr(CodeInvalidHeader, "invalid expires header",
				"expires must be milliseconds since the epoch (0 = never); got "+strconv.Quote(truncateString(string(v), 32))+".")
		}
		expires = n
	}
	persistent := false
	if v, ok := f.Header("persistent"); ok && string(v) == "true" {
		persistent = true
	}
	replyTo := ""
	if v, ok := f.Header("reply-to"); ok {
		if name, isTemp := strings.CutPrefix(string(v), "/temp-queue/"); isTemp && name != "" {
			replyTo = s.replyAddress(name)
		}
	}
	m := newMessage(f, s.b.newMessageID(), dest, replyTo, persistent, expires)
	if m.expired(s.b.nowMs()) {
		s.b.stats.Expired.Add(1)
		return nil, r, nil
	}
	return m, r, nil
}

// durableRoom checks, for a persistent message to a topic, that every
// durable subscription's queue it reaches has room: such a message is
// journaled for each of them and then enqueued whatever their limits. A
// message that is not journaled is not checked: a full durable backlog
// drops it (the newest is lost, counted in messages_dropped_total) rather
// than hold back every producer of the topic for one subscriber that does
// not drain.
func (s *Session) durableRoom(r route, m *Message) *stompError {
	if r.kind != kindTopic || !s.b.persists(m) {
		return nil
	}
	return roomInEach(s.space.durableQueuesFor(r.key), m)
}

// roomInEach checks that m fits every queue of qs.
func roomInEach(qs []*queue, m *Message) *stompError {
	size := m.size()
	for _, q := range qs {
		if err := q.room(1, size); err != nil {
			return err
		}
	}
	return nil
}

// persistentRecords returns the journal records a persistent SEND outside
// a transaction needs, once the room they will take is checked (the
// journaled message must then fit): its queue's, or that of every durable
// subscription's queue the topic reaches, matched once for both.
func (s *Session) persistentRecords(r route, m *Message) ([]JournalRecord, *stompError) {
	if !s.b.persists(m) {
		return nil, nil
	}
	switch r.kind {
	case kindQueue:
		if q := s.routeQueue(r); q != nil {
			if err := q.room(1, m.size()); err != nil {
				return nil, err
			}
		}
		return s.space.persistRecords(r, m, nil), nil
	case kindTopic:
		qs := s.space.durableQueuesFor(r.key)
		if err := roomInEach(qs, m); err != nil {
			return nil, err
		}
		return durableRecords(qs, m, nil), nil
	}
	return nil, nil
}

// replyAddress is the public address of this session's temporary queue
// name: other sessions reply to it; only this session can consume it. It
// holds 128 random bits, drawn when the session first uses a temporary
// queue, so the address is a capability: only those it was given (in a
// reply-to) can send to it (docs/security.md).
func (s *Session) replyAddress(name string) string {
	if s.replyToken == "" {
		var b [16]byte
		_, _ = rand.Read(b[:]) // crypto/rand never fails on supported platforms
		s.replyToken = hex.EncodeToString(b[:])
	}
	return "/reply-queue/" + s.replyToken + "/" + name
}

// routeQueue returns the existing queue a non-topic route leads to (nil
// for a topic, or a queue not created yet).
func (s *Session) routeQueue(r route) *queue {
	switch r.kind {
	case kindTopic:
		return nil
	case kindTempQueue:
		return s.tempQueues[r.key]
	}
	q, _ := s.space.queue(r.key, nil)
	return q
}

// deliverRoute hands m to its destination.
func (s *Session) deliverRoute(r route, m *Message, checkLimits bool) *stompError {
	switch r.kind {
	case kindTopic:
		if m.inHistory {
			return nil // the cluster's history delivers it (cluster_history_send.go)
		}
		if err := s.publishTopicClustered(r.key, m); err != nil {
			return err
		}
		s.space.publishTopic(r.key, m)
		return nil
	case kindTempQueue:
		q, err := s.tempQueue(r.key)
		if err != nil {
			return err
		}
		if err := q.enqueue(m, checkLimits); err != nil {
			return asStompError(err)
		}
		return nil
	case kindReplyQueue:
		q, _ := s.space.queue(r.key, nil)
		if q == nil && s.b.cfg.Cluster != nil {
			// Its session may be on another node.
			if err := s.b.cfg.Cluster.PublishReply(s.space.name, r.key, m); err != nil {
				return clusterError(fmt.Errorf("%w: %w", ErrClusterUnavailable, err))
			}
			return nil
		}
		if q == nil {
			return nil // the requester is gone: like RabbitMQ, the reply is dropped
		}
		if err := q.enqueue(m, checkLimits); err != nil && err != errQueueDeleted {
			return asStompError(err)
		}
		return nil
	}
	if s.b.clusterRoute(r) {
		if m.toCluster {
			return nil // stored by its COMMIT already (commitToCluster)
		}
		return s.publishQueueWait(r.key, m)
	}
	return s.space.enqueueNamed(r.key, m, checkLimits, s.createQueue)
}

func asStompError(err error) *stompError {
	if se, ok := err.(*stompError); ok {
		return se
	}
	return &stompError{code: CodeLimitExceeded, message: "not accepted", detail: err.Error(), retryable: true, reason: CloseLimitExceeded}
}

// tempQueue returns this session's temporary queue at the reply address
// key, creating it; it lives until the session ends.
func (s *Session) tempQueue(key string) (*queue, *stompError) {
	if q := s.tempQueues[key]; q != nil {
		return q, nil
	}
	sp := s.space
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if len(sp.queues) >= s.b.cfg.MaxQueues {
		return nil, s.b.tooManyQueues()
	}
	creator, err := s.createQueue()
	if err != nil {
		return nil, err
	}
	q := newQueue(sp, key, s, false)
	q.creator = creator
	sp.setQueueLocked(key, q)
	if s.tempQueues == nil {
		s.tempQueues = make(map[string]*queue)
	}
	s.tempQueues[key] = q
	if c := s.b.cfg.Cluster; c != nil && len(s.tempQueues) == 1 {
		c.ReplyInterest(sp.name, s.replyToken, true) // replies sent on other nodes come here
	}
	return q, nil
}
