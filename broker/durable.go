package broker

import (
	"net/url"
	"strconv"
	"strings"
	"sync"
)

// durableKey names a durable subscription: the CONNECT client-id and the
// SUBSCRIBE durable-subscription-name.
type durableKey struct{ clientID, name string }

// durable is a topic subscription that keeps collecting while its client is
// away: a feed subscription on the topic fills a queue, and the client's
// SUBSCRIBE consumes that queue.
type durable struct {
	key   durableKey
	spec  DurableSpec   // immutable: as journaled
	topic string        // immutable: the pattern subscribed to
	queue *queue        // immutable
	feed  *subscription // immutable

	mu       sync.Mutex
	consumer *subscription // guarded by mu: the attached session's subscription
}

// attachDurable finds or creates the durable subscription and makes sub its
// consumer. A durable re-subscribed with another destination starts afresh.
func (s *Session) attachDurable(sub *subscription, name string) *stompError {
	if s.clientID == "" {
		return protocolErr(CodeMissingHeader, "missing client-id",
			"A durable subscription needs a client-id header on CONNECT to be found again.")
	}
	if name == "" {
		return protocolErr(CodeMissingHeader, "missing durable-subscription-name", "durable-subscription-name must not be empty.")
	}
	if isWildcard(sub.pattern) && !validPattern(sub.pattern) {
		return protocolErr(CodeInvalidDestination, "invalid destination",
			"In topic patterns * and # must each be a whole dot-separated segment.")
	}
	sp, b := s.space, s.b
	key := durableKey{clientID: s.clientID, name: name}
	inUse := func(d *durable) *stompError {
		return &stompError{code: CodeSubscriptionInUse, message: "durable subscription in use",
			detail: "Durable subscription " + strconv.Quote(name) + " of client-id " + strconv.Quote(s.clientID) +
				" is consumed by another connection.", retryable: true, reason: CloseProtocolError}
	}
	sp.mu.Lock()
	d := sp.durableLocked(key)
	if d != nil && d.topic != sub.pattern {
		// Re-subscribing with another destination starts afresh, but never
		// under a connection that is consuming the old one.
		if d.attached() {
			sp.mu.Unlock()
			return inUse(d)
		}
		sp.mu.Unlock()
		sp.removeDurable(d)
		sp.mu.Lock()
		d = sp.durableLocked(key)
	}
	created := d == nil
	if created {
		if len(sp.queues) >= b.cfg.MaxQueues {
			sp.mu.Unlock()
			return b.tooManyQueues()
		}
		if err := s.countCreation(); err != nil {
			sp.mu.Unlock()
			return err
		}
		d = sp.createDurableLocked(DurableSpec{ClientID: s.clientID, Name: name, Topic: sub.pattern})
	}
	sp.mu.Unlock()
	if created && b.cfg.Journal != nil {
		// The durable subscription must survive a restart before SUBSCRIBE
		// is acknowledged, or persistent messages sent to it could have
		// nowhere to go after recovery.
		if err := b.journalAppend(JournalRecord{Op: OpDurableCreate, Queue: d.queue.journalName(), Durable: d.spec}); err != nil {
			sp.removeDurable(d)
			return err
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.consumer != nil {
		return inUse(d)
	}
	if !d.queue.attach(sub) {
		return inUse(d) // removed by its owner this instant; retrying finds a fresh one
	}
	d.consumer = sub
	sub.queue = d.queue
	sub.durable = d
	return nil
}

// attached reports whether a connection consumes the durable subscription.
func (d *durable) attached() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.consumer != nil
}

func (sp *space) durableLocked(key durableKey) *durable { return sp.durables[key] }

// createDurableLocked creates a durable subscription without a consumer:
// its queue, and the feed that fills it from the topic. b.mu is held; the
// feed is registered on the topic directly (addTopicSub would lock sp.mu).
func (sp *space) createDurableLocked(spec DurableSpec) *durable {
	// Escaped, so client-id "a/b" with name "c" and client-id "a" with name
	// "b/c" do not share a queue (or journal records).
	qname := "/durable/" + url.PathEscape(spec.ClientID) + "/" + url.PathEscape(spec.Name)
	q := newQueue(sp, qname, nil, true)
	q.dlq = "/queue/DLQ." + strings.NewReplacer("*", "_", "#", "_").Replace(spec.Topic)
	d := &durable{key: durableKey{clientID: spec.ClientID, name: spec.Name}, spec: spec, topic: spec.Topic, queue: q}
	d.feed = &subscription{id: qname, dest: "/topic/" + spec.Topic, pattern: spec.Topic, feed: q}
	sp.queues[qname] = q
	sp.durables[d.key] = d
	sp.addTopicSubLocked(d.feed)
	return d
}

// detach frees the durable for the next SUBSCRIBE.
func (d *durable) detach(sub *subscription) {
	d.mu.Lock()
	if d.consumer == sub {
		d.consumer = nil
	}
	d.mu.Unlock()
}

// removeDurable deletes a durable subscription and its backlog.
func (sp *space) removeDurable(d *durable) {
	b := sp.b
	sp.removeTopicSub(d.feed)
	sp.mu.Lock()
	if sp.durables[d.key] == d {
		delete(sp.durables, d.key)
		delete(sp.queues, d.queue.name)
	}
	sp.mu.Unlock()
	q := d.queue
	q.mu.Lock()
	q.deleted = true
	for q.ready.Len() > 0 {
		q.forgetLocked(q.ready.PopFront())
	}
	q.unlock()
	if b.cfg.Journal != nil {
		if err := b.journalAppend(JournalRecord{Op: OpDurableDelete, Queue: q.journalName(), Durable: d.spec}); err != nil {
			b.cfg.Logger.Error("journal: durable subscription delete not recorded; it comes back after a restart",
				"client_id", d.spec.ClientID, "name", d.spec.Name)
		}
	}
}
