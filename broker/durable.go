package broker

import (
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// durableKey names a durable subscription within its virtual host: its
// owner (the authenticated user), the CONNECT client-id and the SUBSCRIBE
// durable-subscription-name. Another user with the same client-id and
// name names a different durable subscription. unowned is set only for
// durable subscriptions recovered from a journal without owners, which no
// session's key can match.
type durableKey struct {
	user, clientID, name string
	unowned              bool
}

func keyOf(spec DurableSpec) durableKey {
	if spec.Unowned {
		return durableKey{clientID: spec.ClientID, name: spec.Name, unowned: true}
	}
	return durableKey{user: spec.User, clientID: spec.ClientID, name: spec.Name}
}

// durableQueueName is the queue (and journal) name of a durable
// subscription. Every part is escaped, so user "a/b" with client-id "c"
// and user "a" with client-id "b/c" never share a queue or journal
// records; the unowned form (written before owners existed) has one part
// fewer, so it cannot meet an owned one either.
func durableQueueName(spec DurableSpec) string {
	if spec.Unowned {
		return "/durable/" + url.PathEscape(spec.ClientID) + "/" + url.PathEscape(spec.Name)
	}
	return "/durable/" + url.PathEscape(spec.User) + "/" + url.PathEscape(spec.ClientID) + "/" + url.PathEscape(spec.Name)
}

// DurableQueueName is the queue of durable subscription spec: in cluster
// mode the cluster stores its backlog under this name (PublishQueue,
// ConsumeQueue).
func DurableQueueName(spec DurableSpec) string { return durableQueueName(spec) }

// durable is a topic subscription that keeps collecting while its client is
// away: a feed subscription on the topic fills a queue, and the client's
// SUBSCRIBE consumes that queue.
type durable struct {
	key   durableKey
	spec  DurableSpec   // immutable: as journaled
	topic string        // immutable: the pattern subscribed to
	queue *queue        // immutable
	feed  *subscription // immutable
	quota *userQuota    // immutable: what it counts against (nil: unowned)

	mu        sync.Mutex
	consumer  *subscription // guarded by mu: the attached session's subscription
	idleSince time.Time     // guarded by mu: when it last lost (or never had) a consumer
	removed   bool          // guarded by mu: claimed for removal; nobody may attach
}

// durableOwner is whom a durable subscription of p belongs to: its user,
// or "" for anonymous clients, a name no authenticated user has (users
// files and tokens require one), so a user who happens to be called
// "anonymous" gets nothing anonymous clients created.
func durableOwner(p *Principal) string {
	if p.Anonymous {
		return ""
	}
	return p.Name
}

// attachDurable finds or creates the durable subscription of this
// connection's user and makes sub its consumer. A durable re-subscribed
// with another destination starts afresh.
func (s *Session) attachDurable(sub *subscription, name string) *stompError {
	if s.clientID() == "" {
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
	key := durableKey{user: durableOwner(s.principal), clientID: s.clientID(), name: name}
	inUse := func() *stompError {
		return &stompError{code: CodeSubscriptionInUse, message: "durable subscription in use",
			detail: "Durable subscription " + strconv.Quote(name) + " of client-id " + strconv.Quote(s.clientID()) +
				" is consumed by another connection.", retryable: true, reason: CloseProtocolError}
	}
	if cd := b.clusterDurables(); cd != nil {
		return s.attachDurableCluster(cd, sub, key, inUse) // cluster_durable.go
	}
	sp.mu.RLock()
	d := sp.durableLocked(key)
	sp.mu.RUnlock()
	if d != nil && d.topic != sub.pattern {
		// Re-subscribing with another destination starts afresh: the old
		// backlog is deleted, which needs the right to read it still, and
		// never under a connection that is consuming it.
		if err := s.authorizeDurableChange(d); err != nil {
			return err
		}
		if !d.claim() {
			return inUse()
		}
		sp.removeDurable(d)
	}
	sp.mu.Lock()
	d = sp.durableLocked(key)
	if d != nil && d.topic != sub.pattern {
		sp.mu.Unlock()
		return inUse() // re-created meanwhile by another connection of the same user
	}
	created := d == nil
	if created {
		if len(sp.queues) >= b.cfg.MaxQueues {
			sp.mu.Unlock()
			return b.tooManyQueues()
		}
		quota, err := s.createDurable()
		if err != nil {
			sp.mu.Unlock()
			return err
		}
		d = sp.newDurableLocked(DurableSpec{User: key.user, ClientID: s.clientID(), Name: name, Topic: sub.pattern}, quota)
		// Held by sub from the start: until its create record is on disk
		// no other connection may attach to it, nor the idle sweep claim
		// it (a delete journaled before the create would resurrect it).
		// Its feed is not on the topic yet (below).
		d.mu.Lock()
		d.consumer = sub
		d.mu.Unlock()
	}
	sp.mu.Unlock()
	if created && b.cfg.Journal != nil {
		// The durable subscription must survive a restart before SUBSCRIBE
		// is acknowledged, or persistent messages sent to it could have
		// nowhere to go after recovery.
		if err := b.journalAppend(JournalRecord{Op: OpDurableCreate, Queue: d.queue.journalName(), Durable: d.spec}); err != nil {
			d.detach(sub)
			if d.claim() {
				sp.removeDurable(d)
			}
			return err
		}
	}
	if created {
		// Only now may publishers see it: a persistent SEND that matches
		// the feed journals its enqueue after the create's Append has
		// returned, so with a higher sequence number, and replay (in
		// sequence order) never meets an enqueue before its durable. A
		// SEND racing with the SUBSCRIBE, before its RECEIPT, may miss it.
		sp.addTopicSub(d.feed, nil)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.consumer != nil && d.consumer != sub || d.removed {
		return inUse()
	}
	if !d.queue.attach(sub) {
		d.consumer = nil
		return inUse() // removed this instant; retrying finds a fresh one
	}
	d.consumer = sub
	sub.queue = d.queue
	sub.durable = d
	return nil
}

// authorizeDurableChange asks whether this connection's user may still
// read the topic the durable subscription d is on: re-pointing or removing
// it discards what it collected from there.
func (s *Session) authorizeDurableChange(d *durable) *stompError {
	dest := "/topic/" + d.topic
	if !s.b.cfg.Authorizer.Allow(s.principal, s.space.name, ActionSubscribe, dest) {
		return forbidden(s.principal, ActionSubscribe, dest)
	}
	return nil
}

// claim marks d for removal, so that nobody attaches to it any more,
// unless a connection consumes it or it is already being removed.
func (d *durable) claim() bool { return d.claimIdle(time.Time{}, 0) }

// claimIdle is claim that with idleFor > 0 also requires d to have had no
// consumer since now-idleFor.
func (d *durable) claimIdle(now time.Time, idleFor time.Duration) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.consumer != nil || d.removed || idleFor > 0 && now.Sub(d.idleSince) < idleFor {
		return false
	}
	d.removed = true
	return true
}

func (sp *space) durableLocked(key durableKey) *durable { return sp.durables[key] }

// createDurableLocked creates a durable subscription without a consumer:
// its queue, and the feed that fills it from the topic (recovery). sp.mu is
// held; the feed is registered on the topic directly (addTopicSub would
// lock sp.mu). quota is what it counts against, already charged.
func (sp *space) createDurableLocked(spec DurableSpec, quota *userQuota) *durable {
	d := sp.newDurableLocked(spec, quota)
	sp.addTopicSubLocked(d.feed)
	return d
}

// newDurableLocked is createDurableLocked without registering the feed on
// the topic: a new durable's creator registers it once the create record
// is journaled.
func (sp *space) newDurableLocked(spec DurableSpec, quota *userQuota) *durable {
	qname := durableQueueName(spec)
	q := newQueue(sp, qname, nil, true)
	q.dlq = "/queue/DLQ." + strings.NewReplacer("*", "_", "#", "_").Replace(spec.Topic)
	d := &durable{key: keyOf(spec), spec: spec, topic: spec.Topic, queue: q, quota: quota, idleSince: sp.b.cfg.Now()}
	d.feed = &subscription{id: qname, dest: "/topic/" + spec.Topic, pattern: spec.Topic, feed: q}
	sp.setQueueLocked(qname, q)
	sp.durables[d.key] = d
	return d
}

// detach frees the durable for the next SUBSCRIBE; its idle time starts.
func (d *durable) detach(sub *subscription) {
	d.mu.Lock()
	if d.consumer == sub {
		d.consumer = nil
		d.idleSince = d.queue.b.cfg.Now()
		if d.queue.clustered {
			d.queue.b.clusterDurables().ReleaseDurable(d.queue.sp.name, d.spec) // this node's hold ends
		}
	}
	d.mu.Unlock()
}

// removeDurable deletes a durable subscription, claimed by the caller,
// with its backlog.
func (sp *space) removeDurable(d *durable) {
	b := sp.b
	q := d.queue
	if q.clustered {
		sp.durIndex.remove(d.feed)
	} else {
		sp.removeTopicSub(d.feed)
	}
	sp.mu.Lock()
	if sp.durables[d.key] == d {
		delete(sp.durables, d.key)
		sp.dropQueueLocked(d.queue.name)
		sp.releaseDurableLocked(d)
	}
	sp.mu.Unlock()
	q.mu.Lock()
	q.deleted = true
	for q.ready.Len() > 0 {
		q.forgetLocked(q.ready.PopFront())
	}
	if q.feed != nil {
		q.feed.Stop()
		q.feed = nil
	}
	q.unlock()
	if b.cfg.Journal != nil && !q.clustered {
		if err := b.journalAppend(JournalRecord{Op: OpDurableDelete, Queue: q.journalName(), Durable: d.spec}); err != nil {
			b.cfg.Logger.Error("journal: durable subscription delete not recorded; it comes back after a restart",
				"user", d.spec.User, "client_id", d.spec.ClientID, "name", d.spec.Name)
		}
	}
}

// SweepIdleDurables removes, with their backlogs, the durable
// subscriptions that no connection has consumed for Config.DurableIdleTTL
// up to now, and returns how many it removed. Without a TTL it does
// nothing. Package server calls it periodically; it is safe to call from
// any goroutine.
func (b *Broker) SweepIdleDurables(now time.Time) int {
	ttl := b.cfg.DurableIdleTTL
	if ttl <= 0 {
		return 0
	}
	removed := 0
	for _, sp := range b.spaces {
		var idle []*durable
		sp.mu.RLock()
		for _, d := range sp.durables {
			idle = append(idle, d)
		}
		sp.mu.RUnlock()
		for _, d := range idle {
			if !d.claimIdle(now, ttl) {
				continue
			}
			if cd := b.clusterDurables(); cd != nil && d.queue.clustered {
				// Only if no node consumes it: removed everywhere.
				if err := b.removeClaimedCluster(sp, cd, d); err != nil {
					continue
				}
			} else {
				sp.removeDurable(d)
			}
			removed++
			b.cfg.Logger.Info("durable subscription removed after its idle TTL", "virtual_host", sp.name,
				"user", d.spec.User, "client_id", d.spec.ClientID, "name", d.spec.Name, "ttl", ttl)
		}
	}
	return removed
}
