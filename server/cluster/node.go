package cluster

import (
	"context"
	"errors"
	"fmt"

	"github.com/stompbox/stompbox/broker"
)

// Node is one stompbox node's membership in a cluster: it implements
// broker.Cluster. Build it with New, give it to the server
// (server.Config.Cluster, which attaches the broker), and Close it after
// the server has shut down.
type Node struct {
	cfg    Config // defaults applied
	link   *link
	router *router
}

var (
	_ broker.Cluster         = (*Node)(nil)
	_ broker.ClusterPresence = (*Node)(nil)
	_ broker.ClusterHistory  = (*Node)(nil)
	_ broker.ClusterSessions = (*Node)(nil)
)

// New starts the embedded NATS server when configured, connects to NATS
// and prepares the routes. It does not wait for NATS: a node started
// while NATS is down connects by itself once it is back (Ready says so
// meanwhile). An error means the configuration cannot work (unreadable
// credentials, an embedded server that cannot start).
func New(ctx context.Context, cfg Config) (*Node, error) {
	cfg = cfg.withDefaults()
	l, err := openLink(ctx, cfg)
	if err != nil {
		return nil, err
	}
	r, err := newRouter(routerConfigFor(cfg, l.nc, l.js))
	if err != nil {
		return nil, errors.Join(fmt.Errorf("cluster: %w", err), l.close(ctx))
	}
	return &Node{cfg: cfg, link: l, router: r}, nil
}

// Attach gives the node the broker that other nodes' messages are
// delivered to; call it before serving (server.New does).
func (n *Node) Attach(b *broker.Broker) { n.router.setBroker(b) }

// Ready reports why the node cannot serve now, or nil: NATS connected,
// JetStream answering, and every topic history mirrored up to where its
// stream was when its mirror (re)started.
func (n *Node) Ready(ctx context.Context) error {
	if err := n.link.ready(ctx); err != nil {
		return err
	}
	return n.router.historyReady()
}

// Close stops the routes, drains the NATS connection (so acknowledgements
// already made reach NATS) and stops the embedded server, within ctx.
func (n *Node) Close(ctx context.Context) error {
	return errors.Join(n.router.close(ctx), n.link.close(ctx))
}

// TopicInterest implements broker.Cluster.
func (n *Node) TopicInterest(vhost, pattern string, on bool) {
	n.router.TopicInterest(vhost, pattern, on)
}

// PublishTopic implements broker.Cluster.
func (n *Node) PublishTopic(vhost, topic string, m *broker.Message) error {
	return n.router.PublishTopic(vhost, topic, m)
}

// PublishQueue implements broker.Cluster.
func (n *Node) PublishQueue(vhost, queue string, m *broker.Message, done broker.ClusterDone) error {
	return n.router.PublishQueue(vhost, queue, m, done)
}

// ConsumeQueue implements broker.Cluster.
func (n *Node) ConsumeQueue(vhost, queue string, sink broker.QueueSink) broker.QueueFeed {
	return n.router.ConsumeQueue(vhost, queue, sink)
}

// PresenceChanged implements broker.ClusterPresence.
func (n *Node) PresenceChanged(vhost, set string, m broker.PresenceMember, present bool) {
	n.router.PresenceChanged(vhost, set, m, present)
}

// CreateDurable implements broker.ClusterDurables.
func (n *Node) CreateDurable(vhost string, spec broker.DurableSpec) (broker.DurableSpec, error) {
	return n.router.CreateDurable(vhost, spec)
}

// RemoveDurable implements broker.ClusterDurables.
func (n *Node) RemoveDurable(vhost string, spec broker.DurableSpec) error {
	return n.router.RemoveDurable(vhost, spec)
}

// HoldDurable implements broker.ClusterDurables.
func (n *Node) HoldDurable(vhost string, spec broker.DurableSpec) error {
	return n.router.HoldDurable(vhost, spec)
}

// ReleaseDurable implements broker.ClusterDurables.
func (n *Node) ReleaseDurable(vhost string, spec broker.DurableSpec) {
	n.router.ReleaseDurable(vhost, spec)
}

// KeepHistory implements broker.ClusterHistory.
func (n *Node) KeepHistory(vhost string, rule int, r broker.HistoryRule, sink broker.HistorySink) {
	n.router.KeepHistory(vhost, rule, r, sink)
}

// PublishHistory implements broker.ClusterHistory.
func (n *Node) PublishHistory(vhost, topic string, rule int, m *broker.Message, done broker.ClusterDone) error {
	return n.router.PublishHistory(vhost, topic, rule, m, done)
}

// ReplyInterest implements broker.Cluster.
func (n *Node) ReplyInterest(vhost, token string, on bool) { n.router.ReplyInterest(vhost, token, on) }

// PublishReply implements broker.Cluster.
func (n *Node) PublishReply(vhost, key string, m *broker.Message) error {
	return n.router.PublishReply(vhost, key, m)
}

// SessionNode implements broker.ClusterSessions: the node's name in the
// resume-tokens it issues, new for every process.
func (n *Node) SessionNode() string { return n.router.SessionNode() }

// FetchSession implements broker.ClusterSessions.
func (n *Node) FetchSession(ctx context.Context, node string, req broker.SessionRequest) (*broker.SessionState, error) {
	return n.router.FetchSession(ctx, node, req)
}
