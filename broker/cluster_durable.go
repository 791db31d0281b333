package broker

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/stompbox/stompbox/frames"
)

// Durable subscriptions across the nodes of a cluster (docs/cluster.md
// "Durable subscriptions"), when Config.Cluster implements
// ClusterDurables. A durable subscription is registered cluster-wide
// (CreateDurable) and every node learns of it (Broker.ApplyRemoteDurable),
// so every node's space.durables holds every durable subscription of the
// cluster, charged to its owner's quota. Its backlog is a clustered queue
// (durableQueueName) fed by credit like a /queue/; its feed subscription
// is not on the topic but in space.durIndex, which a topic SEND on any
// node matches to store one copy per durable subscription in the cluster
// (PublishQueue), receipted once every copy is stored. Only one
// connection at a time consumes a durable subscription, cluster-wide: the
// node that attaches it must hold it (HoldDurable), and lets it go when
// its consumer leaves (ReleaseDurable). Nothing of it is journaled here.

// ClusterDurables is implemented by a Cluster that keeps durable
// subscriptions cluster-wide; the broker uses it when Config.Cluster
// implements it.
type ClusterDurables interface {
	// CreateDurable registers spec in vhost cluster-wide. It waits for the
	// cluster (bounded by its timeout), as a SUBSCRIBE waits for its
	// journal record. When a durable subscription with spec's key (user,
	// client-id, name) is registered already it returns that one's spec
	// and an error wrapping ErrDurableExists.
	CreateDurable(vhost string, spec DurableSpec) (DurableSpec, error)
	// RemoveDurable unregisters spec in vhost cluster-wide and discards
	// its backlog. It waits for the cluster (bounded).
	RemoveDurable(vhost string, spec DurableSpec) error
	// HoldDurable makes this node the holder of durable subscription
	// spec: its consumer is here. It waits for the cluster (bounded); an
	// error wrapping ErrDurableHeld means another node holds it. Holds of
	// one node nest: each HoldDurable is undone by one ReleaseDurable.
	HoldDurable(vhost string, spec DurableSpec) error
	// ReleaseDurable undoes one HoldDurable. It must not block (it is
	// called under the durable subscription's lock).
	ReleaseDurable(vhost string, spec DurableSpec)
}

// ErrDurableExists is returned (wrapped) by ClusterDurables.CreateDurable
// for a durable subscription registered already.
var ErrDurableExists = errors.New("broker: durable subscription exists")

// ErrDurableHeld is returned (wrapped) by ClusterDurables.HoldDurable when
// another node holds the durable subscription: its SUBSCRIBE gets ERROR
// subscription-in-use.
var ErrDurableHeld = errors.New("broker: durable subscription held by another node")

// clusterDurables returns the cluster when it keeps durable subscriptions.
func (b *Broker) clusterDurables() ClusterDurables {
	cd, _ := b.cfg.Cluster.(ClusterDurables)
	return cd
}

