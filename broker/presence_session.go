package broker

import (
	"strconv"

	"github.com/stompbox/stompbox/frames"
)

// The session side of presence (presence.go): the SUBSCRIBE headers that
// make a member, the /presence/ subscriptions that watch a set, and the
// one function every end of a subscription goes through.

// presenceRequest reads the presence headers of a SUBSCRIBE to kind/name:
// nil without presence:true. presence-id and presence-info are ignored
// without it.
func (s *Session) presenceRequest(f *frames.Frame, kind destKind, name string) (*presenceLink, *stompError) {
	v, ok := f.Header("presence")
	if !ok || string(v) == "false" {
		return nil, nil
	}
	if string(v) != "true" {
		return nil, protocolErr(CodeInvalidHeader, "invalid presence header", "presence must be true or false.")
	}
	if kind != kindTopic || isWildcard(name) {
		return nil, protocolErr(CodeInvalidHeader, "invalid presence header",
			"presence:true needs an exact topic name (/topic/<name>, no wildcard).")
	}
	if _, durable := f.Header("durable-subscription-name"); durable {
		return nil, protocolErr(CodeInvalidHeader, "invalid presence header",
			"presence:true is not available on durable subscriptions: presence follows the connection.")
	}
	l := &presenceLink{topic: name, key: presenceKey{user: s.principal.Name}}
	if id, ok := f.Header("presence-id"); ok {
		if len(id) > s.b.cfg.MaxIDLength {
			return nil, protocolErr(CodeInvalidHeader, "invalid presence-id header",
				"presence-id is longer than "+strconv.Itoa(s.b.cfg.MaxIDLength)+" bytes.")
		}
		l.key.id = string(id)
	}
	if info, ok := f.Header("presence-info"); ok {
		if len(info) > MaxPresenceInfo {
			return nil, protocolErr(CodeInvalidHeader, "invalid presence-info header",
				"presence-info is longer than "+strconv.Itoa(MaxPresenceInfo)+" bytes ("+strconv.Itoa(len(info))+").")
		}
		l.info = string(info)
	}
	return l, nil
}

// joinPresence makes sub, just added to its topic, a member of the topic's
// presence set as l says (nothing when l is nil). When the set or the
// virtual host is full, sub is taken off its topic again and the error
// returned.
func (s *Session) joinPresence(sub *subscription, l *presenceLink) *stompError {
	if l == nil {
		return nil
	}
	// What the member keeps of this subscription is charged to the
	// connection's budget while the subscription lasts, like everything
	// the broker holds because of a connection.
	l.charged = len(l.info) + len(l.key.id)
	var err *stompError
	if !s.budget.charge(l.charged) {
		err = &stompError{code: CodeLimitExceeded, message: "limit exceeded",
			detail: "The presence-info and presence-id of this connection's presence subscriptions exceed its budget of " +
				strconv.FormatInt(s.budget.limit, 10) + " bytes.", reason: CloseLimitExceeded}
	} else {
		ps := &s.space.presence
		ps.mu.Lock()
		var set *presenceSet
		if set, err = ps.setLocked(s.b, l.topic); err == nil {
			if err = ps.joinLocked(s.b, set, l.key, l.info); err != nil {
				ps.dropIfEmptyLocked(set)
			}
		}
		ps.mu.Unlock()
		if err != nil {
			s.budget.release(l.charged)
		}
	}
	if err != nil {
		s.space.removeTopicSub(sub)
		sub.close()
		return err
	}
	sub.presence = l
	return nil
}

// watchPresence is SUBSCRIBE to /presence/<topic>: it needs the subscribe
// right on /topic/<topic>, ack auto, and delivers the snapshot and then
// every join and leave. The RECEIPT, if asked for, comes first; the
// snapshot is taken and the watcher registered under the set's lock, so no
// event falls between them or is delivered twice.
func (s *Session) watchPresence(f *frames.Frame, id, topic string, mode ackMode) *stompError {
	dest := presencePrefix + topic
	if mode != ackAuto {
		return protocolErr(CodeInvalidHeader, "invalid ack header",
			"Presence destinations are delivered with ack auto only: their events are not acknowledged.")
	}
	if topic == "" || isWildcard(topic) || len(dest) > maxDestinationLength {
		return protocolErr(CodeInvalidDestination, "invalid destination",
			"Destination "+strconv.Quote(truncateString(dest, 64))+": a presence destination is /presence/<topic name>, "+
				"one exact topic (no wildcard, at most "+strconv.Itoa(maxDestinationLength)+" bytes).")
	}
	if err := s.authorize(ActionSubscribe, kindTopic, "/topic/"+topic); err != nil {
		return err
	}
	s.nextSubNum++
	sub := &subscription{session: s, id: id, num: s.nextSubNum, dest: dest, ackMode: ackAuto,
		presence: &presenceLink{topic: topic, watch: true}}
	sub.headerFor(s.escaping, id)
	ps := &s.space.presence
	ps.mu.Lock()
	defer ps.mu.Unlock()
	set, err := ps.setLocked(s.b, topic)
	if err != nil {
		return err
	}
	set.watchers[sub] = struct{}{}
	c := s.lockSubs()
	s.subTab.add(sub)
	unlockSubs(c)
	s.receipt(f) // a push into this session's outbox: outbox.mu comes after presenceSpace.mu
	sub.deliverTopic(ps.snapshotLocked(s.b, set))
	return nil
}

