package broker

import (
	"encoding/binary"
	"time"

	"github.com/stompbox/stompbox/frames"
)

// Flow control, session side. Under FullBlock a frame refused only
// because a bound is full (a stompError with full set; its handler changed
// nothing) is not an ERROR: the session copies it into an ordered held
// list and is blocked. While blocked, frames that free resources or
// produce nothing (ACK and NACK outside transactions, SUBSCRIBE,
// UNSUBSCRIBE, heart-beats) are applied at once; everything else is held
// behind the blocked frame in arrival order. DISCONNECT releases the
// subscriptions at once and waits behind the held frames for its RECEIPT.
// The held frames are re-run in order when the bound's owner pokes the
// session (a queue or the broker-wide total drained to its low-water
// mark) or when a retry timer fires (the journal's disk budget has no
// notification). The driver keeps reading until the held input passes the
// connection's budget, then stops reading (TCP/WebSocket backpressure)
// until Poked. The rate limits throttle: the driver stops reading until
// the token buckets are positive again.

// Retry delays of a blocked session: with a notification (a queue or the
// total will poke it) the timer is only a safety net; without one it
// backs off from flowRetryMin to flowRetryMax.
const (
	flowSafetyRetry = time.Second
	flowRetryMin    = 10 * time.Millisecond
	flowRetryMax    = 500 * time.Millisecond
)

// heldOverhead approximates what a held frame costs besides its bytes
// (its list entry and allocation), charged to the budget.
const heldOverhead = 64

// sessionFlow is a session's flow-control state; read loop only.
type sessionFlow struct {
	// active says any of the below is set: the hot path tests only this.
	active bool
	held   []heldFrame // frames waiting, in arrival order; held[0] blocked
	// reason is what the session is blocked on; NotFull when not blocked.
	reason      FullReason
	since       time.Time // blocked since (for BlockTimeout)
	reasonSince time.Time // blocked for reason since (for the metrics)
	// paused says the held input passed the budget: the driver stops
	// reading until the session is poked.
	paused bool
	// disconnect says a DISCONNECT is held: nothing more is read.
	disconnect bool
	retryAt    time.Time     // re-run the held frames by then even without a poke
	backoff    time.Duration // the last retry delay without a notification
	waitQueue  *queue        // the queue registered with, if any
	waitTotal  bool          // registered with the broker-wide total
	// replaying is set while held frames are re-run; refull then takes a
	// refusal instead of holding the frame again.
	replaying bool
	refull    *stompError
	scratch   frames.Frame // a held frame decoded for a re-run, borrowed like the parser's
	// throttledUntil (zero: not throttled) is when the rate buckets are
	// positive again; throttledSince is when the throttle began.
	throttledUntil time.Time
	throttledSince time.Time
}

// heldFrame is an owned copy of a held frame in one allocation: each
// header as two little-endian uint32 lengths, key and value, then the
// body from bodyAt.
type heldFrame struct {
	cmd     frames.Command
	headers int
	bodyAt  int
	buf     []byte
}

// newHeldFrame copies f.
func newHeldFrame(f *frames.Frame) heldFrame {
	size := len(f.Body)
	for _, h := range f.Headers {
		size += 8 + len(h.Key) + len(h.Value)
	}
	buf := make([]byte, 0, size)
	for _, h := range f.Headers {
		buf = binary.LittleEndian.AppendUint32(buf, uint32(len(h.Key)))
		buf = binary.LittleEndian.AppendUint32(buf, uint32(len(h.Value)))
		buf = append(append(buf, h.Key...), h.Value...)
	}
	bodyAt := len(buf)
	return heldFrame{cmd: f.Command, headers: len(f.Headers), bodyAt: bodyAt, buf: append(buf, f.Body...)}
}

// size is what the held frame is charged to the budget.
func (h *heldFrame) size() int { return len(h.buf) + heldOverhead }