// attachDurableCluster is attachDurable in cluster mode: the durable
// subscription is found (or registered) cluster-wide, held by this node,
// and sub consumes its clustered queue.
func (s *Session) attachDurableCluster(cd ClusterDurables, sub *subscription, key durableKey, inUse func() *stompError) *stompError {
	sp, b := s.space, s.b
	spec := DurableSpec{User: key.user, ClientID: key.clientID, Name: key.name, Topic: sub.pattern}
	sp.mu.RLock()
	d := sp.durableLocked(key)
	sp.mu.RUnlock()
	if d != nil && d.topic != sub.pattern {
		// Re-pointed: the old one and its backlog go, everywhere.
		if err := s.authorizeDurableChange(d); err != nil {
			return err
		}
		if !d.claim() {
			return inUse()
		}
		if err := b.removeClaimedCluster(sp, cd, d); err != nil {
			return err
		}
	}
	if d != nil && d.consumedHere() {
		return inUse()
	}
	if err := cd.HoldDurable(sp.name, spec); err != nil {
		if errors.Is(err, ErrDurableHeld) {
			return inUse()
		}
		return clusterError(fmt.Errorf("%w: %w", ErrClusterUnavailable, err))
	}
	d, err := s.registerDurableCluster(cd, spec, key)
	if err != nil {
		cd.ReleaseDurable(sp.name, spec)
		if err == errDurableInUse {
			return inUse()
		}
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.consumer != nil || d.removed || !d.queue.attach(sub) {
		cd.ReleaseDurable(sp.name, spec)
		return inUse()
	}
	d.consumer = sub
	sub.queue = d.queue
	sub.durable = d
	return nil
}

// errDurableInUse marks a registration that met another one of the same
// key and another topic: the SUBSCRIBE is refused as in use (retryable).
var errDurableInUse = &stompError{code: CodeSubscriptionInUse}

// registerDurableCluster returns the durable subscription of key, made
// (registered cluster-wide, charged to the user) if need be.
func (s *Session) registerDurableCluster(cd ClusterDurables, spec DurableSpec, key durableKey) (*durable, *stompError) {
	sp, b := s.space, s.b
	sp.mu.Lock()
	if d := sp.durableLocked(key); d != nil {
		sp.mu.Unlock()
		if d.topic != spec.Topic {
			return nil, errDurableInUse
		}
		return d, nil
	}
	if len(sp.queues) >= b.cfg.MaxQueues {
		sp.mu.Unlock()
		return nil, b.tooManyQueues()
	}
	quota, serr := s.createDurable()
	sp.mu.Unlock()
	if serr != nil {
		return nil, serr
	}
	existing, err := cd.CreateDurable(sp.name, spec)
	if errors.Is(err, ErrDurableExists) && existing.Topic == spec.Topic {
		err = nil // registered on another node (or earlier): the same one
	}
	sp.mu.Lock()
	defer sp.mu.Unlock()
	d := sp.durableLocked(key)
	if err != nil || d != nil {
		if quota != nil {
			quota.durables-- // not made here: the registry's copy is charged
			sp.dropIfEmptyLocked(quota)
		}
	}
	switch {
	case errors.Is(err, ErrDurableExists):
		return nil, errDurableInUse
	case err != nil:
		return nil, clusterError(fmt.Errorf("%w: %w", ErrClusterUnavailable, err))
	case d != nil && d.topic != spec.Topic:
		return nil, errDurableInUse
	case d != nil:
		return d, nil // the registry's watch made it meanwhile
	}
	d = sp.newDurableLocked(spec, quota)
	_ = sp.durIndex.insert(d.feed, nil)
	return d, nil
}

// consumedHere reports whether a connection of this node consumes d.
func (d *durable) consumedHere() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.consumer != nil
}

// unclaim undoes claim: the removal did not happen.
func (d *durable) unclaim() {
	d.mu.Lock()
	d.removed = false
	d.mu.Unlock()
}

// removeClaimedCluster removes d, claimed by the caller, cluster-wide:
// only while no node consumes it (this node holds it meanwhile). On
// failure d is unclaimed and stays.
func (b *Broker) removeClaimedCluster(sp *space, cd ClusterDurables, d *durable) *stompError {
	if err := cd.HoldDurable(sp.name, d.spec); err != nil {
		d.unclaim()
		if errors.Is(err, ErrDurableHeld) {
			return &stompError{code: CodeSubscriptionInUse, message: "durable subscription in use",
				detail: "Durable subscription " + d.spec.Name + " is consumed on another node.", retryable: true, reason: CloseProtocolError}
		}
		return clusterError(fmt.Errorf("%w: %w", ErrClusterUnavailable, err))
	}
	err := cd.RemoveDurable(sp.name, d.spec)
	cd.ReleaseDurable(sp.name, d.spec)
	if err != nil {
		d.unclaim()
		return clusterError(fmt.Errorf("%w: %w", ErrClusterUnavailable, err))
	}
	sp.removeDurable(d)
	return nil
}

// ApplyRemoteDurable applies what the cluster's registry says of durable
// subscription spec in vhost: it exists (present; made here with its
// empty local queue, charged to its owner, unless known) or no longer
// does (removed here with what this node holds of its backlog). A
// durable subscription known here with another topic was re-pointed: it
// is replaced. Safe from any goroutine; an unknown virtual host or a
// broker whose cluster does not keep durable subscriptions ignores it.
func (b *Broker) ApplyRemoteDurable(vhost string, spec DurableSpec, present bool) {
	sp := b.spaces[vhost]
	if sp == nil || sp.durIndex == nil {
		return
	}
	key := keyOf(spec)
	sp.mu.RLock()
	d := sp.durableLocked(key)
	sp.mu.RUnlock()
	if d != nil && (!present || d.topic != spec.Topic) {
		d.mu.Lock()
		d.removed = true
		d.mu.Unlock()
		sp.removeDurable(d)
	}
	if !present || spec.Topic == "" || isWildcard(spec.Topic) && !validPattern(spec.Topic) {
		return // gone, or nothing a SUBSCRIBE could have registered
	}
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.durableLocked(key) != nil {
		return
	}
	var quota *userQuota
	if !spec.Unowned && spec.User != "" {
		quota = sp.quotaLocked(spec.User)
		quota.durables++
	}
	d = sp.newDurableLocked(spec, quota)
	_ = sp.durIndex.insert(d.feed, nil)
}

