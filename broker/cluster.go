package broker

import "errors"

// Cluster is what the broker needs to share its destinations with other
// stompbox nodes (docs/cluster.md). Package server/cluster implements it
// over NATS JetStream; with Config.Cluster nil the broker is the
// single-node broker, unchanged.
//
// Topics: the broker tells the cluster which topic patterns have local
// subscribers (TopicInterest) and hands it every message published on this
// node (PublishTopic); the cluster hands messages published on other nodes
// back through Broker.DeliverTopic, to the local subscribers of the
// patterns it names. Queues (/queue/<name>, dead-letter queues included)
// live in the cluster: a SEND is stored there (PublishQueue, RECEIPT once
// stored) and never enqueued locally; while a queue has local consumers
// the cluster feeds it what they have credit for (ConsumeQueue), and the
// broker settles each message it was fed exactly once (Settler).
type Cluster interface {
	// TopicInterest says the local subscriptions (durable subscriptions'
	// feeds included) to topic pattern in vhost went from none to some
	// (on) or back to none. pattern is a topic name or a STOMP wildcard
	// pattern ("*" one segment, "#" zero or more), without /topic/. It is
	// called under the broker's topic-table lock, in order for each
	// pattern, so it must not block.
	TopicInterest(vhost, pattern string, on bool)
	// PublishTopic hands the other nodes m, published on this node to
	// topic (a name, without /topic/) in vhost. It must not block. An
	// error means the other nodes will not get m; the local subscribers
	// have it already.
	PublishTopic(vhost, topic string, m *Message) error
	// PublishQueue stores m in the shared queue (its destination, e.g.
	// /queue/orders) of vhost without waiting. done is called exactly
	// once, from any goroutine and possibly before PublishQueue returns,
	// with nil once the cluster has stored m (JetStream's PubAck) or an
	// error wrapping ErrClusterUnavailable or ErrClusterFull. When
	// PublishQueue returns an error, nothing was sent and done is never
	// called.
	PublishQueue(vhost, queue string, m *Message, done ClusterDone) error
	// ConsumeQueue starts feeding sink the messages of the shared queue
	// (e.g. /queue/orders) of vhost: the broker calls it when the queue
	// gets its first local consumer and calls Stop on the result when it
	// has none left. It must not block.
	ConsumeQueue(vhost, queue string, sink QueueSink) QueueFeed
	// ReplyInterest says this node now holds (on) or no longer holds the
	// temporary queues of the session whose reply-queue token is token:
	// replies sent on other nodes to /reply-queue/<token>/... must come
	// here. It must not block.
	ReplyInterest(vhost, token string, on bool)
	// PublishReply hands the node holding it a message for the reply
	// queue key (/reply-queue/<token>/<name>) that is not on this node; it
	// comes back there through Broker.DeliverReply. It must not block. A
	// reply that no node holds is dropped, as a reply to a requester that
	// is gone is; an error means it could not be sent.
	PublishReply(vhost, key string, m *Message) error
}

// ClusterDone is told the outcome of one Cluster.PublishQueue. It is called
// from the cluster's goroutines: it must be cheap and must not block.
type ClusterDone interface {
	ClusterDone(err error)
}

// ClusterDoneFunc adapts a function to ClusterDone.
type ClusterDoneFunc func(err error)

// ClusterDone implements ClusterDone.
func (f ClusterDoneFunc) ClusterDone(err error) { f(err) }

// QueueSink is a local queue as the cluster feeds it. Both methods are safe
// from any goroutine and do not block.
type QueueSink interface {
	// Credit is how many more messages the queue's local consumers can
	// take now (prefetch and outbox room, less what the queue holds ready
	// already); 0 means fetch nothing until QueueFeed.More is called.
	Credit() int
	// Offer hands the queue one message fetched from the cluster;
	// deliveries counts this delivery (1 the first time; the cluster's
	// count, across every node). The broker settles it exactly once
	// through settle, also when the queue has no consumer left: then it
	// calls Nak, so another node's consumer gets it.
	Offer(m *Message, deliveries int, settle Settler)
}

// Settler settles one message the cluster fed a queue. Exactly one of its
// methods is called, once, possibly under the queue's lock: none may block.
type Settler interface {
	// Ack: consumed (acknowledged, or delivered in ack mode auto).
	Ack()
	// Nak: give it back to the cluster for redelivery to any node.
	Nak()
	// Term: it left the queue for good without being consumed (expired,
	// moved to the dead-letter queue, or dropped after max_redeliveries).
	Term()
}

// QueueFeed is the cluster's feed of one local queue.
type QueueFeed interface {
	// More says the queue's credit may have grown (a consumer attached,
	// acknowledged, or its outbox drained): the feed fetches again. It
	// must not block; several calls may be answered by one fetch.
	More()
	// Stop ends the feed. It must not block; a message the feed offers
	// after Stop is settled with Nak by the queue.
	Stop()
}

// ErrClusterUnavailable is returned (wrapped) when the cluster cannot be
// reached or did not confirm in time: the producer gets ERROR
// cluster-unavailable, retryable.
var ErrClusterUnavailable = errors.New("broker: cluster unavailable")

// ErrClusterDuplicate is what ClusterDone gets when the cluster did not
// store a message because it stored one with the same Message.DedupeID
// within the deduplication window: the SEND is a duplicate, receipted and
// not applied again.
var ErrClusterDuplicate = errors.New("broker: duplicate in the cluster")

// ErrJournalHoldsClusterQueues is returned (wrapped) by Broker.Recover in
// cluster mode when the journal holds messages of /queue/ destinations,
// which live in the cluster now.
var ErrJournalHoldsClusterQueues = errors.New("broker: journal holds messages of clustered queues")

// ErrClusterFull is returned (wrapped) when the cluster refused a message
// for its limits (the queue's stream is full): the producer gets ERROR
// limit-exceeded, retryable.
var ErrClusterFull = errors.New("broker: cluster queue full")
