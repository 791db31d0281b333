package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/stompbox/stompbox/broker"
)

// Session resume across nodes (docs/cluster.md "Session resume"): the
// router implements broker.ClusterSessions. Each node answers on its own
// core NATS subject, <prefix>.s.<SessionNode()>, subscribed from the start
// without a queue group. A node asked for a session (FetchSession) sends
// the encoded broker.SessionRequest there with a reply inbox of its own;
// the issuing node's broker hands the session over (HandOffSession), its
// durable subscriptions' holder keys are deleted, and the encoded
// broker.SessionState goes back to the inbox in chunks that each fit
// NATS's max payload (a parked session's outbox may hold megabytes).
// Every answer message carries sessionKindHeader; a state's chunks carry
// sessionChunkHeader, "i/n", in order (core NATS keeps one publisher's
// order to one subscriber), and the last chunk of each window of
// handoffWindow bytes a reply subject: the responder sends on once the
// requester has answered there. A node that is gone has no subscription on
// its subject: NATS answers "no responders" at once and the resume fails
// fast.

const (
	sessionClass       = "s"
	sessionKindHeader  = "Stompbox-Session" // kindState, kindUnknown or kindError
	sessionChunkHeader = "Stompbox-Chunk"   // "i/n", 1 <= i <= n
	kindState          = "state"
	kindUnknown        = "unknown"
	kindError          = "error" // the body says why

	// maxSessionBytes bounds an encoded session state, on both sides:
	// the responder refuses to send more, the requester to collect more.
	maxSessionBytes = 256 << 20
	// maxSessionChunks bounds the chunk count an answer may announce.
	maxSessionChunks = 1 << 16
	// chunkHeadroom is left of NATS's max payload for the headers.
	chunkHeadroom = 1024
	// maxHandoffs bounds the handovers this node serves at once; past it
	// a request is answered busy (an error: the client is not resumed).
	maxHandoffs = 64
	// handoffTimeout bounds one handover on the issuing node: the broker's
	// claim may wait for a connected session to be taken over.
	handoffTimeout = 4 * time.Second
	// sessionWaitHeader, on a request, is how long the requester waits
	// for the answer, in milliseconds: the issuing node claims the
	// session only within the first part of it, so that the answer can
	// still arrive in time (a session claimed and handed to a requester
	// that gave up is lost).
	sessionWaitHeader = "Stompbox-Wait"
	// maxSessionNodeName bounds the readable part of SessionNode.
	maxSessionNodeName = 40
	// handoffWindow is how many bytes of a state are in flight at most.
	handoffWindow = 16 << 20
	// maxErrorText bounds the text of an error answer.
	maxErrorText = 512
)

// Values of the direction and result labels.
const (
	directionIn   = "in"  // this node asked another for a session
	directionOut  = "out" // another node asked this one
	resultResumed = "resumed"
	resultUnknown = "unknown"
	resultError   = "error"
)

// sessionsState is the router's side of session resume.
type sessionsState struct {
	// node (immutable once started) is SessionNode.
	node string
	// mu guards sub and closed: a request is started (r.wg.Add) only
	// while the responder is open, so close's wait covers every one.
	mu     sync.Mutex
	sub    *nats.Subscription
	closed bool
	sem    chan struct{} // a slot per handover being served
	met    *prometheus.CounterVec
	// window is how many bytes of a state are sent before the responder
	// waits for the requester to have read them (handoffWindow; tests
	// make it smaller).
	window atomic.Int64
}

func (s *sessionsState) init(reg prometheus.Registerer, nodeName, instance string) {
	s.node = sessionNodeName(nodeName, instance)
	s.sem = make(chan struct{}, maxHandoffs)
	s.window.Store(handoffWindow)
	s.met = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stompbox_cluster_session_handoffs_total",
		Help: "Session handovers between nodes, by direction (in: resumed here from another node, out: handed to another node) and result (resumed, unknown, error)."},
		[]string{"direction", "result"})
	for _, d := range []string{directionIn, directionOut} {
		for _, res := range []string{resultResumed, resultUnknown, resultError} {
			s.met.WithLabelValues(d, res)
		}
	}
	if reg != nil {
		reg.MustRegister(s.met)
	}
}

