package broker

import (
	"strconv"

	"github.com/stompbox/stompbox/frames"
)

// handleSubscribe creates a subscription (STOMP 1.2, "SUBSCRIBE") to a topic
// (exact or wildcard), a queue, this session's temporary queue, or a durable
// subscription (client-id on CONNECT plus durable-subscription-name).
func (s *Session) handleSubscribe(f *frames.Frame) (err *stompError) {
	if s.b.clusterSessions() != nil {
		defer func() {
			// What another node needs to make it again (cluster_session.go).
			id, ok := f.Header("id")
			if !ok || len(id) == 0 {
				id, _ = f.Header("destination") // a STOMP 1.0 subscription's id
			}
			if sub := s.subTab.get(id); err == nil && sub != nil && sub.spec == nil {
				sub.spec = subscribeSpec(f)
			}
		}()
	}
	destination, err := requireHeader(f, "destination")
	if err != nil {
		return err
	}
	dest := string(destination)
	id := dest // STOMP 1.0 subscriptions may omit id
	if v, ok := f.Header("id"); ok && len(v) > 0 {
		id = string(v)
	} else if s.version > frames.V10 {
		return protocolErr(CodeMissingHeader, "missing id header", "SUBSCRIBE requires an id header.")
	}
	if sub := s.subTab.getString(id); sub != nil {
		if s.resubscribed(sub, dest, f) {
			return nil
		}
		return protocolErr(CodeDuplicateSubscription, "duplicate subscription id",
			"Subscription id "+strconv.Quote(truncateString(id, 64))+" is already in use on this connection.")
	}
	if s.subTab.size() >= s.b.cfg.MaxSubscriptions {
		return connLimitErr("this connection holds its limit of " + strconv.Itoa(s.b.cfg.MaxSubscriptions) + " subscriptions")
	}
	ackValue, present := f.Header("ack")
	mode, ok := parseAckMode(ackValue, present)
	if !ok {
		return protocolErr(CodeInvalidHeader, "invalid ack header", "ack must be auto, client or client-individual.")
	}
	prefetch := 0
	if v, ok := f.Header("prefetch-count"); ok {
		n, perr := strconv.Atoi(string(v))
		if perr != nil || n < 0 {
			return protocolErr(CodeInvalidHeader, "invalid prefetch-count header", "prefetch-count must be a non-negative integer.")
		}
		prefetch = n
	}
	if topic, ok := presenceTopic(dest); ok {
		return s.watchPresence(f, id, topic, mode) // presence_session.go
	}
	kind, name, err := parseDestination(dest)
	if err != nil {
		return err
	}
	if err := s.authorize(ActionSubscribe, kind, dest); err != nil {
		return err
	}
	presence, err := s.presenceRequest(f, kind, name)
	if err != nil {
		return err
	}
	s.nextSubNum++
	sub := &subscription{session: s, id: id, num: s.nextSubNum, dest: dest, pattern: name,
		ackMode: mode, prefetch: prefetch, pending: true,
		holding: s.x != nil && s.x.adopting}
	sub.headerFor(s.escaping, id)

	durableName, isDurable := f.Header("durable-subscription-name")
	receipted := false // by subscribeTopic, for a topic with history
	switch {
	case kind == kindTopic && isDurable:
		if err := s.attachDurable(sub, string(durableName)); err != nil {
			return err
		}
	case kind == kindTopic:
		if isWildcard(name) && !validPattern(name) {
			return protocolErr(CodeInvalidDestination, "invalid destination",
				"In topic patterns * and # must each be a whole dot-separated segment.")
		}
		join := func() *stompError { return s.joinPresence(sub, presence) }
		if receipted, err = s.subscribeTopic(sub, f, join); err != nil {
			return err
		}
	case kind == kindQueue:
		if err := s.attachQueue(sub, dest); err != nil {
			return err
		}
	case kind == kindTempQueue:
		q, err := s.tempQueue(s.replyAddress(name))
		if err != nil {
			return err
		}
		q.attach(sub) // a temporary queue lives as long as its session
		sub.queue = q
	default:
		return &stompError{code: CodeForbidden, message: "forbidden",
			detail: "Reply queues can be sent to but not subscribed to; subscribe to your own /temp-queue/.", reason: ClosePolicy}
	}
	c := s.lockSubs()
	s.subTab.add(sub)
	unlockSubs(c)
	// The consumer is attached but not yet served: the RECEIPT goes before
	// any message the subscription yields, so the client knows the
	// subscription is live when it arrives.
	if !receipted {
		s.receipt(f)
	}
	sub.mu.Lock()
	sub.pending = false
	sub.mu.Unlock()
	if sub.queue != nil {
		sub.queue.dispatch()
	}
	return nil
}

// attachQueue makes sub a consumer of the queue dest, looking it up again
// if it was retired (empty, no consumers) between lookup and attach.
func (s *Session) attachQueue(sub *subscription, dest string) *stompError {
	for range 8 {
		q, err := s.space.queue(dest, s.createQueue)
		if err != nil {
			return err
		}
		if q.attach(sub) {
			sub.queue = q
			return nil
		}
	}
	return limitErr("queue " + dest + " is being recreated too often")
}

// handleUnsubscribe ends a subscription; its unacknowledged queue messages
// go back for redelivery. With remove-durable:true a durable subscription is
// deleted with its backlog instead of being kept for the next SUBSCRIBE.
func (s *Session) handleUnsubscribe(f *frames.Frame) *stompError {
	id, ok := f.Header("id")
	if !ok && s.version == frames.V10 {
		id, ok = f.Header("destination")
	}
	if !ok {
		return protocolErr(CodeMissingHeader, "missing id header", "UNSUBSCRIBE requires the id of the subscription.")
	}
	sub := s.subTab.get(id)
	if sub == nil && s.resumed() {
		// A resumed client cannot know which of its frames the dropped
		// connection delivered: an UNSUBSCRIBE of an id it replaced on a
		// connection that then dropped, or one unsubscribed already, ends
		// nothing and is no error (docs/compliance.md, Session recovery).
		s.receipt(f)
		return nil
	}
	if sub == nil {
		return protocolErr(CodeUnknownSubscription, "unknown subscription",
			"No subscription with id "+strconv.Quote(truncateString(string(id), 64))+" on this connection.")
	}
	d := sub.durable
	if v, ok := f.Header("remove-durable"); !ok || string(v) != "true" {
		d = nil
	} else if d != nil {
		if err := s.authorizeDurableChange(d); err != nil {
			return err // the user may no longer read what it would discard
		}
	}
	s.removeSubscription(sub)
	if d != nil && d.claim() { // not if another connection attached this instant
		if cd := s.b.clusterDurables(); cd != nil && d.queue.clustered {
			if err := s.b.removeClaimedCluster(s.space, cd, d); err != nil {
				return err
			}
		} else {
			s.space.removeDurable(d)
		}
	}
	s.receipt(f)
	return nil
}

// removeSubscription detaches sub from its destination; what it left
// unacknowledged is requeued (queues) or dropped (topics).
func (s *Session) removeSubscription(sub *subscription) {
	c := s.lockSubs()
	s.subTab.remove(sub)
	unlockSubs(c)
	unacked := sub.close()
	s.releasePresence(sub) // a member's grace period starts, a watcher stops
	switch {
	case sub.queue != nil:
		sub.queue.removeConsumer(sub, unacked)
		if sub.durable != nil {
			sub.durable.detach(sub)
		}
	default:
		s.space.removeTopicSub(sub)
	}
}
