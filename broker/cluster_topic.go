package broker

// DeliverTopic delivers m, published on another node to topic (a name,
// without /topic/) in vhost, to this node's subscribers of the patterns
// accept accepts among those matching topic (the cluster receives a
// message once per NATS subject it subscribes, and each subject stands
// for its own patterns, so no subscriber gets it twice). Durable
// subscriptions' feeds get it too, within their limits: it was never
// journaled here, so it is not journaled for them either (a remote
// message held for an absent durable subscriber lives in memory, as the
// cluster delivered it at most once). A topic with a history holds its
// lock meanwhile, so the message does not slip in between a resuming
// subscriber's registration and its replay; it is not retained in the
// history (its offsets are this node's). It is not handed back to the
// cluster. An unknown vhost delivers nothing. m must not be modified
// afterwards.
func (b *Broker) DeliverTopic(vhost, topic string, m *Message, accept func(pattern string) bool) {
	sp := b.spaces[vhost]
	if sp == nil {
		return
	}
	if m.Persistent && b.cfg.Journal != nil {
		local := *m // shares the headers and body
		local.Persistent = false
		m = &local
	}
	h := sp.lockHistory(topic)
	exact, wild := sp.topics.match(topic)
	if exact != nil && accept(exact.pattern) {
		exact.deliverTo(m, true)
	}
	for _, set := range wild {
		if accept(set.pattern) {
			set.deliverTo(m, true)
		}
	}
	if h != nil {
		h.mu.Unlock()
	}
}

// DeliverReply enqueues m, sent on another node to the reply queue key
// (/reply-queue/<token>/<name>) of a session on this node, as a SEND on
// this node would: a requester that is gone, or a temporary queue that is
// full, loses the reply (counted as dropped).
func (b *Broker) DeliverReply(vhost, key string, m *Message) {
	sp := b.spaces[vhost]
	if sp == nil {
		return
	}
	q, _ := sp.queue(key, nil)
	if q == nil || q.owner == nil {
		b.stats.Dropped.Add(1)
		return
	}
	if err := q.enqueue(m, true); err != nil {
		b.stats.Dropped.Add(1)
	}
}
