package broker

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stompbox/stompbox/frames"
)

// Config is everything a Broker needs. A zero field takes its default
// (see docs/configuration.md).
type Config struct {
	// ServerName is sent in CONNECTED's server header. Default "stompbox/dev".
	ServerName string
	// Frame bounds every frame a client sends.
	Frame frames.Limits
	// HeartBeat is the server's side of the heart-beat negotiation: Receive
	// is how often it wants them (a client offering to send more often is
	// still expected only this often); Send, when positive, enables
	// heart-beats to clients, at the pace they ask for down to
	// HeartbeatMinInterval. CONNECTED carries the negotiated values.
	// Default 10s,10s; a negative duration disables that direction.
	HeartBeat frames.HeartBeat
	// HeartbeatMinInterval is the shortest interval at which the server
	// sends heart-beats: a client asking to hear from the server every cy
	// ms gets a heart-beat every max(cy, HeartbeatMinInterval). A shorter
	// HeartBeat.Send lowers it. Default 1s.
	HeartbeatMinInterval time.Duration
	// HeartbeatTolerance multiplies the negotiated client interval before a
	// silent client is closed with error-code heartbeat-timeout. Default 2.
	HeartbeatTolerance float64
	// ConnectTimeout is how long a connection may take to send CONNECT.
	// Default 5s.
	ConnectTimeout time.Duration
	// MaxSubscriptions bounds subscriptions per connection. Default 1024.
	MaxSubscriptions int
	// MaxOutboxBytes bounds the encoded bytes waiting to be written to one
	// connection. A topic subscriber past it is disconnected with
	// error-code slow-consumer; queue consumers simply get nothing more
	// until it drains. Default 8 MiB.
	MaxOutboxBytes int
	// MaxConnectionBytes is the one byte budget of a connection: everything
	// the broker holds because of it (its outbox at encoded size, control
	// frames, unacknowledged topic messages, open transactions, input held
	// while it is blocked). Output past it makes a slow consumer; input
	// past it blocks the producer. Default 16 MiB.
	MaxConnectionBytes int
	// MaxIDLength bounds the ids a client names and the broker keeps for
	// the connection (subscription, receipt and transaction ids): a longer
	// one gets ERROR invalid-header. Default 256 bytes.
	MaxIDLength int
	// FullPolicy is what a producer meets when a queue, the broker-wide
	// total, the journal's disk budget or its own rate limit is full:
	// FullBlock (the default) slows it down, FullError answers ERROR
	// limit-exceeded (retryable) and closes.
	FullPolicy FullPolicy
	// BlockTimeout bounds how long a connection may stay blocked under
	// FullBlock before it gets ERROR limit-exceeded (retryable). Default
	// 0: no limit.
	BlockTimeout time.Duration
	// MaxQueueMessages and MaxQueueBytes bound every queue (ready plus
	// unacknowledged); a SEND beyond either blocks its producer (or, with
	// FullError, gets ERROR limit-exceeded).
	// Defaults 100000 messages and 256 MiB.
	MaxQueueMessages int
	MaxQueueBytes    int
	// MaxQueues bounds how many queues may exist at once (empty queues
	// without consumers are removed). Default 10000.
	MaxQueues int
	// MaxTotalQueuedBytes bounds the messages held by all queues together.
	// Default 1 GiB.
	MaxTotalQueuedBytes int
	// MaxTopicUnacked bounds the unacknowledged messages of one client-ack
	// topic subscription without prefetch-count; past it the subscriber is a
	// slow consumer. Default 10000.
	MaxTopicUnacked int
	// MaxRedeliveries is how many times a message is redelivered before it
	// moves to /queue/DLQ.<name>. Default 5; negative means never dead-letter.
	MaxRedeliveries int
	// MaxTransactions bounds open transactions per connection, and
	// MaxTransactionFrames the SEND/ACK/NACK frames one may hold. Defaults 16
	// and 10000.
	MaxTransactions      int
	MaxTransactionFrames int
	// Journal, when set, makes persistent messages (persistent:true) to
	// queues and durable subscriptions survive restarts: a persistent SEND
	// is acknowledged only once the journal has it. Call Broker.Recover
	// before serving. Default: none, everything in memory.
	Journal Journal
	// Cluster, when set, shares topics and queues with other stompbox
	// nodes (cluster.go, docs/cluster.md). Default: none, a single node.
	Cluster Cluster
	// Authenticator checks CONNECT credentials. Default: allow everyone.
	Authenticator Authenticator
	// VirtualHosts are the virtual hosts besides the default "/": each an
	// isolated namespace of destinations, chosen by the CONNECT host header.
	// With none, every host header means "/"; with some, a CONNECT naming
	// another host is refused (no header: "/"). Queue limits apply per
	// virtual host.
	VirtualHosts []string
	// Authorizer decides what an authenticated client may publish and
	// subscribe to, and which virtual hosts it may use. Default: allow
	// everything.
	Authorizer Authorizer
	// MaxFramesPerSecond and MaxBytesPerSecond bound what one connection
	// may send (token buckets with a burst of twice the rate); past them it
	// is throttled (or, with FullError, gets ERROR limit-exceeded).
	// Default 0: unlimited.
	MaxFramesPerSecond int
	MaxBytesPerSecond  int
	// MaxDestinationsPerConnection bounds the destinations (queues, topics,
	// durable subscriptions, temporary queues) one connection may create.
	// Default 0: unlimited.
	MaxDestinationsPerConnection int
	// MaxQueuesPerUser bounds the queues (named and temporary) one user
	// may have created and not yet seen retired, per virtual host, and
	// MaxDurablesPerUser the durable subscriptions one user owns: no user
	// can take all of MaxQueues. Defaults 100 each; negative: unlimited.
	MaxQueuesPerUser   int
	MaxDurablesPerUser int
	// DurableIdleTTL removes, with its backlog, a durable subscription no
	// connection has consumed for that long (Broker.SweepIdleDurables,
	// which package server runs periodically). Default 0: never.
	DurableIdleTTL time.Duration
	// ResumeGrace is how long a session whose connection dropped stays
	// resumable with the resume-token its CONNECTED carried (0:
	// DefaultResumeGrace; negative: no session recovery, no token).
	ResumeGrace time.Duration
	// MaxParkedSessions bounds the sessions parked at once, each holding
	// up to its outbox and budget after its connection is gone: past it, a
	// dropped session is released instead (0: DefaultMaxParkedSessions).
	MaxParkedSessions int
	// MaxParkedPerIP bounds the sessions parked at once for one client
	// address: past it, that address's oldest parked session is released,
	// so one client dropping connections in a loop cannot fill
	// MaxParkedSessions for everyone else (0: DefaultMaxParkedPerIP).
	MaxParkedPerIP int
	// AuthFailureDelay is how long a client whose credentials were refused
	// waits for its ERROR. Default 1s; negative: none.
	AuthFailureDelay time.Duration
	// DestinationMetrics is how many destinations, the deepest first, are
	// exported with their name as a metric label (stompbox_destination_*).
	// Default 0: none, since names are unbounded.
	DestinationMetrics int
	// TopicHistory are the rules of topic history (first match wins; no
	// rule: no history): docs/compliance.md, "Topic history and resume".
	// Check them with ValidateHistory; New ignores invalid ones (logged).
	// Default: none.
	TopicHistory []HistoryRule
	// MaxHistoryBytes bounds what all topic histories retain together;
	// past it a publish evicts its topic's oldest messages first.
	// Default 256 MiB.
	MaxHistoryBytes int
	// PresenceGrace is how long a presence member (SUBSCRIBE with
	// presence:true) whose last presence subscription ended stays in its
	// set before it leaves: a client back within it neither leaves nor
	// joins again. Members leave when Broker.SweepPresence runs after it.
	// Default 10s; negative: they leave at once.
	PresenceGrace time.Duration
	// MaxPresenceMembers bounds the members of one topic's presence set
	// (those in their grace period included), and MaxPresenceSets the
	// presence sets (topics with members or /presence/ watchers) of one
	// virtual host; past them SUBSCRIBE gets ERROR limit-exceeded
	// (retryable). Defaults 1000 and 10000.
	MaxPresenceMembers int
	MaxPresenceSets    int
	// Registerer, when set, gets the broker's metrics (read from its
	// counters at scrape time). Default: none.
	Registerer prometheus.Registerer
	// Logger receives connection-level events. Default: discard.
	Logger *slog.Logger
	// Now is the clock (tests replace it). Default time.Now.
	Now func() time.Time

	// DedupeWindow is how long an idempotency-key is remembered: a SEND
	// repeating a key its user sent to the same destination within it is
	// receipted but not applied again (dedupe.go). Default 2m; negative:
	// no deduplication.
	DedupeWindow time.Duration
	// DedupeMaxKeysPerUser bounds the keys remembered per user and virtual
	// host; past it the oldest are forgotten first. Default 10000.
	DedupeMaxKeysPerUser int
}

