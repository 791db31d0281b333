package broker

import (
	"slices"

	"github.com/stompbox/stompbox/frames"
)

// adopt moves the parked session old into s, a session answering CONNECT
// on its read loop (old's read loop has ended: the caller took old from
// the resume table, so nobody else touches its read-loop state). connected
// encodes s's CONNECTED frame. In one step, with every one of old's
// subscriptions locked so no publisher can deliver meanwhile:
//   - s's outbox gets CONNECTED first, then the unacknowledged deliveries
//     the client may have lost on the wire (same ack ids, redelivered:true,
//     oldest first), then what arrived while it was away, in order;
//   - every subscription's session becomes s, so later deliveries follow.
//
// Lock order: subscription.mu (all of old's) -> outbox.mu (old's, then
// s's; two outboxes are held together only here, old before new). It
// reports false, changing nothing, when old overflowed meanwhile or s's
// own connection ended.
func (s *Session) adopt(old *Session, connected func([]byte) []byte) bool {
	subs := make([]*subscription, 0, old.subTab.size())
	for _, sub := range old.subs {
		subs = append(subs, sub)
	}
	slices.SortFunc(subs, func(a, b *subscription) int { return int(a.num) - int(b.num) })
	for _, sub := range subs {
		sub.mu.Lock()
	}
	defer func() {
		for _, sub := range subs {
			sub.mu.Unlock()
		}
	}()
	old.out.mu.Lock()
	defer old.out.mu.Unlock()
	if old.out.park == nil {
		return false
	}
	out := &s.out
	out.mu.Lock()
	defer out.mu.Unlock()
	if out.closing {
		return false // s's own connection ended meanwhile: nothing to hand the backlog to
	}
	kept, keptBytes := old.out.park.kept, 0
	for _, e := range kept {
		keptBytes += deliverySize(e.msg, e.sub)
	}
	again := s.lostDeliveries(subs, kept)
	// Stored before parking ends, under the same lock: a publisher that
	// then finds the outbox not parking (stopParking) finds adoptedBy.
	old.resume.adoptedBy.Store(s)
	old.out.bytes -= keptBytes + old.out.park.resend // the resend reservation becomes again's bytes below
	old.out.park = nil

	start := len(out.ctrl)
	out.ctrl = connected(out.ctrl)
	out.bytes += len(out.ctrl) - start
	out.entries = append(out.entries, outEntry{ctrlStart: start, ctrlEnd: len(out.ctrl)})
	for _, e := range again {
		out.bytes += deliverySize(e.msg, e.sub)
	}
	out.entries = append(out.entries, again...)
	out.entries = append(out.entries, kept...)
	out.bytes += keptBytes

	// Everything charged to old's budget is its subscriptions'
	// unacknowledged topic messages (its transactions were discarded and
	// its held input released when it parked): they are s's now.
	s.budget.used.Add(old.budget.used.Swap(0))
	s.nextAck.Store(old.nextAck.Load())
	// Read under the locks: an ack id drawn after this is the resumed
	// session's own.
	s.extra().ackMark = s.nextAck.Load()
	for _, sub := range subs {
		sub.session = s
	}
	if n := len(again); n > 0 {
		s.b.stats.Delivered.Add(s.stripe, uint64(n))
		s.b.stats.Redelivered.Add(uint64(n))
	}
	return true
}

// lostDeliveries returns, oldest first, the unacknowledged deliveries of
// subs that are not among kept (those were never written): the client
// may or may not have received them before its connection dropped, so
// they are sent again, marked redelivered. subs are locked.
func (s *Session) lostDeliveries(subs []*subscription, kept []outEntry) []outEntry {
	var pending map[uint64]struct{}
	for _, e := range kept {
		if e.ackID != 0 {
			if pending == nil {
				pending = make(map[uint64]struct{})
			}
			pending[e.ackID] = struct{}{}
		}
	}
	var again []outEntry
	for _, sub := range subs {
		for _, d := range sub.unacked {
			if _, ok := pending[d.ackID]; ok {
				continue
			}
			n := 2
			if d.qm != nil {
				// Written under queue.mu before the delivery was added
				// to unacked under sub.mu; unchanged while unacknowledged.
				n = max(d.qm.deliveries, 2)
			}
			again = append(again, outEntry{msg: d.msg, sub: sub, ackID: d.ackID, deliveries: n})
		}
	}
	slices.SortFunc(again, func(a, b outEntry) int { return byAckID(delivery{ackID: a.ackID}, b.ackID) })
	return again
}

// finishAdopt moves old's read-loop state into s after adopt: the
// subscriptions by id and number, temporary queues, the reply-queue
// token, client-id and creation count. Queues held back while old was
// parked are dispatched again. Read loop only.
func (s *Session) finishAdopt(old *Session) {
	oc, sc := old.lockSubs(), s.lockSubs() // Info may read either table
	s.subTab, old.subTab = old.subTab, subTable{}
	unlockSubs(sc)
	unlockSubs(oc)
	s.nextSubNum = old.nextSubNum
	s.tempQueues, old.tempQueues = old.tempQueues, nil
	s.replyToken = old.replyToken
	s.created = old.created
	if s.clientID() == "" && old.clientID() != "" {
		s.extra().clientID = old.clientID()
	}
	s.extra().resumed = true
	s.b.resume.results[resumeResumed].Add(1)
	s.x.subMark = s.nextSubNum
	s.backToPresence()
	for _, sub := range s.subs {
		if sub.queue != nil {
			sub.queue.dispatch()
		}
	}
	s.t.Wake()
}

// resubscribed is handleSubscribe's hook for a SUBSCRIBE whose id is in
// use: on a resumed session, repeating an adopted subscription (same id,
// same destination) is a no-op, answered with its RECEIPT if asked
// (stomp.js subscribes again in onConnect). It reports whether it was.
func (s *Session) resubscribed(sub *subscription, dest string, f *frames.Frame) bool {
	if !s.resumed() || sub.num > s.x.subMark || sub.dest != dest {
		return false
	}
	s.receipt(f)
	return true
}

// settledBeforeResume is handleAck's hook for an ACK or NACK naming no
// unacknowledged message: on a resumed session, one naming an ack id
// issued before the resume (1.2), or any message-id (1.0, 1.1: they do
// not tell), was settled already and is a no-op, answered with its
// RECEIPT if asked. The client cannot know which of the MESSAGEs sent
// again after a resume it had received before its connection dropped.
func (s *Session) settledBeforeResume(f *frames.Frame) bool {
	if !s.resumed() {
		return false
	}
	if id, ok := f.Header("id"); ok && s.version == frames.V12 {
		if _, ackID, ok := splitAckID(id); !ok || ackID > s.x.ackMark {
			return false
		}
	}
	s.receipt(f)
	return true
}
