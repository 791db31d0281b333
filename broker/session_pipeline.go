package broker

import (
	"sync/atomic"
	"time"

	"github.com/stompbox/stompbox/frames"
)

// Pipelined persistent publishing (publisher confirms). With a
// PipelinedJournal, a persistent SEND outside a transaction does not make
// the read loop wait for the disk: its room is reserved, its records are
// handed to the journal (AppendAsync) and the next frame is read. The
// journal's completion only records the outcome and pokes the session;
// Poked applies completed SENDs in arrival order: the message enters its
// queue or durable subscriptions, then its RECEIPT is queued. So a message
// is deliverable, and acknowledged, only once it is on disk as the sync
// policy says, one connection's messages enter each destination in the
// order sent, and the journal's group commit merges the in-flight SENDs of
// every connection into few fsyncs.
//
// While SENDs are in flight, a frame that must keep its order with them
// waits behind them, held as flow control holds frames (an owned copy,
// charged to the connection's budget): everything except further
// persistent SENDs (which join the pipeline while nothing is held),
// heart-beats, and ACK and NACK outside transactions, SUBSCRIBE and
// UNSUBSCRIBE without a receipt, which apply at once as they do while the
// session is blocked. Held frames run in order once the SENDs ahead of
// them are applied. In-flight and held input count against the
// connection's budget: past it the driver stops reading until completions
// free it (backpressure), so a producer that outruns the disk is slowed
// down, never buffered without bound.

// pipedOverhead approximates what an in-flight SEND costs besides its
// message (its entry, its records), charged to the budget.
const pipedOverhead = 160

// pipeline is a session's persistent SENDs in flight and the frames held
// behind them. Read loop only, except notified and signal (and the
// session's pipeBusy).
type pipeline struct {
	sends []*pipedSend // handed to the journal, not applied yet; sends[head] is the oldest
	head  int
	held  []heldFrame // frames waiting behind sends, in arrival order
	bytes int         // input charged to the budget for sends and held
	// paused: the charged input passed the budget, so the driver stops
	// reading until completions free it. disconnect: a DISCONNECT is held
	// (nothing more is read). stopping: a Shutdown waits for the SENDs in
	// flight to be receipted first.
	paused, disconnect, stopping bool
	// safetyAt is when the driver calls Poked even without a poke while
	// SENDs are in flight: a safety net, as flow control's retry timer.
	safetyAt time.Time
	// running says held[0] is being run; kept that it must stay first.
	running, kept bool
	scratch       frames.Frame // a held frame decoded for its run
	// notified is set by the first completion since the read loop last
	// looked, so a group commit's worth of completions costs one Poke.
	notified atomic.Bool
	// signal (capacity 1, made with the pipeline) is also told of
	// completions, for Release, which waits for them.
	signal chan struct{}
}

// pipeState returns the session's pipeline, made on first use (with its
// signal) and kept. It must be made before a SEND is handed over: the
// completion reaches it through the session.
func (s *Session) pipeState() *pipeline {
	if s.pipe == nil {
		s.pipe = &pipeline{signal: make(chan struct{}, 1)}
	}
	return s.pipe
}

// pipedSend is one persistent SEND handed to the journal and not applied.
type pipedSend struct {
	s          *Session // immutable
	msg        *Message // nil: an expired SEND whose RECEIPT waits for its turn
	route      route
	q          *queue   // where msg's room is reserved; nil for a topic
	feeds      []*queue // a topic's durable subscriptions, room reserved in each
	recs       []JournalRecord
	receipt    []byte // an owned copy of the receipt header
	hasReceipt bool
	size       int   // charged to the budget's input
	err        error // written by JournalDone before done
	done       atomic.Bool
	// retry (read loop only): the journal refused the records for lack of
	// room and full_policy is block: they are handed to it again when the
	// pipeline's timer is due, and nothing behind them is applied first.
	retry   bool
	retryAt time.Time
	// claim is the SEND's idempotency key, given back if the journal
	// fails it (dedupe.go).
	claim dedupeClaim
	// cluster: msg is stored in the cluster's queue (cluster_send.go),
	// not journaled nor enqueued here.
	cluster bool
	// copies (cluster mode, a topic SEND): the durable subscriptions'
	// queues its copies are stored in, not stored yet (cluster_durable.go).
	copies []string
	// history (cluster mode, a topic SEND): the cluster keeps the topic's
	// history, rule historyRule, which delivers it to every node
	// (cluster_history_send.go); historyStored once it has it.
	history       bool
	historyStored bool
	historyRule   int
}

