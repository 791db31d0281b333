package broker

import "time"

// The room a pipelined persistent SEND holds while it is in flight, where
// its message goes once written, and its retry when the journal refused it
// for lack of room (session_pipeline.go has the pipeline itself).

// pipeRetryInterval is how soon a SEND the journal refused for lack of
// room is handed to it again.
const pipeRetryInterval = 100 * time.Millisecond

// pipeRefused reports whether e, the oldest SEND in flight, was refused by
// the journal for lack of room (its disk full after it took the SEND: a
// write out of space, no next segment) under full_policy block: it is
// then flow control, retried, not an ERROR.
func (s *Session) pipeRefused(e *pipedSend) bool {
	if !e.retry && (!e.done.Load() || !refusedForRoom(e.err)) {
		return false
	}
	if s.b.cfg.FullPolicy != FullBlock || s.pipe != nil && s.pipe.stopping || s.flag(flagShutdownAsked) {
		// No retry (any more): the refusal is the producer's ERROR, so
		// that a shutdown does not wait for a disk that stays full. A
		// SEND waiting for its retry holds its last refusal.
		e.retry = false
		return false
	}
	if e.retry {
		return true
	}
	e.retry = true
	e.retryAt = s.b.cfg.Now().Add(pipeRetryInterval)
	return true
}

// pipeRetry hands e's records to the journal again once its retry is due.
// It reports whether e is in flight again (false: not yet due, or refused
// at once, to be tried again).
func (s *Session) pipeRetry(e *pipedSend) bool {
	now := s.b.cfg.Now()
	if now.Before(e.retryAt) {
		return false
	}
	e.err = nil
	e.done.Store(false)
	if err := e.submit(); err != nil {
		e.done.Store(true)
		e.err = err
		if !refusedForRoom(err) {
			e.retry = false // failed or closed: applyPiped gives the ERROR
			return true
		}
		e.retryAt = now.Add(pipeRetryInterval)
		return false
	}
	e.retry = false
	return true
}

// enterPiped puts the message of e, written, where it goes: into the
// room reserved for it in its queue or in each durable subscription of
// its topic (the journal has exactly those records), and to the topic's
// other subscribers.
func (s *Session) enterPiped(e *pipedSend) *stompError {
	switch {
	case e.history: // stored in the cluster's history, whose mirror delivers it here too
	case e.cluster && e.route.kind == kindTopic: // its durable copies are stored
		if err := s.publishTopicClustered(e.route.key, e.msg); err != nil {
			return err
		}
		s.space.publishTopicLive(e.route.key, e.msg)
	case e.cluster: // stored in the cluster, which feeds its consumers
	case e.q != nil:
		e.q.enqueueReserved(e.msg)
	case e.feeds != nil:
		for _, q := range e.feeds {
			q.enqueueReserved(e.msg)
		}
		if err := s.publishTopicClustered(e.route.key, e.msg); err != nil {
			return err
		}
		s.space.publishTopicLive(e.route.key, e.msg)
	default:
		return s.deliverRoute(e.route, e.msg, false)
	}
	return nil
}

// unreserve gives back the room e's message held.
func (e *pipedSend) unreserve() {
	if e.q != nil {
		e.q.unreserve(e.msg.size())
	}
	unreserveEach(e.feeds, e.msg.size())
}

// reserveEach reserves room for one message of size in each queue of qs
// (a topic's durable subscriptions), all or none, and returns those that
// still exist (one deleted meanwhile is skipped).
func reserveEach(qs []*queue, size int) ([]*queue, *stompError) {
	kept := qs[:0:0]
	for _, q := range qs {
		err := q.reserve(size)
		if err == errQueueDeleted {
			continue
		}
		if err != nil {
			unreserveEach(kept, size)
			return nil, asStompError(err)
		}
		kept = append(kept, q)
	}
	return kept, nil
}

// unreserveEach gives back one reservation of size in each queue of qs.
func unreserveEach(qs []*queue, size int) {
	for _, q := range qs {
		q.unreserve(size)
	}
}
