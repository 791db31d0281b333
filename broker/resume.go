package broker

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stompbox/stompbox/frames"
)

// Session recovery (docs/compliance.md, "Session recovery"). CONNECTED
// carries a resume-token; when the connection drops (the peer went, or
// went silent), the session is parked instead of released: its
// subscriptions stay, topic deliveries go on into its outbox (bounded by
// its outbox and byte budget as usual), its unacknowledged messages stay
// its own. A new connection whose CONNECT presents the token within
// Config.ResumeGrace adopts the parked session's state (resume_adopt.go):
// the driver never learns about it, and the parked Session's old driver
// never touches it again. The grace timers are time.AfterFunc timers owned
// by the broker's resume table and stopped by ReleaseParked.

// DefaultResumeGrace is how long a dropped session stays resumable when
// Config.ResumeGrace is zero.
const DefaultResumeGrace = 2 * time.Minute

// DefaultMaxParkedSessions is Config.MaxParkedSessions when zero.
const DefaultMaxParkedSessions = 10_000

// DefaultMaxParkedPerIP is Config.MaxParkedPerIP when zero.
const DefaultMaxParkedPerIP = 100

// resumeTokenBytes is a token's size: 8 bytes name its table entry, the
// other 16 (128 random bits) are its secret, compared in constant time.
const resumeTokenBytes = 24

// resumeTokenLen is the length of a token's text (unpadded base64url).
var resumeTokenLen = base64.RawURLEncoding.EncodedLen(resumeTokenBytes)

// The results of a CONNECT that presented a resume-token, the values of
// the result label of stompbox_session_resumes_total.
const (
	resumeResumed  = iota // the session was adopted
	resumeUnknown         // no such token, expired, malformed, or already used
	resumeRefused         // another user, virtual host or STOMP version
	resumeBusy            // another connection is taking it over this instant
	resumeOverflow        // it overflowed its outbox or budget while parked
	resumeResultCount
)

var resumeResultNames = [resumeResultCount]string{
	resumeResumed: "resumed", resumeUnknown: "unknown", resumeRefused: "refused",
	resumeBusy: "busy", resumeOverflow: "overflow",
}

// Why a parked session was released without being resumed, the values
// of the reason label of stompbox_sessions_parked_released_total.
const (
	parkedGrace    = iota // its grace passed
	parkedOverflow        // its outbox or budget overflowed
	parkedShutdown        // the server shut down
	parkedRefused         // a CONNECT with another STOMP version presented its token
	parkedFull            // not parked at all: MaxParkedSessions were parked already
	parkedReplaced        // its client connected afresh with the same client-id
	parkedPerIP           // its address parked more than MaxParkedPerIP: the oldest goes
	parkedMoved           // handed over to another node of the cluster, where it resumed
	parkedReleaseCount
)

var parkedReleaseNames = [parkedReleaseCount]string{
	parkedGrace: "grace", parkedOverflow: "overflow", parkedShutdown: "shutdown", parkedRefused: "refused",
	parkedFull: "full", parkedReplaced: "replaced", parkedPerIP: "per-ip", parkedMoved: "moved",
}

// resumeTable maps the tokens of connected and parked sessions to their
// entries. mu is a leaf but for outbox.mu, which park takes under it.
type resumeTable struct {
	grace     time.Duration // immutable: <= 0 disables session recovery
	maxParked int64         // immutable: the most sessions parked at once
	maxPerIP  int           // immutable: the most parked at once per client address

	mu     sync.Mutex
	byID   map[uint64]*resumeEntry // guarded by mu
	closed bool                    // guarded by mu: ReleaseParked ran; nothing parks any more
	// The parked entries by client address (oldest first) and by
	// virtual host, user and client-id (guarded by mu; parkedIndex).
	byIP     map[string][]*resumeEntry
	byClient map[string][]*resumeEntry

	parked   atomic.Int64 // sessions parked now
	results  [resumeResultCount]atomic.Uint64
	released [parkedReleaseCount]atomic.Uint64
}

// resumeEntry is one token's state. Every field is guarded by the
// table's mu; whoever deletes the entry from the map owns its session.
type resumeEntry struct {
	id     uint64
	secret [16]byte
	user   string
	vhost  string
	live   *Session     // the connected session the token was issued to; nil once parked
	parked *Session     // the session waiting for a resume
	timer  *time.Timer  // the grace timer of a parked session
	claim  *resumeClaim // a takeover waiting for live to park
	// ip and client are its keys in byIP and byClient while parked.
	ip, client string
	// The small fields last, together: every connected session with a
	// token has an entry (128 B rather than 144).
	version frames.Version
	// overflow says the parked session overflowed: its timer was reset
	// to release it now.
	overflow bool
	// evicted says its address parked too many: its timer was reset to
	// release it now.
	evicted bool
}

