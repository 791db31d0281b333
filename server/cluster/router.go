package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/stompbox/stompbox/broker"
)

// routerConfig configures a router; the Node fills it from Config and its
// NATS link.
type routerConfig struct {
	// NC is the connection to NATS (owned by the link, not the router).
	// It must use ReconnectBufSize(-1), so that a publish while
	// disconnected fails at once instead of being buffered.
	NC *nats.Conn
	// JS manages streams and consumers; nil: one made on NC. Queue
	// publishes always use the router's own JetStream handle on NC, whose
	// async PubAck callbacks and timeout are the router's.
	JS jetstream.JetStream
	// Prefix (Config.Name) is the first token of every subject and the
	// start of every stream name.
	Prefix string
	// Node names this node in logs.
	Node string
	// Replicas of the queue streams; 0: 3 when the NATS cluster has at
	// least 3 servers, else 1.
	Replicas int
	// AckWait is the queue consumers' AckWait (default 30s).
	AckWait time.Duration
	// PublishTimeout bounds the wait for a PubAck (default 5s).
	PublishTimeout time.Duration
	// MaxQueueMessages bounds each queue (the stream's MaxMsgsPerSubject,
	// new messages refused when full); 0: unlimited.
	MaxQueueMessages int
	// MaxQueueBytes bounds a virtual host's queue stream; 0: unlimited.
	MaxQueueBytes int64
	// DedupeWindow is the queue streams' Duplicates window (default 2m).
	DedupeWindow time.Duration
	// MaxHistoryBytes bounds each topic history stream (the oldest
	// messages go first); 0: unlimited.
	MaxHistoryBytes int64
	// PresenceTTL is how long a presence member lives in the presence
	// bucket unrefreshed (default 30s; router_presence.go).
	PresenceTTL time.Duration
	// Logger receives router events; nil: discard.
	Logger *slog.Logger
	// Registerer receives the router's collectors; nil: none.
	Registerer prometheus.Registerer
}

// routerConfigFor is the router configuration of a node with configuration
// cfg (defaults filled in) on connection nc and its JetStream context js.
func routerConfigFor(cfg Config, nc *nats.Conn, js jetstream.JetStream) routerConfig {
	return routerConfig{
		NC: nc, JS: js, Prefix: cfg.Name, Node: cfg.NodeName, Replicas: cfg.Replicas,
		AckWait: cfg.AckWait, PublishTimeout: cfg.PublishTimeout,
		MaxQueueMessages: cfg.MaxQueueMessages, MaxQueueBytes: cfg.MaxQueueBytes,
		DedupeWindow: cfg.DedupeWindow, PresenceTTL: cfg.PresenceTTL,
		MaxHistoryBytes: cfg.MaxHistoryBytes,
		Logger:          cfg.Logger, Registerer: cfg.Registerer,
	}
}

const (
	// maxInflight bounds queue publishes awaiting their PubAck; past it
	// PublishQueue refuses as full (the broker slows the producer down)
	// rather than queueing without bound.
	maxInflight = 1 << 16
)

// router implements broker.Cluster over one NATS connection: topics and
// replies to temporary queues on core NATS subjects (router_topics.go,
// router_replies.go), queues in JetStream (router_queues.go, fed to local
// consumers by router_feed.go). Names map to subjects as subjects.go
// says; every message is encoded once (codec.go).
//
// What a client sees differently from a single node:
//   - Topics are at most once across nodes: while NATS is unreachable a
//     message reaches only its own node's subscribers (PublishTopic fails,
//     the broker counts it), and a node that cannot keep up drops what
//     NATS has buffered for it past the subscription's pending limits
//     (stompbox_cluster_topic_dropped_total).
//   - Queues are at least once: a PubAck lost to a disconnection is
//     reported as unavailable although the message may be stored (a
//     resend with the same message id within 2 minutes is stored once);
//     an ACK lost the same way means a redelivery after AckWait.
//   - Queue order is JetStream's per queue: consumers on several nodes
//     fetch batches concurrently, so two messages may be consumed in the
//     other order on different nodes; a dead node's unsettled messages
//     come back only after AckWait. The delivery count is the cluster's,
//     across nodes.
type router struct {
	cfg  routerConfig
	nc   *nats.Conn
	js   jetstream.JetStream // streams and consumers
	pub  jetstream.JetStream // async queue publishes, callbacks into onPubAck/onPubErr
	log  *slog.Logger
	met  *routerMetrics
	brk  atomic.Pointer[broker.Broker]
	ctx  context.Context // cancelled by close: every goroutine's exit
	stop context.CancelFunc
	wg   sync.WaitGroup // every goroutine the router started
	once sync.Once

	topics   topicTable
	queues   queueState
	presence presenceState // router_presence.go
	durables durableState  // router_durables.go
	history  historyState  // router_history.go
	sessions sessionsState // router_sessions.go
	payloads sync.Pool     // *[]byte: encode buffers of core NATS publishes
}

