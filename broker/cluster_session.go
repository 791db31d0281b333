package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/stompbox/stompbox/frames"
)

// Session resume across the nodes of a cluster (docs/cluster.md "Session
// resume"), when Config.Cluster implements ClusterSessions. A
// resume-token names the node that issued it (<token>.<node>). A CONNECT
// on another node presenting it asks that node for the session
// (FetchSession); that node claims it as a local resume would, hands over
// what another node needs to make it again (HandOffSession: its
// SUBSCRIBE headers, the topic deliveries it kept while parked and the
// unacknowledged ones the client may have lost) and releases it: its
// unacknowledged queue messages go back to the cluster, its durable
// subscriptions and presence are let go. The new node subscribes again,
// delivers what was handed over, and answers resumed:true.

// ClusterSessions is implemented by a Cluster that lets a session parked
// on one node resume on another.
type ClusterSessions interface {
	// SessionNode names this node in the resume-tokens it issues: 1 to 64
	// characters of [A-Za-z0-9_-], unique among the nodes and the same
	// for this process's lifetime.
	SessionNode() string
	// FetchSession asks node for the session req names: that node's
	// Broker.HandOffSession hands it over and forgets it. It waits,
	// bounded by ctx. An error wrapping ErrSessionUnknown means node has
	// no such session for this client (or there is no such node); any
	// other error means node could not be asked or did not answer.
	FetchSession(ctx context.Context, node string, req SessionRequest) (*SessionState, error)
}

// SessionRequest is a CONNECT on another node presenting a resume-token.
type SessionRequest struct {
	Token   string // the resume-token as presented
	User    string // the user the connection authenticated as
	VHost   string // its virtual host
	Version string // its STOMP version ("1.2")
}

// SessionState is what a node hands over of a parked session.
type SessionState struct {
	// ClientID is the session's client-id (CONNECT), if any.
	ClientID string
	// NextAck is the last ack id the session issued: an ACK or NACK of an
	// ack id up to it, after the resume, is a no-op (as after a resume on
	// one node).
	NextAck uint64
	// Subscriptions are the SUBSCRIBE headers of its subscriptions, oldest
	// first.
	Subscriptions [][]frames.Header
	// Deliveries are the topic messages to deliver, in order: first the
	// unacknowledged ones the client may have lost (Count > 1), then those
	// that arrived while it was away.
	Deliveries []HandedDelivery
}

// HandedDelivery is one topic message a handed-over session owes its
// client.
type HandedDelivery struct {
	Subscription string   // the subscription's id
	Message      *Message // shared, never modified
	Count        int      // its delivery count: more than 1 is redelivered:true
}

// ErrSessionUnknown is returned (wrapped) when no node has a session a
// resume-token names for the client presenting it.
var ErrSessionUnknown = errors.New("broker: no such session to resume")

// specHeaders are the SUBSCRIBE headers a subscription is made again from
// on another node.
var specHeaders = []string{"id", "destination", "ack", "prefetch-count", "durable-subscription-name",
	"presence", "presence-id", "presence-info"}

// clusterSessions returns the cluster when it lets sessions move, and
// session recovery is on.
func (b *Broker) clusterSessions() ClusterSessions {
	if !b.resume.enabled() {
		return nil
	}
	cs, _ := b.cfg.Cluster.(ClusterSessions)
	return cs
}

// subscribeSpec copies what of f another node needs to subscribe again.
func subscribeSpec(f *frames.Frame) []frames.Header {
	var spec []frames.Header
	for _, k := range specHeaders {
		if v, ok := f.Header(k); ok {
			spec = append(spec, frames.Header{Key: []byte(k), Value: append([]byte(nil), v...)})
		}
	}
	return spec
}

// splitResumeToken splits a presented token into this node's token and
// the node that issued it ("" for a token without a node: a single
// node's).
func splitResumeToken(token []byte) (local []byte, node string) {
	i := strings.LastIndexByte(string(token), '.')
	if i < 0 {
		return token, ""
	}
	return token[:i], string(token[i+1:])
}

// HandOffSession is called by the cluster on the node that issued a
// resume-token, for a CONNECT on another node presenting it: the session
// is claimed as a local resume would claim it (a connected one is taken
// over), its state returned, and the session released here. An error
// wrapping ErrSessionUnknown means there is none this client may take.
func (b *Broker) HandOffSession(ctx context.Context, req SessionRequest) (*SessionState, error) {
	cs := b.clusterSessions()
	if cs == nil {
		return nil, fmt.Errorf("%w: session recovery is off", ErrSessionUnknown)
	}
	local, node := splitResumeToken([]byte(req.Token))
	version, ok := frames.NegotiateVersion([]byte(req.Version), true)
	if node != cs.SessionNode() || !ok || version.String() != req.Version {
		return nil, ErrSessionUnknown
	}
	old, result := b.resume.claim(ctx, local, req.User, req.VHost, version)
	if old == nil {
		b.resume.results[result].Add(1)
		return nil, fmt.Errorf("%w (%s)", ErrSessionUnknown, resumeResultNames[result])
	}
	state, ok := old.export()
	if !ok {
		b.resume.notAdopted(old) // it overflowed meanwhile
		return nil, fmt.Errorf("%w (overflow)", ErrSessionUnknown)
	}
	b.resume.released[parkedMoved].Add(1)
	old.releaseParked()
	b.cfg.Logger.Debug("session handed over to another node", "session", old.id, "subscriptions", len(state.Subscriptions),
		"deliveries", len(state.Deliveries))
	return state, nil
}