// resumeClaim is a CONNECT taking over a session that is still connected
// (a half-open connection the server has not noticed): the old
// connection is closed, and its read loop hands the session over when it
// parks it.
type resumeClaim struct {
	ready     chan struct{} // closed by park (or when the session cannot be handed over)
	s         *Session      // the parked session, set before ready is closed; nil: none
	abandoned bool          // the claimer gave up waiting: park releases the session itself
}

func (t *resumeTable) enabled() bool { return t.grace > 0 }

// issue registers s (connected, read loop) under a new token and returns
// the token's text.
func (t *resumeTable) issue(s *Session) string {
	var raw [resumeTokenBytes]byte
	e := &resumeEntry{user: s.principal.Name, vhost: s.space.name, version: s.version, live: s}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byID == nil {
		t.byID = make(map[uint64]*resumeEntry)
	}
	for {
		_, _ = rand.Read(raw[:]) // crypto/rand never fails on supported platforms
		e.id = binary.LittleEndian.Uint64(raw[:8])
		if t.byID[e.id] == nil {
			break
		}
	}
	copy(e.secret[:], raw[8:])
	t.byID[e.id] = e
	s.resume.entry.Store(e)
	return base64.RawURLEncoding.EncodeToString(raw[:])
}

// lookupLocked parses a token and returns its entry if the secret matches.
func (t *resumeTable) lookupLocked(token []byte) *resumeEntry {
	var raw [resumeTokenBytes]byte
	if len(token) != resumeTokenLen {
		return nil
	}
	if n, err := base64.RawURLEncoding.Decode(raw[:], token); err != nil || n != resumeTokenBytes {
		return nil
	}
	e := t.byID[binary.LittleEndian.Uint64(raw[:8])]
	if e == nil || subtle.ConstantTimeCompare(e.secret[:], raw[8:]) != 1 {
		return nil
	}
	return e
}

// claim finds the session a CONNECT's token names and takes it for the
// caller, who then owns it (adopts or releases it). A session still
// connected is taken over: its connection is closed and claim waits (at
// most until ctx ends) for its read loop to park it. It returns nil and
// the result to count when there is nothing to adopt.
func (t *resumeTable) claim(ctx context.Context, token []byte, user, vhost string, version frames.Version) (*Session, int) {
	t.mu.Lock()
	e := t.lookupLocked(token)
	switch {
	case e == nil:
		t.mu.Unlock()
		return nil, resumeUnknown
	case e.user != user || e.vhost != vhost:
		t.mu.Unlock()
		return nil, resumeRefused // the token stays its owner's
	case e.claim != nil:
		t.mu.Unlock()
		return nil, resumeBusy
	case e.parked != nil:
		delete(t.byID, e.id)
		e.timer.Stop() // if it is firing, it finds the entry gone
		t.parked.Add(-1)
		t.unindexLocked(e)
		s, overflow := e.parked, e.overflow
		t.mu.Unlock()
		if overflow {
			t.released[parkedOverflow].Add(1)
			s.releaseParked()
			return nil, resumeOverflow
		}
		if e.version != version {
			// Subscription headers were escaped for the old version.
			t.released[parkedRefused].Add(1)
			s.releaseParked()
			return nil, resumeRefused
		}
		return s, resumeResumed
	}
	if e.version != version {
		t.mu.Unlock()
		return nil, resumeRefused
	}
	c := &resumeClaim{ready: make(chan struct{})}
	e.claim = c
	live := e.live
	t.mu.Unlock()
	live.takeOver()
	select {
	case <-c.ready:
	case <-ctx.Done():
		t.mu.Lock()
		select {
		case <-c.ready: // handed over meanwhile
		default:
			c.abandoned = true
		}
		t.mu.Unlock()
	}
	if c.abandoned || c.s == nil {
		return nil, resumeUnknown
	}
	return c.s, resumeResumed
}

// park is called by Release (the read loop of s) for a session with a
// token. resumable says the session may be parked. It reports whether
// the table took s (parked it or handed it to a takeover): then Release
// must leave its resources alone.
func (t *resumeTable) park(e *resumeEntry, s *Session, resumable bool) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byID[e.id] != e {
		return false // ReleaseParked dropped it
	}
	c := e.claim
	if !resumable || t.closed || c != nil && c.abandoned {
		delete(t.byID, e.id)
		if c != nil && !c.abandoned {
			close(c.ready) // nothing to hand over
		}
		return false
	}
	if c != nil {
		delete(t.byID, e.id)
		c.s = s
		close(c.ready)
		return true
	}
	if t.parked.Load() >= t.maxParked {
		delete(t.byID, e.id)
		t.released[parkedFull].Add(1)
		return false
	}
	e.live, e.parked = nil, s
	e.timer = time.AfterFunc(t.grace, func() { t.expire(e, parkedGrace) })
	t.parked.Add(1)
	t.indexLocked(e, s)
	if !s.out.isParking() {
		e.overflow = true // it overflowed between the drop and now
		e.timer.Reset(0)
	}
	return true
}