// JournalDone implements JournalDone. It runs on the journal's goroutine,
// so it only records the outcome and wakes the session's read loop.
func (e *pipedSend) JournalDone(err error) {
	e.err = err
	e.done.Store(true)
	p := e.s.pipe // made before the SEND was handed over
	select {
	case p.signal <- struct{}{}:
	default:
	}
	if !p.notified.Swap(true) {
		e.s.t.Poke()
	}
}

// inflight reports whether SENDs are in the pipeline.
func (p *pipeline) inflight() bool { return p != nil && p.head < len(p.sends) }

// pending reports whether SENDs are in flight or frames held behind them.
func (p *pipeline) pending() bool { return p != nil && (p.head < len(p.sends) || len(p.held) > 0) }

// waiting reports whether a frame being handled must wait behind the
// pipeline: SENDs are in flight, or it is not the held frame being run
// and frames are held.
func (p *pipeline) waiting() bool {
	return p != nil && (p.head < len(p.sends) || len(p.held) > 0 && !p.running)
}

// stopRead says the driver must not read the connection for now.
func (p *pipeline) stopRead() bool { return p != nil && (p.paused || p.disconnect || p.stopping) }

// wakeAt is when the driver must call Poked even without a poke (zero:
// never).
func (p *pipeline) wakeAt() time.Time {
	if p != nil && p.head < len(p.sends) {
		return p.safetyAt
	}
	return time.Time{}
}

// pipelinable reports whether f is a SEND that may join the pipeline: a
// persistent one outside a transaction, or one the cluster stores.
func (s *Session) pipelinable(f *frames.Frame) bool {
	if s.b.clusterSendFrame(f) || s.historySendFrame(f) {
		return true
	}
	if f.Command != frames.CmdSend {
		return false
	}
	if _, tx := f.Header("transaction"); tx {
		return false
	}
	v, ok := f.Header("persistent")
	return ok && string(v) == "true"
}

// pipeAdmits reports whether f may run now rather than wait behind the
// pipeline: an ACK, NACK (outside a transaction), SUBSCRIBE or
// UNSUBSCRIBE without a receipt always; a pipelinable SEND while no frame
// is held; anything while only the frame being run is ahead of it.
func (s *Session) pipeAdmits(f *frames.Frame) bool {
	p := s.pipe // not nil: the caller saw it pending
	if appliesAtOnce(f) {
		if _, r := f.Header("receipt"); !r {
			return true
		}
	}
	if len(p.held) > 0 && !p.running {
		return false
	}
	// Behind a SEND waiting to be retried (its queue full) the next ones
	// wait too: handed over now, they could be stored before it.
	return !p.inflight() || s.pipelinable(f) && !p.sends[p.head].retry
}

// arrivePiped takes a frame that arrived while the pipeline is not empty.
func (s *Session) arrivePiped(f *frames.Frame) error {
	p := s.pipe // not nil: HandleFrame saw it pending or stopping
	switch {
	case p.disconnect || p.stopping:
		return nil // nothing follows DISCONNECT; a shutdown runs nothing more
	case s.pipeAdmits(f):
		return s.run(f)
	}
	s.pipeHold(f)
	return nil
}