// sessionNodeName is the node's name in resume-tokens: its configured
// name made of token characters and shortened, then this process's
// random instance id, so that a restarted process (whose parked sessions
// died with the old one) is never asked for the old one's sessions.
func sessionNodeName(nodeName, instance string) string {
	b := make([]byte, 0, maxSessionNodeName+1+len(instance))
	for i := 0; i < len(nodeName) && len(b) < maxSessionNodeName; i++ {
		c := nodeName[i]
		if !tokenChar(c) {
			c = '_'
		}
		b = append(b, c)
	}
	if len(b) > 0 {
		b = append(b, '-')
	}
	return string(append(b, instance...))
}

// tokenChar reports whether c may appear in a SessionNode.
func tokenChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// validSessionNode reports whether node may be a SessionNode: 1 to 64
// token characters (so also one plain subject token).
func validSessionNode(node string) bool {
	return len(node) <= 64 && plainSegment(node)
}

// sessionSubject is the subject node answers session requests on.
func sessionSubject(prefix, node string) string {
	return prefix + "." + sessionClass + "." + node
}

// startSessions subscribes the responder. nats.go subscribes it again
// after every reconnect by itself.
func (r *router) startSessions() error {
	s := &r.sessions
	sub, err := r.nc.Subscribe(sessionSubject(r.cfg.Prefix, s.node), r.onSessionRequest)
	if err != nil {
		return fmt.Errorf("cluster: session responder: %w", err)
	}
	s.mu.Lock()
	s.sub = sub
	s.mu.Unlock()
	return nil
}

// stopSessions unsubscribes the responder; the requests it started are
// waited for with the router's other goroutines (r.wg).
func (r *router) stopSessions() {
	s := &r.sessions
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.sub != nil {
		_ = s.sub.Unsubscribe()
		s.sub = nil
	}
}

// SessionNode implements broker.ClusterSessions.
func (r *router) SessionNode() string { return r.sessions.node }

// onSessionRequest runs on the subscription's dispatch goroutine: it only
// hands the request to a goroutine of its own (or answers busy at once).
func (r *router) onSessionRequest(msg *nats.Msg) {
	if msg.Reply == "" {
		return // nobody to answer
	}
	s := &r.sessions
	select {
	case s.sem <- struct{}{}:
	default:
		s.met.WithLabelValues(directionOut, resultError).Inc()
		r.answerError(msg.Reply, "busy: too many session handovers at once")
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.sem
		r.answerError(msg.Reply, "node closing")
		return
	}
	r.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer r.wg.Done()
		defer func() { <-s.sem }()
		result := r.serveHandoff(msg)
		s.met.WithLabelValues(directionOut, result).Inc()
	}()
}

// serveHandoff answers one request and returns the result label.
func (r *router) serveHandoff(msg *nats.Msg) string {
	req, err := decodeSessionRequest(msg.Data)
	if err != nil {
		r.answerError(msg.Reply, err.Error())
		return resultError
	}
	b := r.brk.Load()
	if b == nil {
		r.answerError(msg.Reply, "node not serving yet")
		return resultError
	}
	total, claim := handoffBudget(msg.Header.Get(sessionWaitHeader))
	if claim <= 0 {
		r.answerError(msg.Reply, "no time left to hand the session over")
		return resultError
	}
	ctx, cancel := context.WithTimeout(r.ctx, total)
	defer cancel()
	claimCtx, cancelClaim := context.WithTimeout(ctx, claim)
	defer cancelClaim()
	st, err := b.HandOffSession(claimCtx, req)
	if errors.Is(err, broker.ErrSessionUnknown) {
		_ = r.answer(msg.Reply, kindUnknown, nil) // lost: the requester times out, same outcome
		return resultUnknown
	}
	if err != nil {
		r.log.Warn("session not handed over", "error", err)
		r.answerError(msg.Reply, err.Error())
		return resultError
	}
	// The session's durable subscriptions were released here; the new
	// node holds them again as soon as it has the answer, so their holder
	// keys must be gone first.
	r.flushReleases(ctx)
	payload := encodeSessionState(st)
	if len(payload) > maxSessionBytes {
		r.log.Warn("session too large to hand over; it is lost", "bytes", len(payload))
		r.answerError(msg.Reply, "session too large to hand over")
		return resultError
	}
	chunk := int(r.nc.MaxPayload()) - chunkHeadroom
	if chunk < chunkHeadroom {
		chunk = chunkHeadroom
	}
	n := (len(payload) + chunk - 1) / chunk
	if n > maxSessionChunks { // only with a NATS max payload of a few KiB
		r.log.Warn("session needs too many chunks to hand over; it is lost", "bytes", len(payload), "chunks", n)
		r.answerError(msg.Reply, "session too large for NATS's max payload")
		return resultError
	}
	if err := r.sendChunks(ctx, msg.Reply, payload, chunk, n); err != nil {
		r.log.Warn("session handover not delivered; it is lost", "error", err)
		return resultError
	}
	r.log.Debug("session handed over", "subscriptions", len(st.Subscriptions), "deliveries", len(st.Deliveries),
		"bytes", len(payload), "chunks", n)
	return resultResumed
}

