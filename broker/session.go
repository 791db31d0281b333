package broker

import (
	"errors"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/stompbox/stompbox/frames"
)

type sessionState uint8

const (
	stateAwaitingConnect sessionState = iota
	stateConnected
	stateClosed
	stateReleased
)

// Session is the STOMP state machine of one connection. Feed and Release run
// on the connection's read loop; AppendOutput on its writer; the outbox is the
// only state both they and other sessions' publishers touch.
type Session struct {
	b      *Broker   // immutable
	t      Transport // immutable
	id     string    // immutable
	remote string    // immutable
	// openedAt (immutable but for AcceptedAt) is when the connection was
	// accepted, from the broker's epoch (opened).
	openedAt time.Duration

	// parser (read loop only) is nil while the connection is quiet after
	// a rare frame (Feed): an idle connection need not keep one.
	parser *frames.Parser

	// The small fields are grouped so that the struct has no padding:
	// every idle connection carries it (issue 15).

	// Read loop only.
	state sessionState
	// Written by the read loop before CONNECTED is queued, read by the writer
	// after taking it from the outbox: the outbox mutex orders the two.
	version  frames.Version
	escaping frames.Escaping
	// flags: flagInFrame (set by the read loop, with a journal only) says
	// a frame is being handled, possibly waiting for the journal;
	// flagPipeBusy says persistent SENDs are in flight (pipe);
	// flagShutdownAsked says Shutdown ran meanwhile. Whichever side sees
	// both set closes the session, so a frame in flight gets its RECEIPT
	// before the ERROR. One word, changed by read-modify-writes, so the
	// two sides cannot both miss the other.
	flags      atomic.Uint32
	nextSubNum uint32 // read loop only
	stripe     uint32 // immutable: its stripe of the broker's StripedCounters
	created    int32  // read loop only: destinations this connection created
	// reconnectAfter (ms + 1; 0: none) is the reconnect-after the
	// server-shutdown ERROR carries (ShutdownReconnectAfter).
	reconnectAfter atomic.Int32

	// Read loop only.
	space *space // the virtual host joined at CONNECT
	// principal is who CONNECT authenticated, for the Authorizer and logs;
	// before CONNECT, who Preauthenticate said the transport authenticated.
	principal *Principal
	// x (nil until needed) is what few sessions use (session_rare.go).
	x          *sessionExtra
	subTab     subTable // the subscriptions (session_subs.go); range over s.subs
	txs        map[string]*transaction
	tempQueues map[string]*queue // by the name after /temp-queue/
	replyToken string            // 128 random bits in hex, drawn on first use of a temporary queue
	expect     time.Duration     // negotiated client->server heart-beat interval
	// flow (nil: neither blocked nor throttled) is flow control's state,
	// made when the session first blocks and dropped when it ends
	// (flow_session.go); resumedAfter, when the last block or throttle
	// ended (counted from opened; 0: never), outlives it for ReadDeadline.
	flow         *sessionFlow
	resumedAfter time.Duration
	// pipe (nil until the first pipelined SEND, then kept: a producer of
	// persistent messages must not allocate it per SEND) is the persistent
	// SENDs in flight (session_pipeline.go); read loop only but its
	// atomics.
	pipe *pipeline

	sendInterval atomic.Int64 // server->client heart-beat interval (ns); 0 = none
	nextAck      atomic.Uint64
	out          outbox
	budget       budget        // everything held because of this connection
	auth         sessionAuth   // token expiry and re-authorization (session_auth.go)
	resume       sessionResume // session recovery (resume_park.go)

	// liveness (ns; 0: none) is the negotiated heart-beat timeout, set at
	// CONNECT, for LivenessTimeout.
	liveness atomic.Int64
	// card (nil before CONNECT) is what Info reads (admin_session.go).
	card atomic.Pointer[sessionCard]

	// Writer only: spares swapped with the outbox.
	spareEntries []outEntry
	spareCtrl    []byte
	spareStarved []*queue
	// spareRemovals holds the removal records of the auto-ack queue
	// deliveries of one AppendOutput (session_output.go).
	spareRemovals []JournalRecord
}