// sendPipelined hands a persistent SEND to the journal without waiting.
// piped is false when the SEND journals nothing (not persistent, a
// temporary queue, a topic without durable subscriptions): the caller goes
// on as without a pipeline. A refusal (a full queue or journal: err.full)
// leaves nothing changed, so flow control may hold the SEND and retry it.
func (s *Session) sendPipelined(f *frames.Frame, r route, m *Message, claim dedupeClaim) (piped bool, _ *stompError) {
	if s.b.clusterRoute(r) {
		return true, s.sendClustered(f, r, m, claim)
	}
	if rule := s.historyRoute(r); rule >= 0 {
		return true, s.sendHistory(f, r, m, rule, claim)
	}
	if r.kind == kindTopic {
		if qs := s.space.durableCopies(r.key); len(qs) > 0 {
			return true, s.sendDurableCopies(f, r, m, qs, claim)
		}
	}
	if s.b.pipelined == nil || !s.b.persists(m) {
		return false, nil
	}
	var q *queue
	var feeds []*queue // a topic's durable subscriptions: room reserved in each
	var recs []JournalRecord
	created := s.created
	switch r.kind {
	case kindQueue:
		var err *stompError
		if q, err = s.reserveRoute(r, m); err != nil {
			return true, err
		}
		recs = s.space.persistRecords(r, m, nil)
	case kindTopic:
		qs := s.space.durableQueuesFor(r.key)
		if len(qs) == 0 {
			return false, nil
		}
		var err *stompError
		if feeds, err = reserveEach(qs, m.size()); err != nil {
			return true, err
		}
		if len(feeds) == 0 {
			return false, nil // every durable subscription went away meanwhile
		}
		if err := s.publishTopicClustered(r.key, m); err != nil {
			unreserveEach(feeds, m.size())
			return true, err
		}
		recs = durableRecords(feeds, m, nil)
	default:
		return false, nil
	}
	e := &pipedSend{s: s, msg: m, route: r, q: q, feeds: feeds, recs: recs, size: m.size() + pipedOverhead, claim: claim}
	if v, ok := f.Header("receipt"); ok {
		e.receipt, e.hasReceipt = append([]byte(nil), v...), true
	}
	s.pipeState() // before the journal has it: its completion uses it
	if err := s.b.pipelined.AppendAsync(e, recs...); err != nil {
		if q != nil {
			q.unreserve(m.size())
			if s.created > created && q.isDeleted() {
				s.created = created // refused: the queue made for it is gone again
			}
		}
		unreserveEach(feeds, m.size())
		return true, s.b.journalError(err)
	}
	s.pipePush(e)
	return true, nil
}

// pipeReceipt queues f's RECEIPT behind the SENDs in flight (a SEND that
// expired before it was sent has nothing else to wait for).
func (s *Session) pipeReceipt(f *frames.Frame) {
	v, ok := f.Header("receipt")
	if !ok {
		return
	}
	e := &pipedSend{s: s, receipt: append([]byte(nil), v...), hasReceipt: true, size: pipedOverhead}
	e.done.Store(true)
	s.pipePush(e)
}

// pipePush appends e to the pipeline, charged to the budget: the first
// entry whatever the budget says, the next ones until it is used, after
// which the driver stops reading.
func (s *Session) pipePush(e *pipedSend) {
	p := s.pipeState()
	if !s.budget.holdInput(e.size) && p.pending() {
		p.paused = true
	}
	p.bytes += e.size
	p.sends = append(p.sends, e)
	if !s.flag(flagPipeBusy) {
		s.flags.Or(flagPipeBusy)
		p.safetyAt = s.b.cfg.Now().Add(flowSafetyRetry)
	}
}

// pipeHold keeps an owned copy of f behind the pipeline, charged to the
// budget; the held frame being run stays where it is instead.
func (s *Session) pipeHold(f *frames.Frame) {
	p := s.pipe // not nil: arrivePiped's
	if p.running {
		p.kept = true
		return
	}
	h := newHeldFrame(f)
	if !s.budget.holdInput(h.size()) {
		p.paused = true
	}
	p.bytes += h.size()
	p.held = append(p.held, h)
	if f.Command == frames.CmdDisconnect {
		p.disconnect = true
	}
}

