package broker

import (
	"slices"
	"strings"
)

// A queue in cluster mode (docs/cluster.md): its messages live in the
// cluster, and the local queue holds only what the cluster fed it for its
// local consumers. Each such message carries its Settler, and leaves the
// local queue only by being settled with the cluster, exactly once: Ack
// when consumed, Term when it leaves for good otherwise (expired,
// dead-lettered, dropped), Nak when it goes back for any node to take (a
// NACK below max_redeliveries, a consumer gone, the last consumer gone).
// Settlements made under the queue's lock run once it is released (unlock),
// as journal records do.

// clusterAutoWindow is how many messages the cluster may feed ahead per
// auto-ack consumer, and clusterUnlimitedWindow per client-ack consumer
// without a prefetch-count: enough to keep a consumer busy through a
// fetch round trip, few enough that a node does not hoard what other
// nodes' consumers could take.
const (
	clusterAutoWindow      = 64
	clusterUnlimitedWindow = 1024
	clusterMaxCredit       = 4096
)

// settleOp is how a fed message is settled.
type settleOp uint8

const (
	settleAck settleOp = iota + 1
	settleNak
	settleTerm
)

// pendingSettle is a settlement queued under a queue's lock.
type pendingSettle struct {
	settle Settler
	op     settleOp
}

func (p pendingSettle) run() {
	switch p.op {
	case settleAck:
		p.settle.Ack()
	case settleNak:
		p.settle.Nak()
	case settleTerm:
		p.settle.Term()
	}
}

// clusterQueueName reports whether a queue of this name and kind lives in
// the cluster: a plain /queue/ (dead-letter queues included), and a
// durable subscription's when the cluster keeps those
// (cluster_durable.go), not a temporary queue.
func (b *Broker) clusterQueueName(name string, owner *Session, durable bool) bool {
	if durable {
		return owner == nil && b.clusterDurables() != nil && strings.HasPrefix(name, "/durable/")
	}
	return b.cfg.Cluster != nil && owner == nil && len(name) > len("/queue/") && name[:len("/queue/")] == "/queue/"
}

// settleLocked queues qm's settlement with the cluster, made once mu is
// released; a message that was not fed by the cluster has none, and a
// settled one is not settled again.
func (q *queue) settleLocked(qm *queuedMessage, op settleOp) {
	if qm.settle == nil {
		return
	}
	q.settles = append(q.settles, pendingSettle{settle: qm.settle, op: op})
	qm.settle = nil
}

// settleNow settles qm outside any lock (its only holder has it: a
// writer that took an auto-ack delivery).
func settleNow(qm *queuedMessage, op settleOp) {
	if qm.settle == nil {
		return
	}
	s := qm.settle
	qm.settle = nil
	pendingSettle{settle: s, op: op}.run()
}

// startFeedLocked starts the cluster's feed of a clustered queue that has
// consumers and no feed. It runs on dispatch, not attach: a SUBSCRIBE's
// RECEIPT is queued between the two, and nothing fed may overtake it.
func (q *queue) startFeedLocked() {
	if q.clustered && q.feed == nil && q.servableLocked() {
		q.feedGen++
		q.feed = q.b.cfg.Cluster.ConsumeQueue(q.sp.name, q.name, clusterSink{q: q, gen: q.feedGen})
	}
}

// releaseFedLocked, once a clustered queue has no consumer left that can
// take messages (none, or only parked sessions'), stops its feed and
// gives back what it was fed and still holds ready, so that consumers on
// other nodes get it. A parked session's unacknowledged messages stay
// with it, for its resume.
func (q *queue) releaseFedLocked() {
	if !q.clustered || q.servableLocked() {
		return
	}
	if q.feed != nil {
		q.feed.Stop()
		q.feed = nil
	}
	for q.ready.Len() > 0 {
		qm := q.ready.PopFront()
		q.settleLocked(qm, settleNak)
		q.dropLocked(qm)
	}
}

// servableLocked reports whether a consumer of q can take messages: its
// subscription is open and its session not parked nor closing.
func (q *queue) servableLocked() bool {
	for _, c := range q.consumers {
		c.mu.Lock()
		ok := !c.closed && !c.session.out.closed.Load()
		c.mu.Unlock()
		if ok {
			return true
		}
	}
	return false
}