// NewSession starts the protocol state of a new connection. remote is the
// peer's address, for logs and the Authenticator.
func (b *Broker) NewSession(t Transport, remote string) *Session {
	id, num := b.newSessionID()
	s := &Session{
		b: b, t: t, remote: remote,
		id:       id,
		stripe:   uint32(num % counterStripes),
		openedAt: b.cfg.Now().Sub(b.epoch),
		parser:   frames.NewParser(b.cfg.Frame),
	}
	s.out.limit, s.out.budget = b.cfg.MaxOutboxBytes, &s.budget
	s.budget.limit, s.budget.out = int64(b.cfg.MaxConnectionBytes), &s.out
	if b.cfg.MaxFramesPerSecond > 0 || b.cfg.MaxBytesPerSecond > 0 {
		x := s.extra()
		x.rate = sessionRate{
			on:     true,
			frames: newRateBucket(b.cfg.MaxFramesPerSecond, 2*b.cfg.MaxFramesPerSecond),
			bytes:  newRateBucket(b.cfg.MaxBytesPerSecond, 2*b.cfg.MaxBytesPerSecond),
		}
	}
	b.sessionCount.Add(1)
	return s
}

// Preauthenticate records the principal the transport already
// authenticated (a token in the WebSocket upgrade request): a CONNECT
// without login and passcode then connects as p. Call it before the first
// Feed.
func (s *Session) Preauthenticate(p *Principal) { s.principal = p }

// AcceptedAt moves the moment the connection counts as accepted back to
// t, for a driver that spent time on it before the session existed (a
// PROXY protocol header): the connect timeout counts from accept. A t
// after the session's own start is ignored. Call it before the first
// Feed.
func (s *Session) AcceptedAt(t time.Time) {
	if !t.IsZero() && t.Before(s.opened()) {
		s.openedAt = t.Sub(s.b.epoch)
	}
}

// The bits of Session.flags.
const (
	flagInFrame uint32 = 1 << iota
	flagShutdownAsked
	flagPipeBusy
)

// flag reports whether bit f of the session's flags is set.
func (s *Session) flag(f uint32) bool { return s.flags.Load()&f != 0 }

// opened is when the connection was accepted.
func (s *Session) opened() time.Time { return s.b.epoch.Add(s.openedAt) }

// ID is the session id sent in CONNECTED.
func (s *Session) ID() string { return s.id }

// errStop tells the parser to stop: the session has queued its last frame.
var errStop = errors.New("broker: stop reading")

// Feed parses bytes read from the connection and acts on every complete
// frame. The bytes are borrowed until Feed returns (and decoded in place).
// It returns ErrSessionClosed once the session has ended; the driver then
// stops reading and lets the writer flush and close.
func (s *Session) Feed(chunk []byte) error {
	if s.state >= stateClosed || s.out.closed.Load() {
		s.state = max(s.state, stateClosed)
		return ErrSessionClosed
	}
	if rt := s.rateLimits(); rt != nil {
		rt.fedAt = s.b.cfg.Now()
		if !rt.bytes.take(rt.fedAt, float64(len(chunk))) && s.b.cfg.FullPolicy == FullError {
			s.fail(rateErr("bytes", s.b.cfg.MaxBytesPerSecond), nil)
			s.state = stateClosed
			return ErrSessionClosed
		}
	}
	if s.parser == nil {
		if beats, ok := onlyHeartbeats(chunk); ok {
			s.counts().heartbeats.Add(beats) // what the parser would do, without making one
			return nil
		}
		s.parser = frames.NewParser(s.b.cfg.Frame)
		s.parser.SetVersion(s.version)
	}
	err := s.parser.Parse(chunk, (*frameHandler)(s))
	if err == nil && s.state == stateConnected && s.parser.Idle() {
		s.parser = nil // made again by the next Feed: an idle connection holds none
	}
	if err == nil {
		if rt := s.rateLimits(); rt != nil && (rt.bytes.tokens < 0 || rt.frames.tokens < 0) {
			s.throttle() // FullBlock: under FullError a negative bucket failed above
		}
		return nil
	}
	if !errors.Is(err, errStop) {
		s.fail(frameError(err), nil)
	}
	s.state = stateClosed
	return ErrSessionClosed
}

