package broker

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// The admin API's view of destinations and its queue actions (admin_types.go
// has the types). Every method takes the table lock only to copy pointers
// and each queue's lock only for that queue, so the message path waits at
// most one queue's snapshot.

// Errors of the admin actions, always wrapped with the destination's name.
var (
	// ErrNoSuchDestination: no queue of that name in that virtual host
	// (or no such virtual host). The admin API answers 404.
	ErrNoSuchDestination = errors.New("broker: no such destination")
	// ErrNotAQueue: the destination exists but the action does not apply
	// to it: a durable subscription's or a temporary queue (they belong to
	// a client), a clustered queue (its messages live in the cluster; the
	// broker lists only its local view), a queue that still has consumers
	// or open transactions (DeleteQueue), or a queue that is not a
	// dead-letter queue (MoveDeadLetters). The admin API answers 409.
	ErrNotAQueue = errors.New("broker: not a queue this action applies to")
)

// Destinations appends every virtual host's queues and topics with
// subscribers to dst, unsorted. Topics report Enqueued and Delivered as 0:
// counting them would put a shared counter on every publish.
func (b *Broker) Destinations(dst []DestinationInfo) []DestinationInfo {
	var qs []*queue
	for _, sp := range b.spaces {
		qs = valuesLocked(&sp.mu, sp.queues, qs[:0])
		for _, q := range qs {
			dst = append(dst, q.info())
		}
		dst = sp.topics.appendTopicInfos(dst, sp.name)
	}
	return dst
}

// queueKindNames are the DestinationKinds in queue.kind() order.
var queueKindNames = [...]DestinationKind{KindQueue, KindDurable, KindTemporary, KindDLQ}

// info is q's snapshot, under its lock.
func (q *queue) info() DestinationInfo {
	d := DestinationInfo{VHost: q.sp.name, Name: q.name, Kind: queueKindNames[q.kind()], DLQ: q.dlq}
	q.mu.Lock()
	d.Messages, d.Bytes = q.count, q.bytes
	d.Unacked = q.count - q.ready.Len()
	d.Consumers = len(q.consumers)
	d.Enqueued, d.Delivered = q.enqueued, q.delivered
	if q.ready.Len() > 0 {
		// The front is the oldest ready message: redeliveries go back in
		// front in enqueue order (requeueLocked).
		d.Oldest = time.UnixMilli(q.ready.Front().at)
	}
	q.mu.Unlock()
	return d
}

// appendTopicInfos appends the exact topic names with subscribers, and
// each wildcard pattern with subscribers under its pattern. The read lock
// is held only to walk the map and the trie.
func (sl *sublist) appendTopicInfos(dst []DestinationInfo, vhost string) []DestinationInfo {
	sl.mu.RLock()
	defer sl.mu.RUnlock()
	for name, set := range sl.exact {
		if n := int(set.live.Load()); n > 0 {
			dst = append(dst, DestinationInfo{VHost: vhost, Name: "/topic/" + name, Kind: KindTopic, Consumers: n})
		}
	}
	var walk func(n *trieNode, path string)
	walk = func(n *trieNode, path string) {
		if n.subs != nil {
			if c := int(n.subs.live.Load()); c > 0 {
				dst = append(dst, DestinationInfo{VHost: vhost, Name: "/topic/" + path, Kind: KindTopic, Consumers: c})
			}
		}
		join := func(seg string) string {
			if path == "" {
				return seg
			}
			return path + "." + seg
		}
		for seg, c := range n.literal {
			walk(c, join(seg))
		}
		if n.star != nil {
			walk(n.star, join("*"))
		}
		if n.hash != nil {
			walk(n.hash, join("#"))
		}
	}
	if sl.root != nil {
		walk(sl.root, "")
	}
	return dst
}

