package cluster

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/stompbox/stompbox/broker"
)

// Topic interest reaches NATS through one goroutine (syncTopics); so does
// reply-queue interest (router_replies.go), which shares the table.
//
// TopicInterest is called under the broker's topic-table lock, so it only
// updates the table below (a mutex held for a few map operations) and
// marks the subjects it changed; syncTopics then makes the subscriptions
// match the table. nc.Subscribe and Unsubscribe take the connection's lock
// and may write to its socket, so they are not called under the broker's
// lock. The marks coalesce: a pattern that comes and goes before
// syncTopics looks costs nothing, and syncTopics only ever applies a
// subject's latest state, so the order of changes cannot be lost.
//
// Each subject's set of patterns is copy-on-write: the message handler
// reads a snapshot without a lock (it runs on the subscription's goroutine
// and calls into the broker, which takes its own locks).

// Subscriptions get generous pending limits: a burst from other nodes must
// queue rather than be dropped; what nats.go still drops as a slow consumer
// is counted (stompbox_cluster_topic_dropped_total).
const (
	topicPendingMsgs  = 1 << 20
	topicPendingBytes = 256 << 20
	// topicRetry is how soon a failed subscribe is tried again, and how
	// often dropped-message counts are collected.
	topicRetry = time.Second
)

// topicSub is one subject this node wants (or had) a subscription to.
type topicSub struct {
	vhost   string
	subject string
	base    string // topicBase of vhost: what the topic name follows
	reply   bool   // a reply token's subject (router_replies.go), not a topic's
	// patterns maps each pattern of this subject to its count of
	// interest calls (on minus off); replaced, never modified, under
	// topicTable.mu; read by the message handler without a lock.
	patterns atomic.Pointer[map[string]int]

	// sub is written by the syncTopics goroutine (and close, after it
	// ended) under topicTable.mu, so others may look at it under the lock.
	sub     *nats.Subscription
	dropped int // sub.Dropped() already counted; syncTopics only
}

// topicTable is the node's topic interest.
type topicTable struct {
	mu    sync.Mutex
	subs  map[string]*topicSub   // by subject; guarded by mu
	dirty map[*topicSub]struct{} // changed since syncTopics looked; guarded by mu
	kick  chan struct{}          // cap 1: dirty is not empty
}

func (t *topicTable) init() {
	t.subs = make(map[string]*topicSub)
	t.dirty = make(map[*topicSub]struct{})
	t.kick = make(chan struct{}, 1)
}

// TopicInterest implements broker.Cluster: it never blocks.
func (r *router) TopicInterest(vhost, pattern string, on bool) {
	r.interest(vhost, patternSubjects(r.cfg.Prefix, vhost, pattern), pattern, on, false)
}

// interest counts key (a topic pattern, or a reply token) in or out of
// each subject and marks the subjects for syncTopics.
func (r *router) interest(vhost string, subjects []string, key string, on, reply bool) {
	t := &r.topics
	t.mu.Lock()
	for _, subj := range subjects {
		ts := t.subs[subj]
		if ts == nil {
			if !on {
				continue
			}
			ts = &topicSub{vhost: vhost, subject: subj, reply: reply, base: topicBase(r.cfg.Prefix, vhost)}
			empty := map[string]int{}
			ts.patterns.Store(&empty)
			t.subs[subj] = ts
		}
		old := *ts.patterns.Load()
		next := make(map[string]int, len(old)+1)
		for p, n := range old {
			next[p] = n
		}
		if on {
			next[key]++
		} else if next[key]--; next[key] <= 0 {
			delete(next, key)
		}
		ts.patterns.Store(&next)
		t.dirty[ts] = struct{}{}
	}
	t.mu.Unlock()
	select {
	case t.kick <- struct{}{}:
	default:
	}
}

// syncTopics makes the subscriptions follow the table until the router
// closes.
func (r *router) syncTopics() {
	defer r.wg.Done()
	t := &r.topics
	tick := time.NewTicker(topicRetry)
	defer tick.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.kick:
		case <-tick.C:
			r.countDropped()
		}
		t.mu.Lock()
		work := make([]*topicSub, 0, len(t.dirty))
		for ts := range t.dirty {
			work = append(work, ts)
		}
		clear(t.dirty)
		t.mu.Unlock()
		for _, ts := range work {
			r.syncTopic(ts)
		}
	}
}