// onlyHeartbeats reports whether chunk is nothing but whole heart-beats
// (EOLs: LF or CR LF) and how many: an idle client's traffic, which a
// session between frames takes without making a parser.
func onlyHeartbeats(chunk []byte) (uint64, bool) {
	var beats uint64
	for i := 0; i < len(chunk); i++ {
		switch {
		case chunk[i] == '\n':
			beats++
		case chunk[i] == '\r' && i+1 < len(chunk) && chunk[i+1] == '\n':
			beats++
			i++
		default:
			return 0, false
		}
	}
	return beats, len(chunk) > 0
}

// frameError turns a parse error into the ERROR the client gets.
func frameError(err error) *stompError {
	code := frames.ErrorCode(err)
	var fe *frames.Error
	msg := "malformed frame"
	if errors.As(err, &fe) {
		msg = fe.Message
	}
	e := &stompError{code: code, message: msg, detail: err.Error(), reason: CloseProtocolError}
	if code == CodeFrameTooLarge {
		e.reason = CloseFrameTooLarge
		e.detail += "\nThe frame exceeds a server limit; resending it will fail again."
	}
	return e
}

// ReadTimeout is how long the driver may wait for the next bytes before
// calling Expire: before CONNECT, what is left of the connect timeout
// (counted from accept, so trickling bytes does not extend it); after, the
// negotiated client heart-beat interval times the tolerance; 0 means no
// deadline.
func (s *Session) ReadTimeout() time.Duration {
	if s.state == stateAwaitingConnect {
		return max(time.Millisecond, s.b.cfg.ConnectTimeout-s.b.cfg.Now().Sub(s.opened()))
	}
	if s.expect == 0 {
		return 0
	}
	return time.Duration(float64(s.expect) * s.b.cfg.HeartbeatTolerance)
}

// ReadDeadline is when the driver stops waiting for bytes and calls
// Expire, given when the last bytes arrived (lastRead): before CONNECT,
// the connect timeout counted from accept, so trickling bytes does not
// extend it; after, lastRead plus the negotiated client heart-beat
// interval times the tolerance, so work that interrupts a read (Poked)
// does not extend a silent client's time either. Zero means none.
func (s *Session) ReadDeadline(lastRead time.Time) time.Time {
	if s.state == stateAwaitingConnect {
		return s.opened().Add(s.b.cfg.ConnectTimeout)
	}
	if fl := s.flow; s.expect == 0 || fl != nil && fl.active && (fl.reason != NotFull || !fl.throttledUntil.IsZero()) {
		return time.Time{} // not timed out while blocked: the driver may not be reading
	}
	if resumed := s.opened().Add(s.resumedAfter); s.resumedAfter > 0 && resumed.After(lastRead) {
		lastRead = resumed // counted again from the unblock
	}
	return lastRead.Add(s.ReadTimeout())
}

// HeartbeatInterval is how often the writer must send something (a
// heart-beat EOL when idle); 0 means never. Safe from any goroutine.
func (s *Session) HeartbeatInterval() time.Duration {
	return time.Duration(s.sendInterval.Load())
}

