package broker

import "github.com/stompbox/stompbox/frames"

// SENDs to a topic whose history the cluster keeps (cluster_history.go):
// the message is stored in the rule's history in the cluster, pipelined
// like a queue SEND (its RECEIPT once stored), together with its durable
// copies; it is not delivered here directly nor published on the topic's
// NATS subject: every node's mirror of the history delivers it, this
// node's too, so that every subscriber everywhere sees the same offsets in
// the same order.

// historyTarget stands for the topic's history among the places a topic
// SEND is stored in (submitCopies); no queue has an empty name.
const historyTarget = ""

// historyRoute returns the rule of the history the cluster keeps for a
// SEND on route r; -1 when it keeps none (not a topic, no rule matches, or
// not in cluster history mode).
func (s *Session) historyRoute(r route) int {
	t := s.space.hist
	if r.kind != kindTopic || t == nil || t.mirrors == nil {
		return -1
	}
	return t.ruleFor(r.key)
}

// historySendFrame reports whether f is a SEND outside a transaction to a
// topic whose history the cluster keeps (pipelined as a queue SEND is).
func (s *Session) historySendFrame(f *frames.Frame) bool {
	t := s.space.hist
	if t == nil || t.mirrors == nil || f.Command != frames.CmdSend {
		return false
	}
	if _, tx := f.Header("transaction"); tx {
		return false
	}
	d, _ := f.Header("destination")
	name, ok := cutPrefixBytes(d, "/topic/")
	return ok && t.ruleFor(string(name)) >= 0
}

// cutPrefixBytes is strings.CutPrefix for a header value.
func cutPrefixBytes(b []byte, prefix string) ([]byte, bool) {
	if len(b) < len(prefix) || string(b[:len(prefix)]) != prefix {
		return b, false
	}
	return b[len(prefix):], true
}

// sendHistory pipelines a topic SEND whose history the cluster keeps
// (rule): it is stored there and in its durable subscriptions' queues,
// and its RECEIPT comes once all have it.
func (s *Session) sendHistory(f *frames.Frame, r route, m *Message, rule int, claim dedupeClaim) *stompError {
	e := &pipedSend{s: s, msg: m, route: r, cluster: true, history: true, historyRule: rule,
		size: m.size() + pipedOverhead, claim: claim}
	for _, q := range s.space.durableCopies(r.key) {
		e.copies = append(e.copies, q.name)
	}
	m.inHistory = true
	return s.pipeToCluster(f, e)
}

// storeCopy stores e's message in target: a durable subscription's queue,
// or its topic's history.
func (e *pipedSend) storeCopy(target string, done ClusterDone) error {
	if target == historyTarget {
		return e.s.b.cfg.Cluster.(ClusterHistory).PublishHistory(e.s.space.name, e.route.key, e.historyRule, e.msg, done)
	}
	return e.s.b.cfg.Cluster.PublishQueue(e.s.space.name, target, e.msg, done)
}