// pipeDrain applies, in order, the SENDs whose journal writes are done,
// and runs the frames held behind them; it stops at the first SEND still
// in flight (a held persistent SEND may join the pipeline behind it) and
// while flow control holds the session. Read loop only (Poked).
func (s *Session) pipeDrain() {
	p := s.pipe
	if p == nil {
		return // never pipelined
	}
	// Reset before looking, whether or not anything is pending: a
	// completion sets notified after marking its SEND done, so it may set
	// it after a drain has already applied that SEND, and a flag left set
	// would keep the next round's completions from poking.
	if p.notified.Load() {
		p.notified.Store(false)
	}
	if !p.pending() && !p.stopping {
		return
	}
	for s.state == stateConnected && !s.out.closed.Load() {
		if p.inflight() && s.pipeRefused(p.sends[p.head]) {
			if !s.pipeRetry(p.sends[p.head]) {
				break
			}
			continue
		}
		if p.inflight() && p.sends[p.head].done.Load() {
			e := p.sends[p.head]
			p.sends[p.head] = nil
			p.head++
			s.budget.releaseInput(e.size)
			p.bytes -= e.size
			if !s.applyPiped(e) {
				break
			}
			continue
		}
		if len(p.held) == 0 || p.stopping || s.flag(flagShutdownAsked) || s.flowHolding() {
			break
		}
		f := p.held[0].frame(&p.scratch)
		if p.inflight() && (!s.pipelinable(f) || p.sends[p.head].retry) {
			break
		}
		p.running, p.kept = true, false
		err := s.run(f)
		p.running = false
		if p.kept {
			break // a SEND that journals nothing, behind SENDs in flight
		}
		size := p.held[0].size()
		p.held[0] = heldFrame{}
		p.held = p.held[1:]
		s.budget.releaseInput(size)
		p.bytes -= size
		if s.flowHolding() {
			s.pipeToFlow() // the frame was refused and held: the rest wait behind it
			break
		}
		if err != nil {
			break
		}
	}
	s.pipeSettle()
}

// pipeSettle updates the pipeline's flags after it changed: its slices
// are reused once empty, reading resumes once the budget has room, and a
// Shutdown that waited for the SENDs in flight is carried out.
func (s *Session) pipeSettle() {
	p := s.pipe // not nil: pipeDrain's
	if !p.inflight() {
		p.sends, p.head = p.sends[:0], 0
	}
	if len(p.held) == 0 {
		p.held, p.scratch = nil, frames.Frame{} // scratch pins a held frame's bytes otherwise
	}
	if p.paused && s.budget.held() <= s.budget.limit {
		p.paused = false
		s.resumedAfter = s.b.cfg.Now().Sub(s.opened()) // heart-beat timeouts count from here
	}
	if p.inflight() {
		p.safetyAt = s.b.cfg.Now().Add(flowSafetyRetry)
		if p.sends[p.head].retry {
			p.safetyAt = s.b.cfg.Now().Add(pipeRetryInterval)
		}
	}
	if p.inflight() || s.state != stateConnected {
		return
	}
	// Shutdown sets flagShutdownAsked in the same word: whichever of the
	// two changes it second sees the other's bit.
	if s.flags.And(^flagPipeBusy)&flagShutdownAsked != 0 {
		p.stopping = false
		s.shutdownNow()
		s.state = stateClosed
	}
}