// frame decodes h into dst, whose header slice it reuses; the frame
// borrows h's bytes.
func (h *heldFrame) frame(dst *frames.Frame) *frames.Frame {
	dst.Command, dst.Headers = h.cmd, dst.Headers[:0]
	p := h.buf[:h.bodyAt]
	for range h.headers {
		kl, vl := int(binary.LittleEndian.Uint32(p)), int(binary.LittleEndian.Uint32(p[4:]))
		p = p[8:]
		dst.Headers = append(dst.Headers, frames.Header{Key: p[:kl:kl], Value: p[kl : kl+vl : kl+vl]})
		p = p[kl+vl:]
	}
	dst.Body = h.buf[h.bodyAt:]
	return dst
}

// FlowWait tells the driver how to read. paused means do not read the
// socket until a Poke or wakeAt; wakeAt (zero: none) is when to call
// Poked even without a poke (a retry, BlockTimeout, the end of a
// throttle, the pipeline's safety net). Read loop only; one branch when the
// session is not blocked.
func (s *Session) FlowWait() (paused bool, wakeAt time.Time) {
	fl := s.flow
	if fl == nil || !fl.active {
		return s.pipe.stopRead(), s.pipe.wakeAt()
	}
	if fl.reason != NotFull {
		wakeAt = fl.retryAt
		if t := s.b.cfg.BlockTimeout; t > 0 {
			wakeAt = earliest(wakeAt, fl.since.Add(t))
		}
	}
	if !fl.throttledUntil.IsZero() {
		wakeAt = earliest(wakeAt, fl.throttledUntil)
	}
	wakeAt = earliest(wakeAt, s.pipe.wakeAt())
	paused = fl.paused || fl.disconnect || !fl.throttledUntil.IsZero() || s.pipe.stopRead()
	return paused, wakeAt
}