// Expire is called by the read loop when ReadTimeout passed without a byte:
// the client is told why and the session closes.
func (s *Session) Expire() {
	if s.state >= stateClosed {
		return
	}
	if s.state == stateAwaitingConnect {
		s.fail(&stompError{code: CodeConnectTimeout, message: "no CONNECT in time",
			detail:    "A CONNECT frame must arrive within " + s.b.cfg.ConnectTimeout.String() + " of connecting.",
			retryable: true, reason: CloseConnectTimeout}, nil)
	} else {
		s.failSilent(&stompError{code: CodeHeartbeatTimeout, message: "heart-beat timeout",
			detail:    "Nothing was received for " + s.ReadTimeout().String() + ", longer than the negotiated heart-beat interval allows.",
			retryable: true, reason: CloseHeartbeatTimeout})
	}
	s.state = stateClosed
}

// Poked runs the read-loop work the session asked for with Transport.Poke
// (work that did not arrive on the socket). The driver calls it from the
// read loop; like Feed, it returns ErrSessionClosed once the session has
// ended.
func (s *Session) Poked() error {
	if s.state >= stateClosed || s.out.closed.Load() {
		s.state = max(s.state, stateClosed)
		return ErrSessionClosed
	}
	// Rights first: frames held for a session whose token expired or whose
	// rights were withdrawn must not run.
	if err := s.checkRights(); err != nil {
		return err
	}
	s.pipeDrain() // completions first: they may end a block or free the budget
	if s.state < stateClosed {
		s.flowPoked()
	}
	if s.state < stateClosed {
		s.pipeDrain() // what an ended block moved behind the pipeline
	}
	if s.state >= stateClosed {
		return ErrSessionClosed
	}
	return nil
}

// Shutdown tells the client the server is going away (retryable) and closes.
// A frame the read loop is handling (a persistent SEND waiting for the
// journal, say) is finished first, receipt included, and so are the
// persistent SENDs in flight (pipelined). Safe from any goroutine: it only
// touches atomics and the outbox.
func (s *Session) Shutdown() {
	if old := s.flags.Or(flagShutdownAsked); old&(flagInFrame|flagPipeBusy) != 0 {
		return // the read loop shuts down once the frame or the pipeline is done
	}
	s.shutdownNow()
}

func (s *Session) shutdownNow() {
	e := &stompError{code: CodeServerShutdown, message: "server shutting down",
		detail: "The server is shutting down; reconnect later.", retryable: true, reason: CloseShutdown}
	if ms := s.reconnectAfter.Load(); ms > 0 {
		e.reconnectAfter = strconv.FormatInt(int64(ms-1), 10)
	}
	if ok, _ := s.out.close(CloseShutdown, false, errorFrame(e, nil, frames.EscapeNone)); ok {
		s.b.errors.add(e.code)
		s.t.Close(CloseShutdown)
	}
}

// Abort ends the session without a frame: the network failed or the peer
// closed. A session with a resume-token keeps its queued deliveries for a
// resume (closeOut). Safe from any goroutine.
func (s *Session) Abort(reason CloseReason) {
	s.closeOut(reason, nil)
}

// putBack returns auto-ack queue deliveries that were never handed to the
// writer to their queues: auto-ack means acknowledged once written, not
// once queued for a connection that then died.
func putBack(unsent []outEntry) {
	for i := len(unsent) - 1; i >= 0; i-- { // each goes to the front: last first keeps the order
		if unsent[i].qm.settle != nil {
			unsent[i].sub.fedOut.Add(-1)
		}
		unsent[i].sub.queue.putBack(unsent[i].qm)
	}
}

// CloseReason returns why the session ended, once it has.
func (s *Session) CloseReason() (CloseReason, bool) { return s.out.closeReason() }

// fail queues an ERROR for e (echoing the frame's receipt, if any) and closes.
func (s *Session) fail(e *stompError, f *frames.Frame) {
	var receipt []byte
	if f != nil {
		receipt, _ = f.Header("receipt")
	}
	// Warn, with what an operator needs to find the client; never the frame
	// itself (a CONNECT carries a passcode).
	s.b.cfg.Logger.Warn("session error", "session", s.id, "remote", s.remote, "error_code", e.code, "message", e.message)
	esc := frames.EscapingFor(s.version, frames.CmdError)
	if ok, _ := s.out.close(e.reason, false, errorFrame(e, receipt, esc)); ok {
		s.b.errors.add(e.code)
		s.t.Close(e.reason)
	}
}

