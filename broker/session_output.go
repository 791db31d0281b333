package broker

import (
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/stompbox/stompbox/frames"
)

// Output is the writer's side: it takes everything queued for this
// connection into b (emptied first) and reports whether the session is
// closing (then, once b is written, the driver closes the connection).
// MESSAGE frames are encoded here, outside every lock, from the shared
// Message: its 1.2 headers were escaped once at SEND, so a delivery costs a
// few appends, and a body of MinBorrowedBody bytes or more is not copied
// at all: b refers to it (OutputBatch). The driver writes b, then calls
// b.Done. It must not be called concurrently with itself or with
// AppendOutput.
func (s *Session) Output(b *OutputBatch) (closing bool) {
	b.reset()
	b.flat, b.withFrames = false, false
	return s.output(b)
}

// WriterIdle lets go of the buffers the writer keeps for a busy
// connection: the queues it swaps with the outbox and the removal records.
// A driver calls it, after Output, when it has had nothing to write for a
// heart-beat interval, so that an idle connection holds none; the next
// output makes them again. Writer side, like Output.
func (s *Session) WriterIdle() {
	s.spareEntries, s.spareCtrl, s.spareStarved, s.spareRemovals = nil, nil, nil, nil
	s.out.releaseIfEmpty()
}

// AppendOutput is Output into one contiguous buffer: it appends everything
// queued for this connection, encoded, to dst and returns the result, plus
// whether the session is closing. Every body is copied into out.
func (s *Session) AppendOutput(dst []byte) (out []byte, closing bool) {
	b := OutputBatch{buf: dst, flat: true}
	closing = s.output(&b)
	return b.buf, closing
}

// AppendOutputFrames is AppendOutput that also appends to ends the offset
// in out where each frame ends, and to text whether that frame is valid
// UTF-8, for transports that frame messages themselves (WebSocket: one
// STOMP frame per message, a text message when it is valid UTF-8). A
// MESSAGE's answer is its Message's, found once for all its subscribers,
// and its subscription header's: the body is not scanned per delivery.
func (s *Session) AppendOutputFrames(dst []byte, ends []int, text []bool) (out []byte, frameEnds []int, frameText []bool, closing bool) {
	b := OutputBatch{buf: dst, ends: ends, text: text, flat: true, withFrames: true}
	closing = s.output(&b)
	return b.buf, b.ends, b.text, closing
}

// maxKeptRemovals bounds the removal records a session keeps room for
// between writes.
const maxKeptRemovals = 256

func (s *Session) output(b *OutputBatch) (closing bool) {
	entries, ctrl, starved, closing := s.out.take(s.spareEntries, s.spareCtrl, s.spareStarved)
	removals := s.spareRemovals
	var fedBuf [4]*queue
	fed := fedBuf[:0] // clustered queues whose credit grew: the writer took their deliveries
	framed := b.framed()
	for i := range entries {
		e := &entries[i]
		text := false
		if e.msg == nil {
			if e.ctrlEnd > e.ctrlStart {
				s.counts().countControl(ctrl[e.ctrlStart])
				s.countOut()
			}
			b.buf = append(b.buf, ctrl[e.ctrlStart:e.ctrlEnd]...)
			text = framed && utf8.Valid(ctrl[e.ctrlStart:e.ctrlEnd]) // small: RECEIPT, ERROR, CONNECTED
		} else {
			s.counts().out[frames.CmdMessage].Add(1)
			s.countOut()
			s.appendMessage(b, e)
			text = framed && e.msg.isText() && e.sub.headerText
			if e.qm != nil {
				if e.qm.settle != nil { // fed by the cluster: consumed now
					e.sub.fedOut.Add(-1)
					settleNow(e.qm, settleAck)
					fed = appendOnce(fed, e.sub.queue)
				}
				removals = e.sub.queue.appendRemoval(removals, e.qm)
			}
		}
		b.endFrame(text)
	}
	clear(entries)
	s.spareEntries, s.spareCtrl = entries[:0], ctrl[:0]
	if len(removals) > 0 {
		// An auto-ack queue message is consumed once its MESSAGE is handed
		// to the writer, not when it was queued for this connection: until
		// now its enqueue stayed live on disk, so a connection that died
		// first puts it back in place (queue.putBack) with nothing to
		// journal, and a crash meanwhile loses nothing.
		s.b.journalRemoves(removals)
		clear(removals)
		s.spareRemovals = removals[:0]
		if cap(removals) > maxKeptRemovals {
			s.spareRemovals = nil // one large backlog should not stay with the connection
		}
	}
	// The backlog is taken, so queues that skipped this consumer for lack
	// of room may send again.
	for _, q := range starved {
		q.dispatch()
		fed = slices.DeleteFunc(fed, func(f *queue) bool { return f == q })
	}
	for _, q := range fed {
		q.dispatch()
	}
	clear(starved)
	s.spareStarved = starved[:0]
	return closing
}