// newRouter builds a router on cfg.NC and starts its goroutines (the topic
// subscription keeper and the queue keep-alive).
func newRouter(cfg routerConfig) (*router, error) {
	if cfg.NC == nil {
		return nil, errors.New("cluster: router needs a NATS connection")
	}
	if !cfg.NC.Opts.NoEcho {
		// Topic messages this node publishes are delivered locally by the
		// broker; echoed back they would reach local subscribers twice.
		return nil, errors.New("cluster: router needs a NATS connection with NoEcho")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "stompbox"
	}
	if !validPrefix(cfg.Prefix) {
		return nil, fmt.Errorf("cluster: name %q cannot start NATS subjects (dot-separated tokens of letters, digits, - and _)", cfg.Prefix)
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = defaultAckWait
	}
	if cfg.PublishTimeout <= 0 {
		cfg.PublishTimeout = defaultPublishTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	r := &router{cfg: cfg, nc: cfg.NC, log: cfg.Logger.With("component", "cluster-router", "node", cfg.Node)}
	r.met = newRouterMetrics(cfg.Registerer)
	pub, err := jetstream.New(cfg.NC,
		jetstream.WithPublishAsyncAckHandler(r.onPubAck),
		jetstream.WithPublishAsyncErrHandler(r.onPubErr),
		jetstream.WithPublishAsyncTimeout(cfg.PublishTimeout),
		// The router bounds what is in flight itself (maxInflight) and
		// must never stall in PublishMsgAsync: jetstream's own cap sits
		// above it.
		jetstream.WithPublishAsyncMaxPending(2*maxInflight),
		jetstream.WithDefaultTimeout(cfg.PublishTimeout))
	if err != nil {
		return nil, fmt.Errorf("cluster: jetstream: %w", err)
	}
	r.pub = pub
	r.js = cfg.JS
	if r.js == nil {
		r.js = pub
	}
	r.ctx, r.stop = context.WithCancel(context.Background())
	r.topics.init()
	r.queues.init()
	r.presence.init(cfg.Registerer)
	r.durables.init(cfg.Registerer)
	r.history.init(cfg.Registerer, r.historyLag)
	r.sessions.init(cfg.Registerer, cfg.Node, r.presence.instance)
	if err := r.startSessions(); err != nil {
		return nil, err
	}
	r.wg.Add(6)
	go r.syncTopics()
	go r.keepAlive()
	go r.presenceWriter()
	go r.presenceWatcher()
	go r.durableKeeper()
	go r.durablesWatcher()
	return r, nil
}

// setBroker names the broker topic messages from other nodes are delivered
// to; call it before the broker serves. Until then they are dropped.
func (r *router) setBroker(b *broker.Broker) { r.brk.Store(b) }

// close stops every goroutine the router started (waiting at most until
// ctx ends), unsubscribes its topic subjects, fails the queue publishes
// still awaiting a PubAck and stops every queue feed. The connection stays
// open: it is the link's.
func (r *router) close(ctx context.Context) error {
	r.once.Do(func() {
		r.stopSessions()     // no handover starts now; those running are waited for below
		r.flushReleases(ctx) // before the context its KV calls need ends
		r.stop()
		r.queues.closeAll(r)
	})
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("cluster: router close: %w", ctx.Err())
	}
	r.unsubscribeAll()
	r.pub.CleanupPublisher()
	return nil
}

// validPrefix reports whether p may be the first tokens of every subject:
// non-empty plain tokens, so no wildcard, space or empty token.
func validPrefix(p string) bool {
	for _, tok := range strings.Split(p, ".") {
		if !plainSegment(tok) {
			return false
		}
	}
	return true
}

// closed reports whether close was called.
func (r *router) closed() bool { return r.ctx.Err() != nil }

// errRouterClosed is the cause of errors after close.
var errRouterClosed = errors.New("cluster: router closed")

// unavailable wraps err (or says what) as broker.ErrClusterUnavailable.
func unavailable(what string, err error) error {
	if err == nil {
		return fmt.Errorf("cluster: %s: %w", what, broker.ErrClusterUnavailable)
	}
	return fmt.Errorf("cluster: %s: %w: %w", what, broker.ErrClusterUnavailable, err)
}

var (
	_ broker.Cluster        = (*router)(nil)
	_ broker.ClusterHistory = (*router)(nil)
)