// errorFrame returns an encoder for the ERROR frame of e. STOMP 1.2: the
// ERROR frame "SHOULD contain a message header with a short description of
// the error" and "MAY contain a body" with details; receipt-id when the bad
// frame asked for a receipt. Callers off the read loop pass EscapeNone:
// the session's version is read-loop state, and their header values need
// no escaping.
func errorFrame(e *stompError, receipt []byte, esc frames.Escaping) func([]byte) []byte {
	return func(dst []byte) []byte {
		dst = frames.AppendCommand(dst, frames.CmdError)
		dst = frames.AppendHeaderString(dst, esc, "message", e.message)
		if receipt != nil {
			dst = frames.AppendHeader(dst, esc, []byte("receipt-id"), receipt)
		}
		dst = frames.AppendHeaderString(dst, esc, "error-code", e.code)
		dst = frames.AppendHeaderString(dst, esc, "retryable", strconv.FormatBool(e.retryable))
		if e.reconnectAfter != "" {
			dst = frames.AppendHeaderString(dst, esc, HeaderReconnectAfter, e.reconnectAfter)
		}
		if e.code == CodeUnsupportedVersion {
			dst = frames.AppendHeaderString(dst, esc, "version", frames.SupportedVersions)
		}
		dst = frames.AppendHeaderString(dst, esc, "content-type", "text/plain")
		return frames.AppendBody(dst, []byte(e.detail))
	}
}

// receipt queues a RECEIPT if f asked for one. STOMP 1.2: "the server MUST
// acknowledge the processing of a frame with a RECEIPT frame".
func (s *Session) receipt(f *frames.Frame) {
	if r, ok := f.Header("receipt"); ok {
		s.receiptID(r)
	}
}

// receiptID queues a RECEIPT with receipt-id r (encoded at once: r may be
// borrowed).
func (s *Session) receiptID(r []byte) {
	esc := s.escaping
	s.control(func(dst []byte) []byte {
		dst = frames.AppendCommand(dst, frames.CmdReceipt)
		dst = frames.AppendHeader(dst, esc, []byte("receipt-id"), r)
		return frames.AppendEnd(dst)
	})
}

// frameHandler is the Session as the parser's frames.Handler: unexported,
// so that a driver can only Feed bytes, never hand frames in past the
// rate limits and flow control Feed applies.
type frameHandler Session

// HandleHeartbeat implements frames.Handler. Liveness is the driver's read
// deadline, reset by any byte, so there is nothing to do here.
func (h *frameHandler) HandleHeartbeat() error {
	(*Session)(h).counts().heartbeats.Add(1)
	return nil
}

// HandleFrame implements frames.Handler: it dispatches one borrowed frame.
func (h *frameHandler) HandleFrame(f *frames.Frame) error { return (*Session)(h).handleIncoming(f) }

// handleIncoming dispatches one borrowed frame. Past the frame rate,
// FullError fails the session; FullBlock lets the bucket go negative and
// Feed throttles the driver after the chunk. While the session is
// blocked, arriveBlocked decides between now and later.
func (s *Session) handleIncoming(f *frames.Frame) error {
	s.counts().in[f.Command].Add(1)
	s.countIn()
	switch f.Command {
	case frames.CmdConnect, frames.CmdStomp, frames.CmdSubscribe:
		// Rare frames, often a connection's last before it idles: the
		// parser's buffers need not wait for a next frame. (Not
		// UNSUBSCRIBE: a frame of one or two headers, often followed by
		// a SUBSCRIBE.)
		if s.parser != nil { // always, from Parse; but HandleFrame is exported
			s.parser.Shrink()
		}
	}
	if rt := s.rateLimits(); rt != nil && rt.frames.rate > 0 && !rt.frames.take(rt.fedAt, 1) && s.b.cfg.FullPolicy == FullError {
		s.fail(rateErr("frames", s.b.cfg.MaxFramesPerSecond), f)
		s.state = stateClosed
		return errStop
	}
	if s.flowHolding() {
		return s.arriveBlocked(f)
	}
	if p := s.pipe; p != nil && (p.pending() || p.stopping) {
		return s.arrivePiped(f)
	}
	return s.run(f)
}

