package broker

// Topic history across the nodes of a cluster (docs/cluster.md "Topic
// history"), when Config.Cluster implements ClusterHistory. The cluster
// keeps each history rule of each virtual host in a stream of its own: a
// SEND to a topic with history is stored there (PublishHistory, RECEIPT
// once stored) and not delivered here directly; every node, this one
// included, mirrors the stream in its order (KeepHistory feeds a
// HistorySink) into the histories of history.go, whose offsets are then
// the stream's: <epoch>-<stream sequence>, the same on every node. The
// sequences of one topic are increasing but not consecutive (the stream
// holds every topic of its rule), so what a node knows is tracked per
// topic as before (topicHistory.before): everything of the topic after it
// is retained here.

// ClusterHistory is implemented by a Cluster that keeps topic histories
// cluster-wide; the broker uses it when Config.Cluster implements it and
// Config.TopicHistory has rules.
type ClusterHistory interface {
	// KeepHistory starts mirroring the history of rule index rule (of
	// Config.TopicHistory, spec r) in vhost into sink: the cluster keeps
	// the rule's messages (retaining per topic r.Size messages, none
	// older than r.MaxAge) and calls sink from one goroutine, in the
	// order it stored them, until it closes. broker.New calls it once per
	// virtual host and rule; it must not block.
	KeepHistory(vhost string, rule int, r HistoryRule, sink HistorySink)
	// PublishHistory stores m, published on this node to topic (a name,
	// without /topic/) whose history follows rule in vhost, without
	// waiting. done is called as PublishQueue's is: exactly once, with
	// nil once stored (every node then gets m through its HistorySink),
	// ErrClusterDuplicate for a repeat of m.DedupeID, or an error
	// wrapping ErrClusterUnavailable. When it returns an error nothing was
	// sent and done is never called.
	PublishHistory(vhost, topic string, rule int, m *Message, done ClusterDone) error
}

// HistorySink is one virtual host's history of one rule, as the cluster
// mirrors it into this node. Its methods are called from one goroutine.
type HistorySink interface {
	// Start says the mirror (re)starts on the history's lifetime epoch
	// (1 to 16 lowercase hex digits, from the stream's creation), whose
	// newest message has sequence last (0: none). It returns the first
	// sequence the mirror must deliver: 1 for an epoch this node has not
	// seen (the node's history of the rule starts over; what the stream
	// holds up to last is history, retained and not delivered to
	// subscribers as new), or the one after the last delivered for the
	// epoch it mirrors already (a restart after an outage: what it missed
	// meanwhile is delivered, late, in order).
	Start(epoch string, last uint64) (from uint64)
	// Deliver hands the node one message of the history: seq its
	// sequence (increasing; repeats of what was delivered are ignored),
	// topic its topic's name (without /topic/), at its store time in ms
	// since the Unix epoch. m must not be modified afterwards.
	Deliver(seq uint64, topic string, m *Message, at int64)
}