// applyPiped applies one completed SEND: the message enters its queue or
// durable subscriptions, then its RECEIPT is queued. A failed journal
// write fails the session with the ERROR a waited Append gives. It
// reports false when the session ended.
func (s *Session) applyPiped(e *pipedSend) bool {
	if e.err != nil {
		e.unreserve()
		e.claim.release()
		s.fail(e.pipeError(), e.receiptFrame())
		s.state = stateClosed
		return false
	}
	if e.msg != nil {
		if err := s.enterPiped(e); err != nil {
			e.claim.release()
			s.fail(err, e.receiptFrame())
			s.state = stateClosed
			return false
		}
		s.b.stats.Published.Add(s.stripe, 1)
	}
	e.claim.settle()
	if e.hasReceipt {
		s.receiptID(e.receipt)
	}
	return true
}

// receiptFrame is a frame carrying only e's receipt header, for fail to
// echo; nil when none was asked.
func (e *pipedSend) receiptFrame() *frames.Frame {
	if !e.hasReceipt {
		return nil
	}
	return &frames.Frame{Command: frames.CmdSend, Headers: []frames.Header{{Key: []byte("receipt"), Value: e.receipt}}}
}

// pipeToFlow moves the frames held behind a frame that flow control has
// just blocked on into its held list, behind that frame: they keep their
// order and their charge.
func (s *Session) pipeToFlow() {
	p, fl := s.pipeState(), s.flowState()
	for i := range p.held {
		p.bytes -= p.held[i].size()
	}
	fl.held = append(fl.held, p.held...)
	fl.disconnect = fl.disconnect || p.disconnect
	fl.paused = fl.paused || s.budget.held() > s.budget.limit
	p.held, p.disconnect, p.paused = nil, false, false
}

// flowToPipe moves the frames flow control still holds behind the
// pipeline (they reached the front of the blocked list while SENDs are in
// flight or frames are held there): they keep their order and their
// charge; the caller ends the block.
func (s *Session) flowToPipe() {
	p, fl := s.pipeState(), s.flowState()
	for i := range fl.held {
		p.bytes += fl.held[i].size()
	}
	p.held = append(p.held, fl.held...)
	p.disconnect = p.disconnect || fl.disconnect
	p.paused = p.paused || s.budget.held() > s.budget.limit
	fl.held, fl.disconnect = nil, false
}

// pipeRelease, when the session ends, settles the pipeline: the SENDs in
// flight are waited for (at most journalTimeout in all), and those the
// journal took enter their destinations as they would have (their RECEIPTs
// can no longer be sent: like any frame whose RECEIPT did not arrive, the
// client may send them again, at least once). Held frames are dropped
// (never acknowledged), and the budget charge is given back.
func (s *Session) pipeRelease() {
	p := s.pipe
	if !p.pending() {
		return
	}
	var timeout <-chan time.Time
	if p.inflight() {
		t := time.NewTimer(journalTimeout)
		defer t.Stop()
		timeout = t.C
	}
	for _, e := range p.sends[p.head:] {
		for timeout != nil && !e.done.Load() {
			select {
			case <-p.signal:
			case <-timeout:
				timeout = nil
			}
		}
		switch {
		case !e.done.Load() || e.err != nil:
			e.unreserve()
			e.claim.release()
			if !e.done.Load() {
				s.b.cfg.Logger.Warn("a persistent SEND of a closed connection was not confirmed in time; "+
					"it may come back after a restart", "session", s.id, "message_id", e.msg.ID, "cluster", e.cluster)
			}
		case e.msg == nil:
		default:
			if s.enterPiped(e) == nil {
				s.b.stats.Published.Add(s.stripe, 1)
				e.claim.settle()
			} else {
				e.claim.release()
			}
		}
	}
	s.budget.releaseInput(p.bytes)
	p.sends, p.head, p.held, p.bytes, p.scratch = nil, 0, nil, 0, frames.Frame{}
	p.paused, p.disconnect, p.stopping = false, false, false
	s.flags.And(^flagPipeBusy)
}

// pipedCount is how many SENDs are in the pipeline and how many frames
// are held behind them (tests).
func (s *Session) pipedCount() (sends, held int) {
	if s.pipe == nil {
		return 0, 0
	}
	return len(s.pipe.sends) - s.pipe.head, len(s.pipe.held)
}
