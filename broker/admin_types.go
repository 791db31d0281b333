package broker

import "time"

// What an operator sees of the broker (the admin API of package server,
// `stompbox ctl`, the console): snapshots taken under the owners' locks,
// safe to call from any goroutine, never blocking the message path for
// longer than one queue's lock.

// DestinationKind says what a destination is.
type DestinationKind string

// The destination kinds.
const (
	KindQueue     DestinationKind = "queue"     // /queue/<name>
	KindTopic     DestinationKind = "topic"     // /topic/<name> with subscribers
	KindDurable   DestinationKind = "durable"   // the queue behind a durable subscription
	KindTemporary DestinationKind = "temporary" // a temporary queue, one session's
	KindDLQ       DestinationKind = "dlq"       // /queue/DLQ.<name>
)

// DestinationInfo is one destination at the time of the snapshot.
type DestinationInfo struct {
	VHost string          // virtual host ("/" is the default)
	Name  string          // the destination, as clients name it
	Kind  DestinationKind // what it is
	// Messages are ready plus delivered and not yet acknowledged (queues);
	// Bytes are what they count against the queue's byte limit
	// (limits.max_queue_bytes): each message as its encoded MESSAGE frame.
	Messages, Bytes int
	Unacked         int // delivered, not yet acknowledged (queues)
	Consumers       int // queue consumers, or topic subscribers
	// Oldest is when the oldest message still queued was enqueued; zero
	// when there is none (and for topics).
	Oldest time.Time
	// DLQ is where messages go after limits.max_redeliveries; "" for
	// topics and for dead-letter queues themselves.
	DLQ string
	// Enqueued and Delivered count messages since the destination was
	// created (a topic: published, and delivered to its subscribers);
	// rates are differences between two snapshots.
	Enqueued, Delivered uint64
}

// DurableInfo is one durable subscription.
type DurableInfo struct {
	VHost string
	User  string // whose it is (its quota)
	// Name identifies it to its client: the subscription's durable name.
	Name string
	// Topic is the destination it subscribed to (a pattern allowed);
	// Queue is the queue that keeps its messages while it is away.
	Topic, Queue    string
	Messages, Bytes int
	// Active is whether a session consumes it now; LastActive is when one
	// last did (zero while active).
	Active     bool
	LastActive time.Time
}

// SessionInfo is one client session.
type SessionInfo struct {
	ID      string
	User    string // the principal's name; "" before CONNECT
	VHost   string // "" before CONNECT
	Version string // the STOMP version negotiated ("1.2"); "" before CONNECT
	// Connected is when CONNECT was accepted; zero before.
	Connected     time.Time
	Subscriptions []SubscriptionInfo
	// FramesIn and FramesOut count STOMP frames (heart-beats not
	// included).
	FramesIn, FramesOut uint64
	// OutboxBytes are encoded frames queued for the connection, not yet
	// written; HeldBytes is everything counted against
	// limits.max_connection_bytes (the outbox, unread receipts,
	// unacknowledged topic messages, open transactions).
	OutboxBytes, HeldBytes int
	// Blocked is why flow control holds this producer ("" when it does
	// not): the FullReason's text (queue-full, connection-budget, ...).
	Blocked string
	Unacked int // messages delivered to it, not yet acknowledged
}

// SubscriptionInfo is one subscription of a session.
type SubscriptionInfo struct {
	ID          string // the client's subscription id
	Destination string
	Ack         string // auto, client or client-individual
	Unacked     int
	Durable     string // the durable name; "" when not durable
}

// PeekedMessage is a queued message seen without consuming it.
type PeekedMessage struct {
	ID         string      // message-id
	Headers    [][2]string // as a subscriber would get them, in order
	BodySize   int
	Body       []byte // the first bytes of the body (a preview)
	Persistent bool
	Enqueued   time.Time
	Deliveries int  // times delivered so far
	Unacked    bool // delivered and waiting for its ACK
}