// Blocked reports why the session is blocked (NotFull when it is not),
// and whether it is throttled by its rate limits. Read loop only.
func (s *Session) Blocked() (reason FullReason, throttled bool) {
	if s.flow == nil {
		return NotFull, false
	}
	return s.flow.reason, !s.flow.throttledUntil.IsZero()
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// flowHolding reports whether frames must go through arriveBlocked.
func (s *Session) flowHolding() bool {
	return s.flow != nil && s.flow.active && s.flow.reason != NotFull
}

// flowState returns the flow-control state, made on first use: most
// sessions never block, and an idle one should not carry it.
func (s *Session) flowState() *sessionFlow {
	if s.flow == nil {
		s.flow = &sessionFlow{}
	}
	return s.flow
}

// flowDone drops the flow-control state once nothing in it is set: the
// session is neither blocked nor throttled and holds no frame.
func (s *Session) flowDone() {
	if fl := s.flow; fl != nil && !fl.active && !fl.replaying && len(fl.held) == 0 &&
		fl.waitQueue == nil && !fl.waitTotal && !fl.disconnect {
		s.flow = nil
	}
}

// refused handles a handler's refusal because a bound is full: under
// FullBlock the frame is held (or, re-run, stays held) and the session
// blocks; it reports false under FullError (the caller fails as before).
func (s *Session) refused(f *frames.Frame, err *stompError) bool {
	if s.b.cfg.FullPolicy != FullBlock || s.state != stateConnected {
		return false
	}
	if s.flow != nil && s.flow.replaying {
		s.flow.refull = err
		return true
	}
	s.hold(f)
	s.blockOn(err, s.b.cfg.Now())
	return true
}

// arriveBlocked takes a frame that arrived while the session is blocked:
// applied at once if it frees resources or produces nothing, else held.
func (s *Session) arriveBlocked(f *frames.Frame) error {
	fl := s.flow // not nil: flowHolding sent f here
	switch {
	case fl.disconnect:
		return nil // STOMP: nothing may follow DISCONNECT; nothing is read after it either
	case appliesAtOnce(f):
		return s.run(f)
	case f.Command == frames.CmdDisconnect:
		// Unacknowledged messages go back to their queues for other
		// consumers now; the RECEIPT waits for the held frames. Not while
		// a transaction is open or held: its ACKs name deliveries of these
		// subscriptions, and its COMMIT was sent before the DISCONNECT.
		if len(s.txs) == 0 && !s.holdsTransaction() {
			for _, sub := range s.subs {
				s.removeSubscription(sub)
			}
		}
		fl.disconnect = true
	}
	s.hold(f)
	return nil
}

// holdsTransaction reports whether a held frame begins or belongs to a
// transaction.
func (s *Session) holdsTransaction() bool {
	if s.flow == nil {
		return false
	}
	for i := range s.flow.held {
		h := &s.flow.held[i]
		if h.cmd == frames.CmdBegin {
			return true
		}
		if _, tx := h.frame(&s.flow.scratch).Header("transaction"); tx {
			return true
		}
	}
	return false
}

// appliesAtOnce reports whether f overtakes held frames: it frees
// resources or produces nothing a held frame could depend on.
func appliesAtOnce(f *frames.Frame) bool {
	switch f.Command {
	case frames.CmdSubscribe, frames.CmdUnsubscribe:
		return true
	case frames.CmdAck, frames.CmdNack:
		_, tx := f.Header("transaction")
		return !tx
	}
	return false
}

// hold appends an owned copy of f to the held list, charged to the
// connection's budget: the first one whatever the budget says (it must be
// held anyway), the next ones until the budget is used, after which the
// driver stops reading.
func (s *Session) hold(f *frames.Frame) {
	h := newHeldFrame(f)
	size := h.size()
	fl := s.flowState()
	if !s.budget.holdInput(size) && len(fl.held) > 0 {
		fl.paused = true
	}
	fl.held = append(fl.held, h)
}

// blockOn records that the first held frame was refused by err at now:
// the metrics, the registration with whatever will poke the session when
// room frees (at most one, never twice), and the retry timer.
func (s *Session) blockOn(err *stompError, now time.Time) {
	fl := s.flowState()
	r := err.full
	switch {
	case fl.reason == NotFull:
		fl.since, fl.reasonSince, fl.backoff = now, now, 0
		s.b.flow.enter(r, now)
	case r != fl.reason:
		s.b.flow.leave(fl.reason, fl.reasonSince, now)
		s.b.flow.enter(r, now)
		fl.reasonSince = now
	}
	fl.reason, fl.active = r, true
	s.setBlocked(r)
	notified := false
	switch {
	case r == FullQueue && err.fullQueue != nil:
		if fl.waitQueue != nil && fl.waitQueue != err.fullQueue {
			fl.waitQueue.unwait(s)
		}
		fl.waitQueue = err.fullQueue
		notified = fl.waitQueue.wait(s, err.fullNeed)
	case r == FullTotal:
		fl.waitTotal = true
		notified = s.b.waitTotal(s, err.fullNeed)
	}
	delay := flowSafetyRetry
	if !notified {
		fl.backoff = min(flowRetryMax, max(flowRetryMin, 2*fl.backoff))
		delay = fl.backoff
	}
	fl.retryAt = now.Add(delay)
}

// flowPoked is Poked's flow-control work: end a throttle that is over,
// fail a block past BlockTimeout, else re-run the held frames.
func (s *Session) flowPoked() {
	fl := s.flow
	if fl == nil || !fl.active {
		return
	}
	now := s.b.cfg.Now()
	if !fl.throttledUntil.IsZero() && !now.Before(fl.throttledUntil) {
		s.b.flow.leave(FullRate, fl.throttledSince, now)
		fl.throttledUntil, s.resumedAfter = time.Time{}, now.Sub(s.opened())
		fl.active = fl.reason != NotFull
	}
	if fl.reason == NotFull {
		s.flowDone()
		return
	}
	if t := s.b.cfg.BlockTimeout; t > 0 && now.Sub(fl.since) >= t {
		s.fail(&stompError{code: CodeLimitExceeded, message: "blocked too long",
			detail: "This connection was blocked (" + fl.reason.String() + " full) for longer than " + t.String() +
				"; the frames it sent since were not processed (no RECEIPT). Reconnect and send them again.",
			retryable: true, reason: CloseLimitExceeded}, nil)
		s.state = stateClosed
		return
	}
	s.resumeHeld(now)
}

// resumeHeld re-runs the held frames in order; one refused again stays
// first and the session blocks again.
func (s *Session) resumeHeld(now time.Time) {
	fl := s.flow // not nil: flowPoked checked
	fl.replaying = true
	for len(fl.held) > 0 && s.state == stateConnected && !s.out.closed.Load() {
		h := &fl.held[0]
		f := h.frame(&fl.scratch)
		if s.pipe.pending() && !s.pipeAdmits(f) {
			s.flowToPipe() // they wait behind the pipeline, in order
			break
		}
		fl.refull = nil
		err := s.run(f)
		if fl.refull != nil {
			fl.replaying = false
			s.blockOn(fl.refull, now)
			fl.paused = fl.paused && s.budget.held() >= s.budget.limit
			return
		}
		s.budget.releaseInput(h.size())
		fl.held[0] = heldFrame{}
		fl.held = fl.held[1:]
		if err != nil {
			break
		}
	}
	fl.replaying = false
	if s.state == stateConnected && !s.out.closed.Load() {
		s.unblock(now)
	}
	s.flowDone()
}

// unblock ends a block: every held frame has run.
func (s *Session) unblock(now time.Time) {
	fl := s.flow
	s.b.flow.leave(fl.reason, fl.reasonSince, now)
	s.unregister()
	fl.reason, fl.paused, fl.retryAt, fl.backoff = NotFull, false, time.Time{}, 0
	s.setBlocked(NotFull)
	fl.held, s.resumedAfter = nil, now.Sub(s.opened())
	fl.scratch = frames.Frame{} // pins the last held frame's bytes otherwise
	fl.active = !fl.throttledUntil.IsZero()
}

// unregister removes the session from what it waited on.
func (s *Session) unregister() {
	fl := s.flow
	if fl == nil {
		return
	}
	if fl.waitQueue != nil {
		fl.waitQueue.unwait(s)
		fl.waitQueue = nil
	}
	if fl.waitTotal {
		s.b.unwaitTotal(s)
		fl.waitTotal = false
	}
}

// throttle, after a chunk under FullBlock left a rate bucket negative,
// has the driver stop reading until both are positive again.
func (s *Session) throttle() {
	rt := s.rateLimits() // not nil: a bucket went negative
	wait := max(rt.bytes.deficit(), rt.frames.deficit())
	fl := s.flowState()
	if fl.throttledUntil.IsZero() {
		fl.throttledSince = rt.fedAt
		s.b.flow.enter(FullRate, rt.fedAt)
	}
	fl.throttledUntil, fl.active = rt.fedAt.Add(wait), true
}

// deficit is how long the bucket needs to be positive again.
func (rb *rateBucket) deficit() time.Duration {
	if rb.rate == 0 || rb.tokens >= 0 {
		return 0
	}
	return time.Duration(-rb.tokens / rb.rate * float64(time.Second))
}

// flowRelease, when the session ends, gives back what flow control holds:
// the held frames (never acknowledged: the client got no RECEIPT for
// them), the registrations and the metrics.
func (s *Session) flowRelease() {
	fl := s.flow
	if fl == nil {
		return
	}
	if !fl.active {
		s.flow = nil
		return
	}
	now := s.b.cfg.Now()
	if fl.reason != NotFull {
		s.b.flow.leave(fl.reason, fl.reasonSince, now)
		s.unregister()
	}
	if !fl.throttledUntil.IsZero() {
		s.b.flow.leave(FullRate, fl.throttledSince, now)
	}
	for i := range fl.held {
		s.budget.releaseInput(fl.held[i].size())
	}
	s.flow = nil
}

// heldCount is how many frames are held (tests).
func (s *Session) heldCount() int {
	if s.flow == nil {
		return 0
	}
	return len(s.flow.held)
}