// releasePresence ends what sub holds in a presence set: a watcher stops
// watching; a member's subscription is released, and the member's grace
// period starts when it was its last. Every end of a subscription
// (UNSUBSCRIBE, DISCONNECT, the end of the connection or of a parked
// session) comes here through removeSubscription.
func (s *Session) releasePresence(sub *subscription) {
	l := sub.presence
	if l == nil {
		return
	}
	sub.presence = nil
	s.budget.release(l.charged)
	if l.away {
		return // released when its session parked
	}
	ps := &s.space.presence
	ps.mu.Lock()
	defer ps.mu.Unlock()
	set := ps.sets[l.topic]
	if set == nil {
		return
	}
	if l.watch {
		delete(set.watchers, sub)
		ps.dropIfEmptyLocked(set)
		return
	}
	ps.releaseLocked(s.b, set, l.key)
}

// awayFromPresence is parking's hook: the connection of this session
// dropped, so its members are gone as far as presence is concerned and
// their grace periods start now, as if their subscriptions had ended: a
// drop longer than presence.grace is a leave even if the session is
// resumed later (then it joins again). Read loop only, before the session
// can be adopted.
func (s *Session) awayFromPresence() {
	ps := &s.space.presence
	for _, sub := range s.subs {
		l := sub.presence
		if l == nil || l.watch || l.away {
			continue
		}
		ps.mu.Lock()
		if set := ps.sets[l.topic]; set != nil {
			ps.releaseLocked(s.b, set, l.key)
		}
		ps.mu.Unlock()
		l.away = true
	}
}

// backToPresence is adoption's hook: the members of an adopted session
// join again. Inside their grace period that is no event; after it, a
// join. A set that filled up meanwhile keeps the member out (logged): the
// subscription itself lives on.
func (s *Session) backToPresence() {
	ps := &s.space.presence
	for _, sub := range s.subs {
		l := sub.presence
		if l == nil || !l.away {
			continue
		}
		ps.mu.Lock()
		set, err := ps.setLocked(s.b, l.topic)
		if err == nil {
			if err = ps.joinLocked(s.b, set, l.key, l.info); err != nil {
				ps.dropIfEmptyLocked(set)
			}
		}
		ps.mu.Unlock()
		if err != nil {
			s.b.cfg.Logger.Warn("resumed session could not rejoin presence", "session", s.id, "topic", l.topic, "error", err.message)
			sub.presence = nil
			s.budget.release(l.charged)
			continue
		}
		l.away = false
	}
}

// reauthorizePresence checks, after a configuration reload, that a
// /presence/ subscription's user still has the subscribe right on its
// topic. Other subscriptions pass.
func (s *Session) reauthorizePresence(sub *subscription) *stompError {
	if sub.presence == nil || !sub.presence.watch {
		return nil
	}
	if err := s.authorize(ActionSubscribe, kindTopic, "/topic/"+sub.presence.topic); err != nil {
		err.detail = "After a configuration reload: " + err.detail + " The subscription " +
			strconv.Quote(truncateString(sub.id, 64)) + " to " + strconv.Quote(truncateString(sub.dest, 64)) + " is no longer allowed."
		return err
	}
	return nil
}

// presenceSendErr refuses a SEND to a /presence/ destination: its events
// come from the broker only.
func presenceSendErr(dest string) *stompError {
	return &stompError{code: CodeForbidden, message: "forbidden",
		detail: "Destination " + strconv.Quote(truncateString(dest, 64)) +
			" is a presence stream: only the broker sends its events. Join with SUBSCRIBE to the topic and presence:true.",
		reason: ClosePolicy}
}
