package broker

import (
	"sync/atomic"

	"github.com/stompbox/stompbox/frames"
)

// sessionResume is a session's share of session recovery (resume.go).
type sessionResume struct {
	// entry is the session's token entry, set at CONNECT when recovery is
	// on; read by publishers of a parked session (overflowed). Once set, a
	// dropped connection keeps the outbox's deliveries (closeOut) instead
	// of discarding them; any goroutine may drop the connection, hence
	// atomic.
	entry atomic.Pointer[resumeEntry]
	// adoptedBy is the session that adopted this parked one, set under
	// its subscriptions' locks: a publisher that failed to deliver to this
	// one just before the adoption closes that one as a slow consumer
	// instead (parkedOverflow), so no message is lost without an ERROR.
	adoptedBy atomic.Pointer[Session]
	// The read-loop side (resumed, ackMark, subMark, adopting) is in
	// sessionExtra: few sessions are ever resumed.
}

// closeOut closes the outbox for a connection that failed (peer gone,
// heart-beats missing, taken over), with final as the last frame (nil:
// none). A session with a resume-token keeps its queued topic deliveries
// for the connection that may resume it; without one they are discarded.
// Either way auto-ack queue deliveries go back to their queues: a
// parked session takes no queue messages. Any goroutine.
func (s *Session) closeOut(reason CloseReason, final func([]byte) []byte) bool {
	var ok bool
	var unsent []outEntry
	if s.resume.entry.Load() != nil {
		ok, unsent = s.out.closeKeep(reason, final)
	} else {
		ok, unsent = s.out.close(reason, true, final)
	}
	if ok {
		s.t.Close(reason)
	}
	putBack(unsent)
	return ok
}

// closeNow is Abort for a session released while still open: a driver
// that ends a session itself (rather than seeing its connection drop)
// releases it for good, so nothing is kept for a resume. Read loop only.
func (s *Session) closeNow(reason CloseReason) {
	ok, unsent := s.out.close(reason, true, nil)
	if ok {
		s.t.Close(reason)
	}
	putBack(unsent)
}

// failSilent ends the session for a client gone silent (heart-beat
// timeout) with e's ERROR, keeping its deliveries when it may be resumed.
// Read loop only.
func (s *Session) failSilent(e *stompError) {
	if s.resume.entry.Load() == nil {
		s.fail(e, nil)
		return
	}
	esc := frames.EscapingFor(s.version, frames.CmdError)
	if s.closeOut(e.reason, errorFrame(e, nil, esc)) {
		s.b.errors.add(e.code)
		s.b.cfg.Logger.Debug("session silent, kept for resume", "session", s.id, "remote", s.remote)
	}
}

// takeOver closes a connected session whose token another connection
// presented: its client gets ERROR session-taken-over, its read loop is
// interrupted, ends, and parks the session for the claimer. Any
// goroutine.
func (s *Session) takeOver() {
	e := &stompError{code: CodeSessionTakenOver, message: "session taken over",
		detail: "Another connection resumed this session with its resume-token; this connection is closed.",
		reason: CloseTakenOver}
	if s.closeOut(CloseTakenOver, errorFrame(e, nil, frames.EscapeNone)) {
		s.b.errors.add(e.code)
		s.b.cfg.Logger.Info("session taken over", "session", s.id, "remote", s.remote)
	}
	s.t.Poke() // a read loop waiting for bytes from a half-open connection ends now
}

// resumableClose reports whether a session that closed for reason may
// be parked: the network or the client's silence ended it, not the
// client (DISCONNECT) nor an ERROR for something it did.
func resumableClose(reason CloseReason) bool {
	return reason == ClosePeer || reason == CloseHeartbeatTimeout || reason == CloseTakenOver
}

// park is Release's hook: a session with a resume-token whose connection
// dropped is parked (or handed to the connection taking it over) instead
// of released. It reports whether it was; Release then releases nothing.
// Transactions open at the drop are discarded either way (STOMP: a
// disconnect aborts them).
func (s *Session) park() bool {
	e := s.resume.entry.Load()
	if e == nil {
		return false
	}
	reason, _ := s.CloseReason()
	resumable := resumableClose(reason) && s.out.isParking()
	if resumable {
		for _, tx := range s.txs {
			tx.discard(s)
		}
		s.txs = nil
		resumable = s.reserveResend()
	}
	if resumable {
		s.awayFromPresence() // before the session can be adopted
		for _, sub := range s.subs {
			if sub.queue != nil {
				// A queue that picked this consumer just before the drop
				// kept its message: another consumer may take it now.
				sub.queue.dispatch()
			}
		}
	}
	if s.b.resume.park(e, s, resumable) {
		s.b.cfg.Logger.Debug("session parked", "session", s.id, "remote", s.remote, "reason", reason.String())
		return true
	}
	s.out.stopParking()
	return false
}