// DurableActive says durable subscription spec of vhost was consumed on
// another node just now (its hold was taken or refreshed there): its idle
// time here starts over, so that this node's idle sweep does not remove
// it. Safe from any goroutine.
func (b *Broker) DurableActive(vhost string, spec DurableSpec) {
	sp := b.spaces[vhost]
	if sp == nil {
		return
	}
	sp.mu.RLock()
	d := sp.durableLocked(keyOf(spec))
	sp.mu.RUnlock()
	if d == nil {
		return
	}
	d.mu.Lock()
	if d.consumer == nil {
		d.idleSince = b.cfg.Now()
	}
	d.mu.Unlock()
}

// sendDurableCopies pipelines a topic SEND in cluster mode whose topic
// durable subscriptions match: it goes to the other nodes' subscribers
// now, one copy is stored in each durable subscription's queue in the
// cluster, and once all are stored the local subscribers get it and its
// RECEIPT is queued.
func (s *Session) sendDurableCopies(f *frames.Frame, r route, m *Message, qs []*queue, claim dedupeClaim) *stompError {
	if err := s.publishTopicClustered(r.key, m); err != nil {
		return err
	}
	e := &pipedSend{s: s, msg: m, route: r, cluster: true, size: m.size() + pipedOverhead, claim: claim}
	for _, q := range qs {
		e.copies = append(e.copies, q.name)
	}
	return s.pipeToCluster(f, e)
}

// submitCopies stores what e has not stored yet of a topic SEND in
// cluster mode: its durable copies and its topic's history
// (historyTarget, cluster_history_send.go); e.ClusterDone gets the first
// failure once every one is answered, and e.copies keeps the copies that
// failed, for a retry (e.historyStored says whether the history has it).
func (e *pipedSend) submitCopies() error {
	targets := e.copies
	if e.history && !e.historyStored {
		targets = append([]string{historyTarget}, e.copies...)
	}
	c := &copiesDone{e: e, names: targets, failed: make([]bool, len(targets))}
	c.left.Store(int32(len(targets)) + 1) // +1: until every copy is handed over
	for i, name := range targets {
		err := e.storeCopy(name, copyDone{c, i})
		if err != nil && i == 0 {
			return err // nothing sent
		}
		if err != nil {
			for j := i; j < len(targets); j++ {
				copyDone{c, j}.ClusterDone(err)
			}
			break
		}
	}
	c.finish()
	return nil
}

// copiesDone gathers the outcomes of one pipelined SEND's durable copies.
type copiesDone struct {
	e      *pipedSend
	names  []string
	left   atomic.Int32
	mu     sync.Mutex
	failed []bool // guarded by mu
	err    error  // guarded by mu: the first failure
}

// copyDone is the outcome of copy i.
type copyDone struct {
	c *copiesDone
	i int
}

// ClusterDone implements ClusterDone.
func (d copyDone) ClusterDone(err error) {
	c := d.c
	if errors.Is(err, ErrClusterDuplicate) {
		err = nil
	}
	if err != nil {
		c.mu.Lock()
		c.failed[d.i] = true
		if c.err == nil {
			c.err = err
		}
		c.mu.Unlock()
	}
	c.finish()
}

// finish counts one answer; the last hands the outcome to the SEND.
func (c *copiesDone) finish() {
	if c.left.Add(-1) != 0 {
		return
	}
	c.mu.Lock()
	var retry []string
	stored := true
	for i, f := range c.failed {
		switch {
		case f && c.names[i] == historyTarget:
			stored = false
		case f:
			retry = append(retry, c.names[i])
		}
	}
	err := c.err
	c.mu.Unlock()
	// Read by the read loop once ClusterDone marks e done.
	c.e.copies = retry
	c.e.historyStored = c.e.history && stored
	c.e.ClusterDone(err)
}

// durableCopies returns, in cluster mode, the clustered queues of the
// durable subscriptions topic reaches; nil otherwise.
func (sp *space) durableCopies(topic string) []*queue {
	if sp.durIndex == nil {
		return nil
	}
	// Not durableQueuesFor (the topic table's feeds): those are journaled;
	// these are stored in the cluster.
	exact, wild := sp.durIndex.match(topic)
	qs := exact.appendFeeds(nil)
	for _, set := range wild {
		qs = set.appendFeeds(qs)
	}
	return qs
}
