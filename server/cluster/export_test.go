package cluster

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stompbox/stompbox/broker"
)

// CutNATS closes the node's NATS connection at once, as if the process
// died: nothing it does afterwards (no Nak, no Ack) reaches NATS.
func (n *Node) CutNATS() { n.link.nc.Close() }

// KnownDurables is how many registered durable subscriptions the node's
// watch has applied to its broker.
func (n *Node) KnownDurables() int { return n.router.knownDurables() }

// DurableBacklog is how many messages the cluster stores for durable
// subscription spec of vhost.
func (n *Node) DurableBacklog(ctx context.Context, vhost string, spec broker.DurableSpec) (uint64, error) {
	r := n.router
	subj := queueSubject(r.cfg.Prefix, vhost, broker.DurableQueueName(spec))
	s, err := r.js.Stream(ctx, queueStreamName(r.cfg.Prefix, vhost))
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subj))
	if err != nil {
		return 0, err
	}
	return info.State.Subjects[subj], nil
}