// reserveResend reserves, in the parking outbox, room for the
// unacknowledged deliveries a resume will send again (those not kept
// unwritten anyway): they count against the outbox limit and the budget
// while the session is parked. It reports false, and stops parking, when
// they do not fit: the session is then not resumable. Read loop only.
func (s *Session) reserveResend() bool {
	type sized struct {
		ackID uint64
		size  int
	}
	var unacked []sized
	for _, sub := range s.subs {
		sub.mu.Lock()
		for _, d := range sub.unacked {
			unacked = append(unacked, sized{d.ackID, deliverySize(d.msg, sub)})
		}
		sub.mu.Unlock()
	}
	o := &s.out
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.park == nil {
		return false
	}
	kept := make(map[uint64]bool, len(o.park.kept))
	for _, e := range o.park.kept {
		if e.ackID != 0 {
			kept[e.ackID] = true
		}
	}
	n := 0
	for _, u := range unacked {
		if !kept[u.ackID] {
			n += u.size
		}
	}
	if o.bytes+n > o.limit || !o.budget.roomLocked(o.bytes, n) {
		for _, e := range o.park.kept {
			o.bytes -= deliverySize(e.msg, e.sub)
		}
		o.park = nil
		return false
	}
	o.park.resend = n
	o.bytes += n
	return true
}

// parkedOverflow is slowConsumer's hook: a parked session that overflowed
// its outbox or budget is not resumable any more; its grace timer
// releases it now. A delivery that failed just before the session was
// adopted makes the adopting session the slow consumer. It reports
// whether it handled the overflow.
func (s *Session) parkedOverflow(why string) bool {
	if !s.out.stopParking() {
		if to := s.resume.adoptedBy.Load(); to != nil {
			to.slowConsumer(why)
			return true
		}
		return false
	}
	s.b.stats.SlowConsumers.Add(1)
	s.b.cfg.Logger.Info("parked session overflowed, not resumable", "session", s.id, "remote", s.remote)
	s.b.resume.overflowed(s)
	return true
}

// releaseParked releases a parked session nobody resumed: what Release
// skipped. Its owner (whoever took it from the resume table) calls it.
func (s *Session) releaseParked() {
	s.out.stopParking()
	s.releaseResources()
}

// closeKeep is close(reason, true, final) for a session that may be
// resumed: the queued topic deliveries (and client-ack queue deliveries,
// which stay unacknowledged anyway) are kept aside instead of dropped,
// and later topic deliveries join them until the session is adopted or
// released. Queued control frames are dropped, as when the connection
// is simply closed.
func (o *outbox) closeKeep(reason CloseReason, final func(dst []byte) []byte) (ok bool, unsent []outEntry) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closing {
		return false, nil
	}
	kept, park := 0, &outPark{}
	for _, e := range o.entries {
		switch {
		case e.msg == nil:
		case e.qm != nil:
			unsent = append(unsent, e)
		default:
			park.kept = append(park.kept, e)
			kept += deliverySize(e.msg, e.sub)
		}
	}
	clear(o.entries)
	o.entries, o.ctrl, o.bytes = o.entries[:0], o.ctrl[:0], kept
	if final != nil {
		o.ctrl = final(o.ctrl)
		o.bytes += len(o.ctrl)
		o.entries = append(o.entries, outEntry{ctrlStart: 0, ctrlEnd: len(o.ctrl)})
	}
	o.closing, o.park, o.reason = true, park, reason
	o.closed.Store(true)
	return true, unsent
}

// isParking reports whether the outbox still keeps deliveries.
func (o *outbox) isParking() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.park != nil
}

// stopParking drops the kept deliveries and stops keeping new ones; it
// reports whether the outbox was parking.
func (o *outbox) stopParking() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.park == nil {
		return false
	}
	for _, e := range o.park.kept {
		o.bytes -= deliverySize(e.msg, e.sub)
	}
	o.bytes -= o.park.resend
	o.park = nil
	return true
}