// valuesLocked appends m's values to dst under mu's read lock: the table
// is held only to copy it, each entry read after.
func valuesLocked[K comparable, V any](mu *sync.RWMutex, m map[K]V, dst []V) []V {
	mu.RLock()
	defer mu.RUnlock()
	for _, v := range m {
		dst = append(dst, v)
	}
	return dst
}

// Durables appends every virtual host's durable subscriptions to dst.
func (b *Broker) Durables(dst []DurableInfo) []DurableInfo {
	var ds []*durable
	for _, sp := range b.spaces {
		ds = valuesLocked(&sp.mu, sp.durables, ds[:0])
		for _, d := range ds {
			info := DurableInfo{VHost: sp.name, User: d.spec.User, Name: d.spec.Name, Topic: "/topic/" + d.topic, Queue: d.queue.name}
			d.mu.Lock()
			info.Active = d.consumer != nil
			if !info.Active {
				info.LastActive = d.idleSince
			}
			d.mu.Unlock()
			d.queue.mu.Lock()
			info.Messages, info.Bytes = d.queue.count, d.queue.bytes
			d.queue.mu.Unlock()
			dst = append(dst, info)
		}
	}
	return dst
}

// existingQueue finds a queue without making it.
func (b *Broker) existingQueue(vhost, name string) (*queue, error) {
	sp := b.spaces[vhost]
	if sp == nil {
		return nil, fmt.Errorf("%w: virtual host %q", ErrNoSuchDestination, vhost)
	}
	q, _ := sp.queue(name, nil) // no creator: never made
	if q == nil {
		return nil, fmt.Errorf("%w: %s in virtual host %q", ErrNoSuchDestination, name, vhost)
	}
	return q, nil
}

// adminQueue finds the queue an action names, refusing what the actions
// never apply to: durable and temporary queues, and clustered ones.
func (b *Broker) adminQueue(vhost, name string) (*queue, error) {
	q, err := b.existingQueue(vhost, name)
	if err != nil {
		return nil, err
	}
	switch {
	case q.durable:
		return nil, fmt.Errorf("%w: %s is a durable subscription's queue (its client owns it)", ErrNotAQueue, name)
	case q.owner != nil:
		return nil, fmt.Errorf("%w: %s is a temporary queue (its session owns it)", ErrNotAQueue, name)
	case q.clustered:
		return nil, fmt.Errorf("%w: %s lives in the cluster; act on it there", ErrNotAQueue, name)
	}
	return q, nil
}

// PeekQueue returns up to limit of the queue's ready messages, front
// first, with at most preview bytes of each body, without taking them:
// delivery order, delivery counts and the queue's counters are unchanged.
// Messages delivered and not yet acknowledged are not listed (their
// consumers hold them). Durable and temporary queues may be peeked.
func (b *Broker) PeekQueue(vhost, name string, limit, preview int) ([]PeekedMessage, error) {
	q, err := b.existingQueue(vhost, name)
	if err != nil {
		return nil, err
	}
	limit, preview = max(limit, 0), max(preview, 0)
	type seen struct {
		msg        *Message
		deliveries int
		at         int64
	}
	// Only pointers are copied under the lock; Messages are immutable, so
	// the copies are made after it.
	var got []seen
	q.mu.Lock()
	for i := range min(limit, q.ready.Len()) {
		qm := q.ready.At(i)
		got = append(got, seen{qm.msg, qm.deliveries, qm.at})
	}
	q.mu.Unlock()
	out := make([]PeekedMessage, 0, len(got))
	for _, g := range got {
		m := g.msg
		p := PeekedMessage{ID: m.ID, BodySize: len(m.Body), Persistent: m.Persistent,
			Enqueued: time.UnixMilli(g.at), Deliveries: g.deliveries}
		p.Headers = make([][2]string, 0, len(m.Headers)+1)
		p.Headers = append(p.Headers, [2]string{"message-id", m.ID})
		for _, h := range m.Headers {
			p.Headers = append(p.Headers, [2]string{string(h.Key), string(h.Value)})
		}
		p.Body = append([]byte(nil), m.Body[:min(preview, len(m.Body))]...)
		out = append(out, p)
	}
	return out, nil
}