// The defaults of Config.
const (
	DefaultServerName           = "stompbox/dev"
	DefaultHeartBeat            = 10 * time.Second
	DefaultHeartbeatTolerance   = 2.0
	DefaultHeartbeatMinInterval = time.Second
	DefaultConnectTimeout       = 5 * time.Second
	DefaultMaxSubscriptions     = 1024
	DefaultMaxOutboxBytes       = 8 << 20
	DefaultMaxConnectionBytes   = 16 << 20
	DefaultMaxIDLength          = 256
	DefaultMaxQueueMessages     = 100_000
	DefaultMaxQueueBytes        = 256 << 20
	DefaultMaxRedeliveries      = 5
	DefaultMaxQueues            = 10_000
	DefaultMaxTotalQueuedBytes  = 1 << 30
	DefaultMaxTopicUnacked      = 10_000
	DefaultMaxTransactions      = 16
	DefaultMaxTransactionFrames = 10_000
	DefaultAuthFailureDelay     = time.Second
	DefaultMaxQueuesPerUser     = 100
	DefaultMaxDurablesPerUser   = 100
	DefaultPresenceGrace        = 10 * time.Second
	DefaultMaxPresenceMembers   = 1000
	DefaultMaxPresenceSets      = 10_000
)

func (c Config) withDefaults() Config {
	if c.ServerName == "" {
		c.ServerName = DefaultServerName
	}
	c.Frame = c.Frame.WithDefaults()
	if c.HeartBeat == (frames.HeartBeat{}) {
		c.HeartBeat = frames.HeartBeat{Send: DefaultHeartBeat, Receive: DefaultHeartBeat}
	}
	if c.HeartbeatTolerance < 1 {
		c.HeartbeatTolerance = DefaultHeartbeatTolerance
	}
	setDefault(&c.HeartbeatMinInterval, DefaultHeartbeatMinInterval)
	setDefault(&c.ConnectTimeout, DefaultConnectTimeout)
	setDefault(&c.MaxSubscriptions, DefaultMaxSubscriptions)
	setDefault(&c.MaxOutboxBytes, DefaultMaxOutboxBytes)
	setDefault(&c.MaxConnectionBytes, DefaultMaxConnectionBytes)
	setDefault(&c.MaxIDLength, DefaultMaxIDLength)
	setDefault(&c.MaxQueueMessages, DefaultMaxQueueMessages)
	setDefault(&c.MaxQueueBytes, DefaultMaxQueueBytes)
	setDefault(&c.MaxQueues, DefaultMaxQueues)
	setDefault(&c.MaxTotalQueuedBytes, DefaultMaxTotalQueuedBytes)
	setDefault(&c.MaxTopicUnacked, DefaultMaxTopicUnacked)
	setDefault(&c.MaxHistoryBytes, DefaultMaxHistoryBytes)
	if c.MaxRedeliveries == 0 {
		c.MaxRedeliveries = DefaultMaxRedeliveries
	}
	setDefault(&c.MaxTransactions, DefaultMaxTransactions)
	if c.MaxQueuesPerUser == 0 {
		c.MaxQueuesPerUser = DefaultMaxQueuesPerUser
	}
	if c.MaxDurablesPerUser == 0 {
		c.MaxDurablesPerUser = DefaultMaxDurablesPerUser
	}
	if c.AuthFailureDelay == 0 {
		c.AuthFailureDelay = DefaultAuthFailureDelay
	}
	setDefault(&c.MaxTransactionFrames, DefaultMaxTransactionFrames)
	if c.ResumeGrace == 0 {
		c.ResumeGrace = DefaultResumeGrace
	}
	setDefault(&c.MaxParkedSessions, DefaultMaxParkedSessions)
	setDefault(&c.MaxParkedPerIP, DefaultMaxParkedPerIP)
	if c.PresenceGrace == 0 {
		c.PresenceGrace = DefaultPresenceGrace
	}
	setDefault(&c.MaxPresenceMembers, DefaultMaxPresenceMembers)
	setDefault(&c.MaxPresenceSets, DefaultMaxPresenceSets)
	if c.DedupeWindow == 0 {
		c.DedupeWindow = DefaultDedupeWindow
	}
	setDefault(&c.DedupeMaxKeysPerUser, DefaultDedupeMaxKeysPerUser)
	if c.Authenticator == nil {
		c.Authenticator = AllowAll{}
	}
	if c.Authorizer == nil {
		c.Authorizer = AllowEverything{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}
