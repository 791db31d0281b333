package broker

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/stompbox/stompbox/frames"
)

// sessionCard is what Session.Info reads of a session's read-loop state,
// made once the session is connected (a connection that never connects
// costs nothing) and published through Session.card.
type sessionCard struct {
	// Immutable once published.
	user, vhost string
	version     frames.Version
	connected   time.Time

	// framesIn and framesOut count the session's frames from its CONNECT
	// on, CONNECT and CONNECTED included (heart-beats not); blocked is its FullReason while flow
	// control holds it.
	framesIn, framesOut atomic.Uint64
	blocked             atomic.Uint32

	// subsMu is taken by the read loop around every change of the
	// session's subscription table (lockSubs), and by Info to read it:
	// the read loop itself reads the table without it.
	subsMu sync.Mutex
}

// publishCard makes the session visible to Info as connected. Read loop
// only, at CONNECT.
func (s *Session) publishCard() {
	c := &sessionCard{version: s.version, connected: s.b.cfg.Now()}
	if s.principal != nil {
		c.user = s.principal.Name
	}
	if s.space != nil {
		c.vhost = s.space.name
	}
	c.framesIn.Store(1) // the CONNECT being handled, counted before the card existed
	s.card.Store(c)
}

// lockSubs locks the session's subscription table for a change (read
// loop); nil (nothing to unlock) before CONNECT.
func (s *Session) lockSubs() *sessionCard {
	c := s.card.Load()
	if c != nil {
		c.subsMu.Lock()
	}
	return c
}

// unlockSubs undoes lockSubs.
func unlockSubs(c *sessionCard) {
	if c != nil {
		c.subsMu.Unlock()
	}
}

// countIn and countOut add a frame to the session's own counts, once it
// is connected.
func (s *Session) countIn() {
	if c := s.card.Load(); c != nil {
		c.framesIn.Add(1)
	}
}

func (s *Session) countOut() {
	if c := s.card.Load(); c != nil {
		c.framesOut.Add(1)
	}
}

// setBlocked records for Info why flow control holds the session.
func (s *Session) setBlocked(r FullReason) {
	if c := s.card.Load(); c != nil {
		c.blocked.Store(uint32(r))
	}
}

// Info is a snapshot of the session, safe from any goroutine: it reads
// what the read loop published at CONNECT, the subscription table under
// the lock the read loop takes to change it, each subscription's
// unacknowledged count under its own lock, and the outbox under its own.
// Before CONNECT only ID and the byte counts are set.
func (s *Session) Info() SessionInfo {
	info := SessionInfo{ID: s.id}
	info.OutboxBytes = s.out.size()
	info.HeldBytes = int(s.budget.held())
	c := s.card.Load()
	if c == nil {
		return info
	}
	info.User, info.VHost, info.Version, info.Connected = c.user, c.vhost, c.version.String(), c.connected
	info.FramesIn, info.FramesOut = c.framesIn.Load(), c.framesOut.Load()
	if r := FullReason(c.blocked.Load()); r != NotFull {
		info.Blocked = r.String()
	}
	c.subsMu.Lock()
	subs := append([]*subscription(nil), s.subTab.list...)
	c.subsMu.Unlock()
	info.Subscriptions = make([]SubscriptionInfo, 0, len(subs))
	for _, sub := range subs {
		si := SubscriptionInfo{ID: sub.id, Destination: sub.dest, Ack: sub.ackMode.String()}
		if sub.durable != nil {
			si.Durable = sub.durable.spec.Name
		}
		sub.mu.Lock()
		si.Unacked = len(sub.unacked)
		sub.mu.Unlock()
		info.Unacked += si.Unacked
		info.Subscriptions = append(info.Subscriptions, si)
	}
	return info
}

// operatorReasonMax bounds the operator's reason in the ERROR frame.
const operatorReasonMax = 200

// CloseByOperator ends the session for an operator: its client gets ERROR
// error-code:closed-by-operator, retryable:true (it may reconnect; to keep
// a user out, remove the user), message "closed by an operator: <reason>"
// (reason cut to 200 bytes, on a character boundary, line breaks made
// spaces so it stays one header in every STOMP version), and the
// connection closes with CloseOperator. Its auto-ack deliveries not yet
// written go back to their queues, and a session with a resume-token is
// not kept for a resume. Any goroutine; a closed session is left as is.
func (s *Session) CloseByOperator(reason string) {
	reason = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, reason)
	if len(reason) > operatorReasonMax {
		cut := operatorReasonMax
		for cut > 0 && !utf8.RuneStart(reason[cut]) {
			cut--
		}
		reason = reason[:cut]
	}
	e := &stompError{code: CodeClosedByOperator, message: "closed by an operator: " + reason,
		detail:    "An operator closed this connection (" + reason + "). You may reconnect.",
		retryable: true, reason: CloseOperator}
	esc := frames.EscapeNone // before CONNECT: the client's version is not known
	if c := s.card.Load(); c != nil {
		esc = frames.EscapingFor(c.version, frames.CmdError)
	}
	ok, unsent := s.out.close(CloseOperator, true, errorFrame(e, nil, esc))
	if ok {
		s.t.Close(CloseOperator)
		s.b.errors.add(e.code)
		s.b.cfg.Logger.Info("session closed by an operator", "session", s.id, "remote", s.remote, "reason", reason)
	}
	putBack(unsent)
	s.t.Poke() // a read loop waiting for bytes ends now
}

// size is the bytes of encoded frames waiting for the writer.
func (o *outbox) size() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.bytes
}

// String is the ack header's value for m.
func (m ackMode) String() string {
	switch m {
	case ackClient:
		return "client"
	case ackClientIndividual:
		return "client-individual"
	}
	return "auto"
}