// handoffBudget is how long a handover may take in all (total) and how
// long of it the broker may spend claiming the session (claim), for a
// requester that waits wait milliseconds (empty: not said, the default).
// The rest is left for the answer to travel.
func handoffBudget(wait string) (total, claim time.Duration) {
	total = handoffTimeout
	if ms, err := strconv.ParseInt(wait, 10, 64); err == nil {
		total = min(total, time.Duration(max(ms, 0))*time.Millisecond)
	}
	return total, total - total/4
}

// sendChunks sends payload to reply in n chunks of chunk bytes. Past a
// window of bytes in flight it waits for the requester to have read them
// (the window's last chunk carries a reply subject the requester answers
// on): NATS disconnects a client that falls too far behind (its
// max_pending, 64 MiB by default), and a slow requester must not cost
// its node the connection.
func (r *router) sendChunks(ctx context.Context, reply string, payload []byte, chunk, n int) error {
	perWindow := max(int(r.sessions.window.Load())/chunk, 1)
	var flow *nats.Subscription
	if n > perWindow {
		var err error
		if flow, err = r.nc.SubscribeSync(r.nc.NewInbox()); err != nil {
			return fmt.Errorf("cluster: session flow inbox: %w", err)
		}
		defer func() { _ = flow.Unsubscribe() }()
	}
	for i := range n {
		m := &nats.Msg{Subject: reply, Data: payload[i*chunk : min((i+1)*chunk, len(payload))], Header: nats.Header{
			sessionKindHeader: []string{kindState}, sessionChunkHeader: []string{strconv.Itoa(i+1) + "/" + strconv.Itoa(n)}}}
		wait := flow != nil && (i+1)%perWindow == 0 && i+1 < n
		if wait {
			m.Reply = flow.Subject
		}
		if err := r.nc.PublishMsg(m); err != nil {
			return fmt.Errorf("cluster: session chunk %d of %d: %w", i+1, n, err)
		}
		if wait {
			if _, err := flow.NextMsgWithContext(ctx); err != nil {
				return fmt.Errorf("cluster: session chunk %d of %d not read: %w", i+1, n, err)
			}
		}
	}
	return nil
}

// answer publishes one answer message (not a state) to reply.
func (r *router) answer(reply, kind string, data []byte) error {
	h := nats.Header{sessionKindHeader: []string{kind}}
	if err := r.nc.PublishMsg(&nats.Msg{Subject: reply, Header: h, Data: data}); err != nil {
		return fmt.Errorf("cluster: session answer: %w", err)
	}
	return nil
}

// answerError answers reply with an error saying why (shortened).
func (r *router) answerError(reply, why string) {
	if len(why) > maxErrorText {
		why = why[:maxErrorText]
	}
	if err := r.answer(reply, kindError, []byte(why)); err != nil {
		r.log.Debug("session error answer not sent", "error", err)
	}
}