// export takes what another node needs of the claimed parked session s:
// with every subscription locked, as adopt does, its kept topic
// deliveries and its unacknowledged topic deliveries not among them. It
// reports false when s overflowed meanwhile.
func (s *Session) export() (*SessionState, bool) {
	subs := make([]*subscription, 0, s.subTab.size())
	for _, sub := range s.subs {
		if sub.spec != nil { // always in cluster mode; its deliveries would have nowhere to go
			subs = append(subs, sub)
		}
	}
	slices.SortFunc(subs, func(a, b *subscription) int { return int(a.num) - int(b.num) })
	st := &SessionState{ClientID: s.clientID()}
	for _, sub := range subs {
		sub.mu.Lock()
	}
	defer func() {
		for _, sub := range subs {
			sub.mu.Unlock()
		}
	}()
	o := &s.out
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.park == nil {
		return nil, false
	}
	for _, sub := range subs {
		spec := sub.spec
		if hs := sub.hist; hs != nil && hs.lastHist != nil && sub.queue == nil && !isWildcard(sub.pattern) {
			// The new node goes on after the newest offset this one
			// delivered: its mirror replays what followed, or skips what
			// it has not reached yet, so nothing is lost or doubled.
			m := hs.lastHist
			off := m.histEpoch + "-" + strconv.FormatUint(m.histSeq, 10)
			spec = append(slices.Clip(spec), frames.Header{Key: []byte("resume-after"), Value: []byte(off)})
		}
		st.Subscriptions = append(st.Subscriptions, spec)
	}
	// A presence watcher's events are not handed over: the new node sends
	// a fresh snapshot.
	handed := func(sub *subscription) bool { return sub.presence == nil || !sub.presence.watch }
	for _, e := range s.lostDeliveries(subs, o.park.kept) {
		if e.qm == nil && handed(e.sub) { // a queue's goes back to the cluster when s is released
			st.Deliveries = append(st.Deliveries, HandedDelivery{Subscription: e.sub.id, Message: e.msg, Count: e.deliveries})
		}
	}
	for _, e := range o.park.kept {
		if handed(e.sub) {
			st.Deliveries = append(st.Deliveries, HandedDelivery{Subscription: e.sub.id, Message: e.msg, Count: max(e.deliveries, 1)})
		}
	}
	st.NextAck = s.nextAck.Load()
	return st, true
}

// fetchSession asks the node that issued token for its session; nil when
// it has none to give (counted, as a local resume that finds none is).
// Read loop of the connecting session.
func (s *Session) fetchSession(ctx context.Context, cs ClusterSessions, token []byte, node, user, vhost string, version frames.Version) *SessionState {
	st, err := cs.FetchSession(ctx, node, SessionRequest{Token: string(token), User: user, VHost: vhost, Version: version.String()})
	if err != nil {
		s.b.resume.results[resumeUnknown].Add(1)
		level := s.b.cfg.Logger.Debug
		if !errors.Is(err, ErrSessionUnknown) {
			level = s.b.cfg.Logger.Warn
		}
		level("session not resumed from another node", "session", s.id, "node", node, "err", err)
		return nil
	}
	return st
}

// mayAdoptState is mayAdopt for a session handed over by another node.
func (s *Session) mayAdoptState(st *SessionState) bool {
	for _, spec := range st.Subscriptions {
		f := frames.Frame{Command: frames.CmdSubscribe, Headers: spec}
		d, _ := f.Header("destination")
		dest := string(d)
		if topic, ok := presenceTopic(dest); ok {
			if s.authorize(ActionSubscribe, kindTopic, "/topic/"+topic) != nil {
				return false
			}
			continue
		}
		kind, _, err := parseDestination(dest)
		if err != nil {
			return false
		}
		if kind != kindTempQueue && s.authorize(ActionSubscribe, kind, dest) != nil {
			return false
		}
	}
	return true
}

// adoptState makes s, which has just queued its CONNECTED (resumed:true),
// the session st describes: its subscriptions made again (a temporary
// queue starts empty: its messages stayed on the other node), each topic
// subscription holding what it gets meanwhile (a history topic's replay
// after its last offset included) until what was handed over for it is
// queued first. A subscription that cannot be made again ends the
// session with its ERROR. Read loop only.
func (s *Session) adoptState(st *SessionState) *stompError {
	if s.clientID() == "" && st.ClientID != "" {
		s.extra().clientID = st.ClientID
	}
	s.nextAck.Store(max(s.nextAck.Load(), st.NextAck))
	s.extra().ackMark = st.NextAck
	var made []*subscription
	s.extra().adopting = true
	for _, spec := range st.Subscriptions {
		f := &frames.Frame{Command: frames.CmdSubscribe, Headers: spec}
		err := s.handleSubscribe(f)
		if err != nil {
			s.x.adopting = false
			for _, sub := range made {
				sub.releaseHeld()
			}
			return err
		}
		id, ok := f.Header("id")
		if !ok || len(id) == 0 {
			id, _ = f.Header("destination")
		}
		if sub := s.subTab.get(id); sub != nil {
			made = append(made, sub)
		}
	}
	s.x.adopting = false
	s.x.resumed = true
	s.x.subMark = s.nextSubNum
	s.b.resume.results[resumeResumed].Add(1)
	// What was handed over goes first, in its order (the lost ones, then
	// what arrived while the client was away), then what each
	// subscription held meanwhile.
	for _, d := range st.Deliveries {
		sub := s.subTab.getString(d.Subscription)
		if sub == nil || sub.queue != nil {
			s.b.stats.Dropped.Add(1) // not a topic subscription here: cannot be delivered
			continue
		}
		if sub.pushHanded(d) && d.Count > 1 {
			s.b.stats.Redelivered.Add(1)
		}
	}
	for _, sub := range made {
		sub.releaseHeld()
	}
	s.t.Wake()
	return nil
}