// syncTopic subscribes or unsubscribes one subject to match its patterns.
func (r *router) syncTopic(ts *topicSub) {
	t := &r.topics
	want := len(*ts.patterns.Load()) > 0
	switch {
	case want && ts.sub == nil:
		handler := func(m *nats.Msg) { r.onTopicMsg(ts, m) }
		if ts.reply {
			handler = func(m *nats.Msg) { r.onReplyMsg(ts, m) }
		}
		sub, err := r.nc.Subscribe(ts.subject, handler)
		if err == nil {
			err = sub.SetPendingLimits(topicPendingMsgs, topicPendingBytes)
		}
		if err != nil {
			if sub != nil {
				_ = sub.Unsubscribe()
			}
			r.log.Warn("topic subscribe failed; retrying", "subject", ts.subject, "err", err)
			t.mu.Lock()
			t.dirty[ts] = struct{}{} // the ticker brings syncTopics back
			t.mu.Unlock()
			return
		}
		t.mu.Lock()
		ts.sub, ts.dropped = sub, 0
		t.mu.Unlock()
	case !want && ts.sub != nil:
		r.countDroppedOf(ts)
		if err := ts.sub.Unsubscribe(); err != nil {
			r.log.Debug("topic unsubscribe", "subject", ts.subject, "err", err)
		}
		t.mu.Lock()
		ts.sub = nil
		t.mu.Unlock()
	}
	if ts.sub == nil {
		// Forget the subject unless interest came back meanwhile (then
		// it is dirty again and a later pass subscribes).
		t.mu.Lock()
		if t.subs[ts.subject] == ts && len(*ts.patterns.Load()) == 0 {
			delete(t.subs, ts.subject)
		}
		t.mu.Unlock()
	}
}

// countDropped adds what nats.go dropped as slow consumer since the last
// look to the metric.
func (r *router) countDropped() {
	t := &r.topics
	t.mu.Lock()
	subs := make([]*topicSub, 0, len(t.subs))
	for _, ts := range t.subs {
		subs = append(subs, ts)
	}
	t.mu.Unlock()
	for _, ts := range subs {
		r.countDroppedOf(ts)
	}
}

func (r *router) countDroppedOf(ts *topicSub) {
	if ts.sub == nil {
		return
	}
	if n, err := ts.sub.Dropped(); err == nil && n > ts.dropped {
		r.met.topicDropped.Add(float64(n - ts.dropped))
		ts.dropped = n
	}
}

// unsubscribeAll ends every topic subscription; only after syncTopics
// ended.
func (r *router) unsubscribeAll() {
	t := &r.topics
	t.mu.Lock()
	defer t.mu.Unlock()
	for subj, ts := range t.subs {
		if ts.sub != nil {
			_ = ts.sub.Unsubscribe()
			ts.sub = nil
		}
		delete(t.subs, subj)
	}
	clear(t.dirty)
}

// onTopicMsg delivers a message from another node to the local subscribers
// of the patterns that map to the subject it came on. (The connection uses
// NoEcho, so this node's own publishes, delivered locally already, do not
// come back.)
func (r *router) onTopicMsg(ts *topicSub, msg *nats.Msg) {
	b := r.brk.Load()
	if b == nil {
		return
	}
	topic, ok := topicOfSubject(ts.base, msg.Subject)
	if !ok {
		r.log.Warn("topic message on a subject stompbox does not use", "subject", msg.Subject)
		return
	}
	m, err := decodeMessage(msg.Data)
	if err != nil {
		r.log.Warn("undecodable topic message dropped", "subject", msg.Subject, "err", err)
		return
	}
	patterns := *ts.patterns.Load()
	b.DeliverTopic(ts.vhost, topic, m, func(p string) bool { return patterns[p] > 0 })
}

// PublishTopic implements broker.Cluster: it encodes m once and publishes
// it on the topic's subject. While NATS is unreachable it fails at once
// (the link buffers nothing while reconnecting).
func (r *router) PublishTopic(vhost, topic string, m *broker.Message) error {
	if r.closed() {
		return unavailable("publish topic", errRouterClosed)
	}
	if err := r.publishCore(topicSubject(r.cfg.Prefix, vhost, topic), m); err != nil {
		return unavailable("publish topic", err)
	}
	return nil
}

// maxPooledPayload bounds the buffers publishCore keeps for reuse.
const maxPooledPayload = 64 << 10

// publishCore encodes m into a pooled buffer and publishes it on core
// NATS: nc.Publish copies the payload into the connection's buffer before
// it returns, so the buffer is free again at once.
func (r *router) publishCore(subject string, m *broker.Message) error {
	bp, _ := r.payloads.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	*bp = appendMessage((*bp)[:0], m)
	err := r.nc.Publish(subject, *bp)
	if cap(*bp) <= maxPooledPayload {
		r.payloads.Put(bp)
	}
	return err
}
