// Package cluster lets several stompbox nodes share one set of destinations
// through NATS JetStream (docs/cluster.md): it implements broker.Cluster.
// Topics ride on core NATS subjects, subscribed by interest; queues live in
// a JetStream work-queue stream per virtual host, consumed by one durable
// pull consumer per queue that every node shares. Optionally it runs a
// nats-server inside the process (cluster.embedded_nats). It owns the NATS
// connection and every goroutine it starts; Close stops them.
package cluster

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a Node; zero fields take their defaults. Each field
// names the configuration key it comes from (docs/configuration.md).
type Config struct {
	// URLs are the NATS servers to connect to (cluster.nats_url, flag
	// -cluster-nats, env STOMPBOX_CLUSTER_NATS: comma-separated). Empty
	// with Embedded set: the embedded server, in-process.
	URLs []string
	// Name (cluster.name, default "stompbox") prefixes every subject,
	// stream and consumer, so several stompbox clusters can share one NATS.
	Name string
	// NodeName (cluster.node, default: the host name) names this node to
	// NATS and in logs and metrics.
	NodeName string
	// CredsFile is a NATS credentials file (cluster.nats_creds_file).
	CredsFile string
	// TLSCA, TLSCert and TLSKey are PEM files for TLS to NATS
	// (cluster.nats_tls_ca, cluster.nats_tls_cert, cluster.nats_tls_key):
	// with TLSCA alone the server is verified against it; with the pair
	// too, the node presents a client certificate.
	TLSCA, TLSCert, TLSKey string
	// Replicas (cluster.replicas) is the replica count of the streams it
	// creates; 0: 3 when the JetStream cluster has at least 3 servers,
	// else 1.
	Replicas int
	// AckWait (cluster.ack_wait, default 30s) is how long JetStream waits
	// for a fed queue message to be settled before it redelivers it
	// elsewhere: how soon a dead node's unacknowledged messages come back.
	// A live node keeps its messages by telling JetStream it is still
	// working on them.
	AckWait time.Duration
	// PublishTimeout (cluster.publish_timeout, default 5s) bounds the wait
	// for JetStream to confirm a stored message.
	PublishTimeout time.Duration
	// MaxQueueMessages bounds each queue in the cluster (its subject in
	// the virtual host's stream) and MaxQueueBytes the virtual host's
	// whole stream (JetStream has no byte limit per subject): the
	// broker's limits.max_queue_messages and limits.max_queue_bytes. 0:
	// unlimited.
	MaxQueueMessages int
	MaxQueueBytes    int64
	// DedupeWindow is how long the queue streams remember a message's
	// id (Nats-Msg-Id: broker.Message.DedupeID for a SEND with an
	// idempotency-key, else its message-id) to store a repeat once: the
	// broker's dedupe.window. Default 2m.
	DedupeWindow time.Duration
	// MaxHistoryBytes bounds each topic history stream (one per history
	// rule and virtual host; its oldest messages go first): the broker's
	// topics.history_max_bytes, which bounds what one node's histories
	// retain together. 0: unlimited.
	MaxHistoryBytes int64
	// PresenceTTL is how long a presence member a node holds stays in the
	// cluster without being refreshed (the presence bucket's TTL): a dead
	// node's members leave the other nodes' sets within about this long.
	// The node refreshes its members every PresenceTTL/3. Default 30s.
	PresenceTTL time.Duration
	// Embedded, when set (cluster.embedded_nats), runs a nats-server with
	// JetStream inside the process.
	Embedded *EmbeddedConfig
	// Logger receives cluster events. Default: discard.
	Logger *slog.Logger
	// Registerer receives the cluster's collectors; nil: none.
	Registerer prometheus.Registerer
}

// EmbeddedConfig configures the nats-server run inside the process
// (cluster.embedded_nats.*).
type EmbeddedConfig struct {
	// Listen is the client address (listen, default 127.0.0.1:4222).
	// Port 0 or -1: any free port (nats-server itself reads 0 as 4222).
	Listen string
	// ClusterListen is the route address peers connect to
	// (cluster_listen); empty: no routes, a one-server NATS. Port 0 or -1:
	// any free port. Set, it needs Routes: JetStream in a NATS cluster
	// starts only with its peers configured.
	ClusterListen string
	// Routes are the peers' route URLs, nats-route://host:port (routes).
	// Listing this node's own route address too is fine (nats-server skips
	// it), so every node can be given the same list.
	Routes []string
	// StoreDir is JetStream's storage directory (store_dir).
	StoreDir string
}