// run handles one frame (from the parser or the held list); with a
// journal it marks the frame in flight, so Shutdown waits for it.
func (s *Session) run(f *frames.Frame) error {
	if s.b.cfg.Journal == nil {
		return s.handleFrame(f)
	}
	s.flags.Or(flagInFrame)
	err := errStop
	if !s.flag(flagShutdownAsked) {
		err = s.handleFrame(f)
	}
	if s.flags.And(^flagInFrame)&flagShutdownAsked != 0 {
		if s.pipe.inflight() {
			// The SENDs in flight are receipted first; pipeSettle shuts
			// down once they are.
			s.pipe.stopping = true
			return nil
		}
		s.shutdownNow()
		s.state = stateClosed
		return errStop
	}
	return err
}

func (s *Session) handleFrame(f *frames.Frame) error {
	var err *stompError
	switch {
	case !s.headersValid(f):
		err = s.headerErr(f)
	case f.Command == frames.CmdConnect || f.Command == frames.CmdStomp:
		err = s.handleConnect(f)
	case s.state != stateConnected:
		err = protocolErr(CodeProtocolError, "not connected",
			"The first frame must be CONNECT or STOMP; got "+f.Command.String()+".")
	case !f.Command.FromClient():
		err = protocolErr(CodeProtocolError, "server frame from client",
			f.Command.String()+" is sent by servers, not clients.")
	default:
		err = s.handleConnected(f)
	}
	if err != nil {
		if err.full != NotFull && s.refused(f, err) {
			return nil // held: the session is blocked
		}
		s.fail(err, f)
		s.state = stateClosed
		return errStop
	}
	if s.state >= stateClosed {
		return errStop
	}
	return nil
}

func (s *Session) handleConnected(f *frames.Frame) *stompError {
	switch f.Command {
	case frames.CmdSend:
		return s.handleSend(f)
	case frames.CmdSubscribe:
		return s.handleSubscribe(f)
	case frames.CmdUnsubscribe:
		return s.handleUnsubscribe(f)
	case frames.CmdAck, frames.CmdNack:
		return s.handleAck(f)
	case frames.CmdBegin:
		return s.handleBegin(f)
	case frames.CmdCommit:
		return s.handleCommit(f)
	case frames.CmdAbort:
		return s.handleAbort(f)
	case frames.CmdDisconnect:
		return s.handleDisconnect(f)
	}
	return protocolErr(CodeProtocolError, "unexpected frame", f.Command.String()+" is not allowed here.")
}

// handleDisconnect: STOMP 1.2, "the client ... MUST NOT send any more frames
// after the DISCONNECT frame"; the RECEIPT is the last thing written, and
// it is queued only after the session's subscriptions are released, so "all
// previous frames have been processed" includes giving back its messages.
func (s *Session) handleDisconnect(f *frames.Frame) *stompError {
	s.releaseResources()
	s.receipt(f)
	if ok, _ := s.out.close(CloseDisconnect, false, nil); ok {
		s.t.Close(CloseDisconnect)
	}
	s.state = stateClosed
	return nil
}

// requireHeader returns a header's value or the ERROR for its absence.
func requireHeader(f *frames.Frame, key string) ([]byte, *stompError) {
	v, ok := f.Header(key)
	if !ok || len(v) == 0 {
		return nil, protocolErr(CodeMissingHeader, "missing "+key+" header",
			f.Command.String()+" requires a non-empty "+key+" header.")
	}
	return v, nil
}