// appendMessage encodes one MESSAGE into b: per-delivery headers first,
// then the message's own, then the body (borrowed when b may).
func (s *Session) appendMessage(b *OutputBatch, e *outEntry) {
	m, sub := e.msg, e.sub
	dst := frames.AppendCommand(b.buf, frames.CmdMessage)
	dst = append(dst, sub.header...)
	dst = append(dst, "message-id:"...)
	dst = append(dst, m.ID...)
	dst = append(dst, '\n')
	if e.ackID != 0 {
		dst = append(dst, "ack:"...)
		dst = strconv.AppendUint(dst, uint64(sub.num), 10)
		dst = append(dst, '.')
		dst = strconv.AppendUint(dst, e.ackID, 10)
		dst = append(dst, '\n')
	}
	if e.deliveries > 1 {
		dst = append(dst, "redelivered:true\ndelivery-count:"...)
		dst = strconv.AppendInt(dst, int64(e.deliveries), 10)
		dst = append(dst, '\n')
	}
	if e.replayed {
		dst = append(dst, replayedLine...)
	}
	if s.escaping == frames.Escape12 {
		dst = append(dst, m.enc12...)
	} else {
		for _, h := range m.Headers {
			dst = frames.AppendHeader(dst, s.escaping, h.Key, h.Value)
		}
	}
	if b.flat || len(m.Body) < MinBorrowedBody {
		b.buf = frames.AppendBody(dst, m.Body)
		return
	}
	// frames.AppendBody, with the body a piece of its own.
	dst = append(dst, frames.HeaderContentLength+":"...)
	dst = strconv.AppendInt(dst, int64(len(m.Body)), 10)
	b.buf = append(dst, '\n', '\n')
	b.appendBody(m.Body)
	b.buf = append(b.buf, 0)
}

// Refuse ends the session for a violation the driver's transport found
// below STOMP (e.g. a WebSocket message over the size limit, invalid UTF-8
// in a text message): the client gets an ERROR with error-code code, then
// the connection closes with reason. Read loop only.
func (s *Session) Refuse(reason CloseReason, code, message, detail string) {
	if s.state >= stateClosed {
		return
	}
	s.fail(&stompError{code: code, message: message, detail: detail, reason: reason}, nil)
	s.state = stateClosed
}

// control queues an encoded control frame (CONNECTED, RECEIPT) and wakes
// the writer. Past the outbox limit or the connection's budget the session
// is a slow consumer, as it is for deliveries: control frames are bounded
// by what the client reads, not by how fast it asks for them.
func (s *Session) control(encode func(dst []byte) []byte) {
	switch pushed, full := s.out.pushControl(encode); {
	case pushed:
		s.t.Wake()
	case full:
		s.slowConsumer("the control frames (RECEIPT, CONNECTED) it has not read exceed its outbound buffer or its budget of " +
			strconv.FormatInt(s.budget.limit, 10) + " bytes")
	}
}

// slowConsumer closes a session whose outbound buffer overflowed: what it
// had not taken is dropped and it gets an ERROR now. Safe from any
// goroutine (publishers call it).
func (s *Session) slowConsumer(why string) {
	if s.parkedOverflow(why) {
		return
	}
	e := &stompError{code: CodeSlowConsumer, message: "slow consumer",
		detail:    "Disconnected because this client reads too slowly: " + why + ".",
		retryable: true, reason: CloseSlowConsumer}
	ok, unsent := s.out.close(CloseSlowConsumer, true, errorFrame(e, nil, frames.EscapeNone))
	if ok {
		s.b.stats.SlowConsumers.Add(1)
		s.b.errors.add(e.code)
		s.b.cfg.Logger.Warn("slow consumer disconnected", "session", s.id, "remote", s.remote, "error_code", CodeSlowConsumer, "why", why)
		s.t.Close(CloseSlowConsumer)
	}
	putBack(unsent)
}

// Release ends the session for the broker: subscriptions are removed,
// unacknowledged queue messages requeued for other consumers, open
// transactions discarded and temporary queues deleted. The driver calls it
// once, from the read loop, after the last Feed. A session with a
// resume-token whose connection failed (Abort, heart-beat Expire, a
// takeover) is parked instead, for a resume (resume.go): only its
// transactions are discarded; a session released while still open is
// released for good.
func (s *Session) Release() {
	if s.state == stateReleased {
		return
	}
	s.state = stateReleased
	s.stopExpiry()
	s.closeNow(ClosePeer) // no-op if already closing
	s.pipeRelease()
	s.flowRelease()
	if !s.park() { // a dropped session that may be resumed keeps everything
		s.releaseResources()
	}
	reason, _ := s.CloseReason()
	s.b.closes[reason].Add(1)
	s.b.sessionCount.Add(-1)
}

// releaseResources gives back everything the session holds in the broker.
// It is idempotent; DISCONNECT runs it before its RECEIPT, so a client that
// has the RECEIPT can reconnect and find its messages requeued and its
// durable subscriptions free.
func (s *Session) releaseResources() {
	for _, sub := range s.subs {
		s.removeSubscription(sub)
	}
	// Transactions first: their reservations may be in this session's
	// temporary queues, deleted below.
	for _, tx := range s.txs {
		tx.discard(s)
	}
	s.txs = nil
	for key, q := range s.tempQueues {
		s.deleteTempQueue(key, q)
	}
	s.tempQueues = nil
}

// deleteTempQueue removes this session's temporary queue q at key, with
// the messages it holds.
func (s *Session) deleteTempQueue(key string, q *queue) {
	sp := q.sp
	sp.mu.Lock()
	if sp.queues[key] == q {
		sp.dropQueueLocked(key)
		sp.releaseQueueLocked(q)
	}
	sp.mu.Unlock()
	delete(s.tempQueues, key)
	if c := s.b.cfg.Cluster; c != nil && len(s.tempQueues) == 0 {
		c.ReplyInterest(sp.name, s.replyToken, false)
	}
	q.mu.Lock()
	q.deleted = true
	for q.ready.Len() > 0 {
		q.forgetLocked(q.ready.PopFront())
	}
	q.mu.Unlock()
}
