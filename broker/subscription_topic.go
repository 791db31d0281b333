package broker

import "strconv"

// deliverTopicEntry is deliverTopic; replayed marks a message replayed
// from the topic's history (MESSAGE header replayed:true).
func (sub *subscription) deliverTopicEntry(m *Message, replayed bool) {
	sub.deliverTopicCount(m, replayed, 1)
}

// heldDelivery is a topic delivery kept back while a handed-over session
// is made again (cluster_session.go).
type heldDelivery struct {
	m          *Message
	replayed   bool
	deliveries int
}

// pushed is the outcome of pushLocked, acted on once sub.mu is released.
type pushed struct {
	s         *Session
	delivered int
	slow      string // why the session is a slow consumer; "" when it is not
}

// deliverTopicCount is deliverTopicEntry for the deliveries-th delivery
// of m (more than 1: marked redelivered; a session handed over by another
// node, cluster_session.go).
func (sub *subscription) deliverTopicCount(m *Message, replayed bool, deliveries int) {
	if sub.feed != nil {
		// A journaled persistent message is already promised to this
		// durable subscription: it is not refused by the limits afterwards.
		if err := sub.feed.enqueue(m, !sub.feed.b.persists(m)); err != nil {
			sub.feed.b.stats.Dropped.Add(1) // a durable backlog at its limit loses the newest
		}
		return
	}
	sub.mu.Lock()
	if hs := sub.hist; m.histSeq != 0 && hs != nil && hs.skipThrough != 0 && m.histEpoch == hs.skipEpoch {
		if m.histSeq <= hs.skipThrough {
			sub.mu.Unlock()
			return // the client has it (a resume after an offset the mirror had not reached)
		}
		hs.skipThrough = 0
	}
	if sub.holding {
		sub.holdLocked(m, replayed, deliveries)
		sub.mu.Unlock()
		return
	}
	var p pushed
	sub.pushLocked(m, replayed, deliveries, &p)
	sub.mu.Unlock()
	p.finish()
}

// holdLocked keeps a delivery back while sub is being made again; past
// the outbox's limit the session will be a slow consumer. Caller holds mu.
func (sub *subscription) holdLocked(m *Message, replayed bool, deliveries int) {
	size, hs := deliverySize(m, sub), sub.histLocked()
	if hs.heldOver || hs.heldBytes+size > sub.session.out.limit {
		hs.heldOver = true
		return
	}
	hs.held = append(hs.held, heldDelivery{m, replayed, deliveries})
	hs.heldBytes += size
}

// pushLocked queues one delivery of m to sub's session, recording in p
// what to do once mu is released. Caller holds mu.
func (sub *subscription) pushLocked(m *Message, replayed bool, deliveries int, p *pushed) {
	s := sub.session
	p.s = s
	if sub.closed || p.slow != "" {
		return
	}
	e := outEntry{msg: m, sub: sub, deliveries: deliveries, replayed: replayed}
	if sub.ackMode != ackAuto {
		limit := sub.prefetch
		if limit == 0 {
			limit = s.b.cfg.MaxTopicUnacked
		}
		if len(sub.unacked) >= limit {
			p.slow = "more than " + strconv.Itoa(limit) + " unacknowledged messages on subscription " + sub.id
			return
		}
		// Held until acknowledged: the message is charged to the
		// connection's budget until its ACK or NACK (take) or the end of
		// the subscription (close) gives it back.
		if !s.budget.charge(m.size()) {
			p.slow = "its unacknowledged messages exceed its budget of " + strconv.FormatInt(s.budget.limit, 10) + " bytes"
			return
		}
		e.ackID = s.nextAck.Add(1)
	}
	size := deliverySize(m, sub)
	if replayed {
		size += len(replayedLine)
	}
	ok := s.out.pushMessage(e, size, false)
	if sub.ackMode != ackAuto {
		if ok {
			sub.unacked = append(sub.unacked, delivery{ackID: e.ackID, msg: m})
		} else {
			s.budget.release(m.size())
		}
	}
	if !ok {
		p.slow = "the outbound buffer of " + strconv.Itoa(s.out.limit) + " bytes is full"
		return
	}
	if m.histSeq != 0 {
		sub.histLocked().lastHist = m
	}
	p.delivered++
}

// finish acts on what pushLocked recorded.
func (p *pushed) finish() {
	if p.slow != "" {
		p.s.slowConsumer(p.slow)
	}
	if p.delivered > 0 {
		p.s.b.stats.Delivered.Add(p.s.stripe, uint64(p.delivered))
		p.s.t.Wake()
	}
}

// pushHanded queues a delivery another node handed over for sub, ahead
// of what sub holds (cluster_session.go); it reports whether it queued it.
func (sub *subscription) pushHanded(d HandedDelivery) bool {
	var p pushed
	sub.mu.Lock()
	sub.pushLocked(d.Message, false, max(d.Count, 1), &p)
	sub.mu.Unlock()
	p.finish()
	return p.delivered > 0
}

// releaseHeld queues what sub held back, in order, and delivers normally
// from then on; a hold that overflowed makes the session a slow consumer.
func (sub *subscription) releaseHeld() {
	var p pushed
	sub.mu.Lock()
	p.s = sub.session
	if hs := sub.hist; hs != nil {
		for _, h := range hs.held {
			sub.pushLocked(h.m, h.replayed, h.deliveries, &p)
		}
		if hs.heldOver && p.slow == "" {
			p.slow = "the deliveries held while its session was handed over from another node exceed the outbound buffer of " +
				strconv.Itoa(sub.session.out.limit) + " bytes"
		}
		hs.held, hs.heldBytes, hs.heldOver = nil, 0, false
	}
	sub.holding = false
	sub.mu.Unlock()
	p.finish()
}