// FetchSession implements broker.ClusterSessions.
func (r *router) FetchSession(ctx context.Context, node string, req broker.SessionRequest) (*broker.SessionState, error) {
	st, err := r.fetchSession(ctx, node, req)
	result := resultResumed
	switch {
	case errors.Is(err, broker.ErrSessionUnknown):
		result = resultUnknown
	case err != nil:
		result = resultError
	}
	r.sessions.met.WithLabelValues(directionIn, result).Inc()
	return st, err
}

func (r *router) fetchSession(ctx context.Context, node string, req broker.SessionRequest) (*broker.SessionState, error) {
	if !validSessionNode(node) {
		return nil, fmt.Errorf("cluster: not a node name: %w", broker.ErrSessionUnknown)
	}
	if r.closed() {
		return nil, errRouterClosed
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(r.ctx, cancel)() // the router closing ends the wait too
	inbox := r.nc.NewInbox()
	sub, err := r.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, unavailable("session inbox", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	// A window of the answer may be waiting here before it is read (the
	// whole answer, were the responder's window larger).
	if err := sub.SetPendingLimits(-1, maxSessionBytes+maxSessionChunks*chunkHeadroom); err != nil {
		return nil, fmt.Errorf("cluster: session inbox: %w", err)
	}
	request := &nats.Msg{Subject: sessionSubject(r.cfg.Prefix, node), Reply: inbox, Data: encodeSessionRequest(req)}
	if deadline, ok := ctx.Deadline(); ok {
		request.Header = nats.Header{sessionWaitHeader: []string{strconv.FormatInt(time.Until(deadline).Milliseconds(), 10)}}
	}
	if err := r.nc.PublishMsg(request); err != nil {
		return nil, unavailable("session request", err)
	}
	var payload []byte
	for want, total := 1, 0; ; want++ {
		msg, err := sub.NextMsgWithContext(ctx)
		if errors.Is(err, nats.ErrNoResponders) {
			return nil, fmt.Errorf("cluster: node %s is gone: %w", node, broker.ErrSessionUnknown)
		}
		if err != nil {
			return nil, fmt.Errorf("cluster: session from node %s: %w", node, err)
		}
		switch kind := msg.Header.Get(sessionKindHeader); kind {
		case kindUnknown:
			return nil, fmt.Errorf("cluster: node %s: %w", node, broker.ErrSessionUnknown)
		case kindError:
			return nil, fmt.Errorf("cluster: node %s could not hand the session over: %.*s", node, maxErrorText, msg.Data)
		case kindState:
		default:
			return nil, fmt.Errorf("cluster: node %s answered %q", node, kind)
		}
		i, n, ok := parseChunk(msg.Header.Get(sessionChunkHeader))
		if !ok || i != want || (total != 0 && n != total) {
			return nil, fmt.Errorf("cluster: node %s: chunk %q out of order", node, msg.Header.Get(sessionChunkHeader))
		}
		total = n
		if len(payload)+len(msg.Data) > maxSessionBytes {
			return nil, fmt.Errorf("cluster: node %s: session larger than %d bytes", node, maxSessionBytes)
		}
		if payload == nil && n == 1 {
			payload = msg.Data // nats.go gave the message its own copy
		} else {
			payload = append(payload, msg.Data...)
		}
		if i < n {
			if msg.Reply != "" { // the responder waits for this window to be read
				if err := r.nc.Publish(msg.Reply, nil); err != nil {
					return nil, fmt.Errorf("cluster: session from node %s: %w", node, err)
				}
			}
			continue
		}
		st, err := decodeSessionState(payload)
		if err != nil {
			return nil, fmt.Errorf("cluster: session from node %s: %w", node, err)
		}
		return st, nil
	}
}

// parseChunk parses "i/n" with 1 <= i <= n <= maxSessionChunks.
func parseChunk(v string) (i, n int, ok bool) {
	a, b, found := strings.Cut(v, "/")
	if !found {
		return 0, 0, false
	}
	i, err1 := strconv.Atoi(a)
	n, err2 := strconv.Atoi(b)
	if err1 != nil || err2 != nil || i < 1 || i > n || n > maxSessionChunks {
		return 0, 0, false
	}
	return i, n, true
}

var _ broker.ClusterSessions = (*router)(nil)