// PurgeQueue removes the queue's ready messages and returns how many.
// Messages delivered and not yet acknowledged stay with their consumers
// (an ACK settles them, a NACK or disconnect brings them back). The
// removals are journaled before it returns, so a restart does not bring
// the messages back; producers blocked on the queue are woken as when it
// drains.
func (b *Broker) PurgeQueue(vhost, name string) (purged int, err error) {
	q, err := b.adminQueue(vhost, name)
	if err != nil {
		return 0, err
	}
	q.mu.Lock()
	recs, purged := q.takeReadyLocked()
	q.unlock()
	if err := b.journalAdminRemoves(recs); err != nil {
		return purged, fmt.Errorf("broker: purge of %s: %d messages removed in memory, but the journal refused the removals "+
			"(they come back after a restart): %w", name, purged, err)
	}
	q.retireIfIdle()
	return purged, nil
}

// takeReadyLocked removes every ready message and returns their removal
// records (none without a journal) and how many it took.
func (q *queue) takeReadyLocked() (recs []JournalRecord, n int) {
	for q.ready.Len() > 0 {
		qm := q.ready.PopFront()
		q.settleLocked(qm, settleAck)
		q.dropLocked(qm)
		recs = q.appendRemoval(recs, qm)
		n++
	}
	return recs, n
}

// journalAdminRemoves journals an operator's removals and waits for them:
// unlike a consumer's ACK (a lost removal means one redelivery), a lost
// purge would bring back every message the operator meant to drop.
func (b *Broker) journalAdminRemoves(recs []JournalRecord) error {
	if len(recs) == 0 || b.cfg.Journal == nil {
		return nil
	}
	return asError(b.journalAppend(recs...))
}

// DeleteQueue removes a queue with its messages and returns how many
// messages it dropped. A queue with consumers or open transactions
// sending to it is refused (ErrNotAQueue, "has consumers"): ending other
// clients' subscriptions is CloseByOperator's job, and a refusal never
// loses a message in flight. A producer sending to it afterwards creates
// it again, as for any queue.
func (b *Broker) DeleteQueue(vhost, name string) (dropped int, err error) {
	q, err := b.adminQueue(vhost, name)
	if err != nil {
		return 0, err
	}
	sp := q.sp
	sp.mu.Lock()
	q.mu.Lock()
	switch {
	case q.deleted || sp.queues[name] != q:
		q.mu.Unlock()
		sp.mu.Unlock()
		return 0, fmt.Errorf("%w: %s in virtual host %q", ErrNoSuchDestination, name, vhost)
	case len(q.consumers) > 0 || q.count > q.ready.Len():
		n := len(q.consumers)
		q.mu.Unlock()
		sp.mu.Unlock()
		return 0, fmt.Errorf("%w: %s has consumers (%d); close them first", ErrNotAQueue, name, n)
	case q.reservedCount > 0:
		q.mu.Unlock()
		sp.mu.Unlock()
		return 0, fmt.Errorf("%w: %s has open transactions sending to it; retry once they end", ErrNotAQueue, name)
	}
	q.deleted = true
	sp.dropQueueLocked(name)
	sp.releaseQueueLocked(q)
	sp.mu.Unlock()
	recs, dropped := q.takeReadyLocked()
	q.unlock()
	if err := b.journalAdminRemoves(recs); err != nil {
		return dropped, fmt.Errorf("broker: delete of %s: removed in memory, but the journal refused the removals "+
			"(its %d messages come back after a restart): %w", name, dropped, err)
	}
	return dropped, nil
}

// isDLQName reports whether name is a dead-letter queue's.
func isDLQName(name string) bool { return strings.HasPrefix(name, "/queue/DLQ.") }