// overflowed makes the grace timer of parked session s fire now: it
// overflowed its outbox or budget and is no longer resumable. Any
// goroutine (a publisher).
func (t *resumeTable) overflowed(s *Session) {
	e := s.resume.entry.Load()
	if e == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byID[e.id] == e && e.parked == s && !e.overflow {
		e.overflow = true
		e.timer.Reset(0)
	} // otherwise park, a claim or ReleaseParked sees it is not parking any more
}

// expire releases e's parked session if it is still parked (a timer's
// goroutine).
func (t *resumeTable) expire(e *resumeEntry, why int) {
	t.mu.Lock()
	if t.byID[e.id] != e || e.parked == nil {
		t.mu.Unlock()
		return
	}
	delete(t.byID, e.id)
	t.parked.Add(-1)
	t.unindexLocked(e)
	s := e.parked
	switch {
	case e.overflow:
		why = parkedOverflow
	case e.evicted:
		why = parkedPerIP
	}
	t.mu.Unlock()
	t.released[why].Add(1)
	s.releaseParked()
}

// ReleaseParked releases every parked session and stops parking new ones:
// the server calls it when it shuts down, so parked sessions give back
// their queue messages and durable subscriptions (and their timers stop)
// before the journal closes. Safe from any goroutine.
func (b *Broker) ReleaseParked() {
	t := &b.resume
	t.mu.Lock()
	t.closed = true
	var parked []*Session
	for id, e := range t.byID {
		if e.parked != nil {
			e.timer.Stop()
			parked = append(parked, e.parked)
			delete(t.byID, id)
			t.unindexLocked(e)
		}
	}
	t.parked.Add(-int64(len(parked)))
	t.mu.Unlock()
	for _, s := range parked {
		t.released[parkedShutdown].Add(1)
		s.releaseParked()
	}
}

// releaseClient releases the parked sessions of user on virtual host
// vhost that CONNECTed with client-id clientID: a client that connects
// afresh under its client-id (no resume-token, or one that could not be
// used) has started over, and its parked session must not hold on to its
// durable subscriptions ("subscription-in-use") until the grace passes.
// Read loop of the connecting session.
func (t *resumeTable) releaseClient(vhost, user, clientID string) {
	if clientID == "" || t.parked.Load() == 0 {
		return
	}
	t.mu.Lock()
	var gone []*Session
	for _, e := range slices.Clone(t.byClient[clientKey(vhost, user, clientID)]) {
		e.timer.Stop()
		delete(t.byID, e.id)
		t.unindexLocked(e)
		gone = append(gone, e.parked)
	}
	t.parked.Add(-int64(len(gone)))
	t.mu.Unlock()
	for _, p := range gone {
		t.released[parkedReplaced].Add(1)
		p.releaseParked()
	}
}

// clientKey is a parked session's key in byClient.
func clientKey(vhost, user, clientID string) string {
	return vhost + "\x00" + user + "\x00" + clientID
}

// remoteHost is the address part of a session's remote address
// ("host:port" or "[v6]:port"), for the per-address bound.
func remoteHost(remote string) string {
	i := strings.LastIndexByte(remote, ':')
	if i < 0 || strings.Count(remote, ":") > 1 && !strings.HasPrefix(remote, "[") {
		return remote // no port, or a bare IPv6 address
	}
	return strings.TrimSuffix(strings.TrimPrefix(remote[:i], "["), "]")
}

// indexLocked records e, just parked with s, by address and client-id.
// An address past maxPerIP has its oldest parked session released now
// (its timer fires at once): the bound stays without waiting here.
func (t *resumeTable) indexLocked(e *resumeEntry, s *Session) {
	if t.byIP == nil {
		t.byIP, t.byClient = make(map[string][]*resumeEntry), make(map[string][]*resumeEntry)
	}
	e.ip = remoteHost(s.remote)
	t.byIP[e.ip] = append(t.byIP[e.ip], e)
	if s.clientID() != "" {
		e.client = clientKey(e.vhost, e.user, s.clientID())
		t.byClient[e.client] = append(t.byClient[e.client], e)
	}
	if t.maxPerIP <= 0 {
		return
	}
	live := 0
	for _, o := range t.byIP[e.ip] {
		if !o.evicted && !o.overflow {
			live++
		}
	}
	for _, o := range t.byIP[e.ip] {
		if live <= t.maxPerIP {
			break
		}
		if !o.evicted && !o.overflow {
			o.evicted = true
			o.timer.Reset(0)
			live--
		}
	}
}

// unindexLocked forgets e in byIP and byClient.
func (t *resumeTable) unindexLocked(e *resumeEntry) {
	drop := func(m map[string][]*resumeEntry, key string) {
		list := slices.DeleteFunc(m[key], func(o *resumeEntry) bool { return o == e })
		if len(list) == 0 {
			delete(m, key)
		} else {
			m[key] = list
		}
	}
	drop(t.byIP, e.ip)
	if e.client != "" {
		drop(t.byClient, e.client)
	}
}

// ParkedSessions returns how many sessions wait for a resume now.
func (b *Broker) ParkedSessions() int { return int(b.resume.parked.Load()) }