// appendOnce appends q to qs unless it is there.
func appendOnce(qs []*queue, q *queue) []*queue {
	if slices.Contains(qs, q) {
		return qs
	}
	return append(qs, q)
}

// moreLocked tells the feed the queue may take more: called whenever a
// dispatch left nothing ready.
func (q *queue) moreLocked() {
	if q.feed != nil && q.ready.Len() == 0 {
		q.feed.More()
	}
}

// clusterSink is a clustered queue as one feed sees it: gen tells a
// stopped feed's late offers from the current one's.
type clusterSink struct {
	q   *queue
	gen uint64
}

// Credit implements QueueSink.
func (k clusterSink) Credit() int {
	q := k.q
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.deleted || q.feed == nil || q.feedGen != k.gen {
		return 0
	}
	n := 0
	for _, c := range q.consumers {
		n += c.clusterCredit(q)
	}
	return min(max(n-q.ready.Len(), 0), clusterMaxCredit)
}

// clusterCredit is how many more messages sub, a consumer of q, may be
// fed now: none while its session is parked or closing (it could not take
// them), and for an auto-ack consumer what its window leaves beside the
// fed deliveries still in its outbox, none while the outbox has no room
// for queue messages (the queue is dispatched again, and asks for more,
// once the writer took the backlog).
func (sub *subscription) clusterCredit(q *queue) int {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	switch {
	case sub.closed || sub.pending || sub.session.out.closed.Load():
		return 0
	case sub.ackMode == ackAuto:
		if !sub.session.out.hasQueueRoom(1, q) {
			return 0
		}
		return max(clusterAutoWindow-int(sub.fedOut.Load()), 0)
	case sub.prefetch == 0:
		return max(clusterUnlimitedWindow-len(sub.unacked), 0)
	}
	return max(sub.prefetch-len(sub.unacked), 0)
}

// Offer implements QueueSink.
func (k clusterSink) Offer(m *Message, deliveries int, settle Settler) {
	q := k.q
	q.mu.Lock()
	if q.deleted || q.feed == nil || q.feedGen != k.gen || len(q.consumers) == 0 {
		q.mu.Unlock()
		settle.Nak()
		return
	}
	size := m.size()
	q.b.queuedBytes.Add(int64(size))
	q.seq++
	// dispatch counts the delivery it makes: the cluster's count includes it.
	q.ready.PushBack(&queuedMessage{msg: m, seq: q.seq, deliveries: max(deliveries-1, 0), settle: settle, at: q.b.nowMs()})
	q.enqueued++
	q.count++
	q.bytes += size
	q.dispatchLocked()
	q.unlock()
}

// deadLetterClustered moves fed messages past max_redeliveries to the
// queue's dead-letter queue in the cluster: each leaves the local queue
// now and is settled once the cluster has stored its dead-letter copy
// (Term), or given back for a later try if it could not (Nak).
func (q *queue) deadLetterClustered(dead []*queuedMessage, reason string) {
	for _, qm := range dead {
		q.mu.Lock()
		settle := qm.settle
		qm.settle = nil
		q.dropLocked(qm)
		q.unlock()
		if settle == nil {
			continue
		}
		if q.dlq == "" {
			settle.Term()
			q.b.stats.Dropped.Add(1)
			q.b.cfg.Logger.Warn("message dropped after max redeliveries", "queue", q.name, "message_id", qm.msg.ID)
			continue
		}
		m := q.deadLetterMessage(qm, reason)
		b, name := q.b, q.name
		done := ClusterDoneFunc(func(err error) {
			if err != nil {
				settle.Nak()
				b.stats.DeadLetterFailures.Add(1)
				b.cfg.Logger.Error("dead-letter move refused by the cluster; the message goes back to its queue",
					"queue", name, "message_id", qm.msg.ID, "err", err)
				return
			}
			settle.Term()
			b.stats.DeadLettered.Add(1)
		})
		if err := q.b.cfg.Cluster.PublishQueue(q.sp.name, q.dlq, m, done); err != nil {
			done(err)
		}
	}
}
