package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stompbox/stompbox/broker"
)

// Queues live in one JetStream work-queue stream per virtual host
// (<PREFIX>_Q_<vhost>, subjects <prefix>.q.<vhost>.>), made on first use.
//
// PublishQueue never waits for the network: it hands the message to
// jetstream's async publisher (PublishMsgAsync, which only writes to the
// connection's buffer; its pending cap sits above maxInflight so it never
// stalls) and the router's ack and error handlers settle the ClusterDone
// from the connection's goroutines. A publish's message pointer keys it
// in queueState.pending until then. Until a vhost's stream is known to
// exist its publishes wait, in order, in vhostStream.queued while one
// goroutine creates the stream and then sends them; a connection's
// publishes therefore reach NATS in the order it made them.

// Duplicates is the queue streams' window for Nats-Msg-Id (the message id):
// a publish retried within it is stored once.
const queueDuplicates = 2 * time.Minute

const (
	// JetStream's "store failed" error: with DiscardNew it carries the
	// limit that refused the message ("maximum messages per subject
	// exceeded", "maximum bytes exceeded", ...).
	jsErrStoreFailed jetstream.ErrorCode = 10077
)

// Stream states.
const (
	streamUnknown  = iota // not known to exist: the next publish makes it
	streamEnsuring        // a goroutine is making it; publishes queue
	streamReady           // exists (as far as we know): publish directly
)

// vhostStream is one virtual host's queue stream, or one history rule's
// stream (router_history.go); guarded by queueState.mu.
type vhostStream struct {
	vhost, name, subjects string
	state                 int
	queued                []*pendingPub
	// ensure makes a history stream (immutable); nil: the vhost's queue
	// stream (ensureStream). Set, the stream is a history's, whose
	// publishes fail only as unavailable (historyPubErr).
	ensure func(ctx context.Context) error
}

// pendingPub is one PublishQueue awaiting its outcome.
type pendingPub struct {
	msg     *nats.Msg
	done    broker.ClusterDone
	start   time.Time
	vs      *vhostStream
	settled atomic.Bool // done was called (or PublishQueue returned its error)
	// dedupe: the message id is an idempotency key's (Message.DedupeID).
	dedupe bool
	// hist is the mirror of the history stream a history publish goes
	// to (nil for a queue's): its PubAck tells the mirror how far the
	// stream is.
	hist *historyMirror
}

// claim makes the caller the one that reports p's outcome.
func (p *pendingPub) claim() bool { return p.settled.CompareAndSwap(false, true) }

// queueState is the router's queue side.
type queueState struct {
	mu      sync.Mutex
	closing bool                      // guarded by mu: no more goroutines
	streams map[string]*vhostStream   // by vhost; guarded by mu
	hist    map[string]*vhostStream   // history streams, by stream name; guarded by mu
	feeds   map[*queueFeed]struct{}   // running feeds; guarded by mu
	pmu     sync.Mutex                // guards pending (taken on every publish and PubAck)
	pending map[*nats.Msg]*pendingPub // sent, awaiting a PubAck
	// inflight counts publishes from PublishQueue to done: queued,
	// pending, or settling.
	inflight atomic.Int64
	replicas atomic.Int32 // computed stream replicas; 0 until known
	// held are the messages fed to the broker and not settled yet, of
	// every feed, running or stopped: the broker settles each one even
	// after its feed stopped (a parked session's, an outbox's backlog),
	// and keepAlive keeps them from JetStream's AckWait until then.
	hmu  sync.Mutex
	held map[*settler]struct{} // guarded by hmu
}

func (q *queueState) init() {
	q.streams = make(map[string]*vhostStream)
	q.hist = make(map[string]*vhostStream)
	q.feeds = make(map[*queueFeed]struct{})
	q.pending = make(map[*nats.Msg]*pendingPub)
	q.held = make(map[*settler]struct{})
}

// streamLocked returns vhost's stream state; q.mu held.
func (r *router) streamLocked(vhost string) *vhostStream {
	vs := r.queues.streams[vhost]
	if vs == nil {
		vs = &vhostStream{vhost: vhost, name: queueStreamName(r.cfg.Prefix, vhost),
			subjects: queueStreamSubjects(r.cfg.Prefix, vhost)}
		r.queues.streams[vhost] = vs
	}
	return vs
}

// dedupeWindow is the queue streams' Duplicates window.
func (r *router) dedupeWindow() time.Duration {
	if r.cfg.DedupeWindow > 0 {
		return r.cfg.DedupeWindow
	}
	return queueDuplicates
}

// PublishQueue implements broker.Cluster; it never blocks on the network.
func (r *router) PublishQueue(vhost, queue string, m *broker.Message, done broker.ClusterDone) error {
	q := &r.queues
	if !r.nc.IsConnected() {
		r.met.publishFailed.WithLabelValues(reasonDisconnected).Inc()
		return unavailable("publish queue", nats.ErrDisconnected)
	}
	if q.inflight.Add(1) > maxInflight {
		// JetStream is not keeping up: flow control (the broker holds the
		// SEND and retries it under full_policy block), not a failure.
		q.inflight.Add(-1)
		r.met.publishFailed.WithLabelValues(reasonTooMany).Inc()
		return fmt.Errorf("cluster: publish queue: %w: %d messages await a PubAck", broker.ErrClusterFull, maxInflight)
	}
	id := m.ID
	if m.DedupeID != "" {
		id = m.DedupeID // a keyed SEND: a repeat on any node is stored once
	}
	if !strings.HasPrefix(queue, queuePrefix) {
		// A topic message's copies for several durable subscriptions share
		// its id: each is its own message in the stream's dedupe window.
		id += " " + queue
	}
	msg := &nats.Msg{
		Subject: queueSubject(r.cfg.Prefix, vhost, queue),
		Data:    encodeMessage(m),
		Header:  nats.Header{jetstream.MsgIDHeader: []string{id}},
	}
	p := &pendingPub{msg: msg, done: done, start: time.Now(), dedupe: m.DedupeID != ""}
	return r.dispatch(p, "publish queue", func() *vhostStream { return r.streamLocked(vhost) })
}

// dispatch sends p (counted in inflight already) to the stream streamOf
// returns (called under q.mu), or queues it behind the making of that
// stream; what names the operation in errors.
func (r *router) dispatch(p *pendingPub, what string, streamOf func() *vhostStream) error {
	q := &r.queues
	q.mu.Lock()
	if q.closing {
		q.mu.Unlock()
		q.inflight.Add(-1)
		return unavailable(what, errRouterClosed)
	}
	vs := streamOf()
	p.vs = vs
	if vs.state != streamReady {
		vs.queued = append(vs.queued, p)
		if vs.state == streamUnknown {
			vs.state = streamEnsuring
			r.wg.Add(1)
			go r.ensureAndFlush(vs)
		}
		q.mu.Unlock()
		return nil
	}
	q.mu.Unlock()
	if err := r.send(p); err != nil {
		if p.claim() {
			r.forget(p)
			q.inflight.Add(-1)
			reason, werr := classifyPubErr(err)
			r.met.publishFailed.WithLabelValues(reason).Inc()
			return p.outcome(werr)
		}
	}
	return nil
}

// outcome is the error p's producer is told for werr (classifyPubErr's):
// a history publish fails only as unavailable (broker.ClusterHistory), as
// its stream, discarding old messages, is never full.
func (p *pendingPub) outcome(werr error) error {
	if p.vs != nil && p.vs.ensure != nil {
		return historyPubErr(werr)
	}
	return werr
}

// send hands p to the async publisher, registered for its outcome first.
func (r *router) send(p *pendingPub) error {
	q := &r.queues
	q.pmu.Lock()
	q.pending[p.msg] = p
	q.pmu.Unlock()
	_, err := r.pub.PublishMsgAsync(p.msg)
	return err
}

// forget removes p from the pending publishes.
func (r *router) forget(p *pendingPub) {
	q := &r.queues
	q.pmu.Lock()
	if q.pending[p.msg] == p {
		delete(q.pending, p.msg)
	}
	q.pmu.Unlock()
}

// take removes and returns the pending publish of msg.
func (r *router) take(msg *nats.Msg) *pendingPub {
	q := &r.queues
	q.pmu.Lock()
	p := q.pending[msg]
	delete(q.pending, msg)
	q.pmu.Unlock()
	return p
}

// finish reports p's outcome once (err nil: stored).
func (r *router) finish(p *pendingPub, err error) {
	if !p.claim() {
		return
	}
	r.forget(p)
	r.queues.inflight.Add(-1)
	if err == nil {
		r.met.publishSeconds.Observe(time.Since(p.start).Seconds())
		p.done.ClusterDone(nil)
		return
	}
	reason, werr := classifyPubErr(err)
	r.met.publishFailed.WithLabelValues(reason).Inc()
	if reason == reasonNoStream {
		r.streamGone(p.vs)
	}
	p.done.ClusterDone(p.outcome(werr))
}

// onPubAck is the async publisher's PubAck handler.
func (r *router) onPubAck(_ jetstream.JetStream, msg *nats.Msg, ack *jetstream.PubAck) {
	if p := r.take(msg); p != nil {
		if p.hist != nil && ack != nil {
			for k := p.hist.known.Load(); ack.Sequence > k && !p.hist.known.CompareAndSwap(k, ack.Sequence); k = p.hist.known.Load() {
			}
		}
		if ack != nil && ack.Duplicate && p.keyed() {
			r.finishDuplicate(p)
			return
		}
		r.finish(p, nil)
	}
}

// keyed reports whether p carries an idempotency key's id (not its own
// message-id, whose repeat is a resend of the same SEND after a lost
// PubAck: stored, as far as its producer is concerned).
func (p *pendingPub) keyed() bool { return p.dedupe }

// finishDuplicate reports p as a duplicate the stream did not store again.
func (r *router) finishDuplicate(p *pendingPub) {
	if !p.claim() {
		return
	}
	r.forget(p)
	r.queues.inflight.Add(-1)
	r.met.publishSeconds.Observe(time.Since(p.start).Seconds())
	p.done.ClusterDone(broker.ErrClusterDuplicate)
}

// onPubErr is the async publisher's error handler: an error PubAck, a
// timeout, a disconnection, or the publisher's cleanup at close.
func (r *router) onPubErr(_ jetstream.JetStream, msg *nats.Msg, err error) {
	if p := r.take(msg); p != nil {
		r.finish(p, err)
	}
}

// classifyPubErr names a publish failure (a bounded metric label) and
// wraps it as the broker expects: ErrClusterFull for the stream's limits,
// ErrClusterUnavailable for everything else.
func classifyPubErr(err error) (string, error) {
	if errors.Is(err, broker.ErrClusterUnavailable) || errors.Is(err, broker.ErrClusterFull) {
		return reasonError, err
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jsErrStoreFailed && strings.Contains(apiErr.Description, "maximum") ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum) {
		return reasonFull, fmt.Errorf("cluster: publish queue: %w: %w", broker.ErrClusterFull, err)
	}
	reason := reasonError
	switch {
	case errors.Is(err, jetstream.ErrAsyncPublishTimeout):
		reason = reasonTimeout
	case errors.Is(err, nats.ErrDisconnected), errors.Is(err, nats.ErrReconnectBufExceeded),
		errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, jetstream.ErrJetStreamPublisherClosed),
		errors.Is(err, errRouterClosed):
		reason = reasonDisconnected
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders),
		errors.Is(err, jetstream.ErrStreamNotFound):
		reason = reasonNoStream
	}
	return reason, unavailable("publish queue", err)
}

// streamGone makes the next publish to vs's vhost check its stream again.
func (r *router) streamGone(vs *vhostStream) {
	if vs == nil {
		return
	}
	r.queues.mu.Lock()
	if vs.state == streamReady {
		vs.state = streamUnknown
	}
	r.queues.mu.Unlock()
}

// ensureAndFlush makes vs's stream, then sends the publishes that waited
// for it (or fails them), in order.
func (r *router) ensureAndFlush(vs *vhostStream) {
	defer r.wg.Done()
	ctx, cancel := context.WithTimeout(r.ctx, r.cfg.PublishTimeout)
	var err error
	if vs.ensure != nil {
		err = vs.ensure(ctx)
	} else {
		err = r.ensureStream(ctx, vs.name, vs.subjects)
	}
	cancel()
	if err != nil {
		r.log.Warn("queue stream unavailable", "stream", vs.name, "err", err)
		err = fmt.Errorf("%w: %w", jetstream.ErrStreamNotFound, err)
	}
	q := &r.queues
	for {
		// Batches are sent outside q.mu (a send may write to the socket,
		// and ConsumeQueue takes q.mu under a broker lock); publishes
		// arriving meanwhile still see the stream not ready and queue
		// behind, for the next batch, so their order holds.
		q.mu.Lock()
		batch := vs.queued
		vs.queued = nil
		switch {
		case err != nil:
			vs.state = streamUnknown
		case len(batch) == 0:
			vs.state = streamReady
		}
		q.mu.Unlock()
		if len(batch) == 0 {
			return
		}
		for _, p := range batch {
			if err != nil {
				r.finish(p, err)
				continue
			}
			if serr := r.send(p); serr != nil {
				r.finish(p, serr)
			}
		}
		if err != nil {
			return
		}
	}
}

// ensureStream creates a queue stream or brings an existing one to this
// node's limits (its replica count stays what it is: nodes that count
// servers differently must not scale it up and down).
func (r *router) ensureStream(ctx context.Context, name, subjects string) error {
	cfg := jetstream.StreamConfig{
		Name:       name,
		Subjects:   []string{subjects},
		Retention:  jetstream.WorkQueuePolicy,
		Storage:    jetstream.FileStorage,
		Replicas:   r.replicas(),
		Discard:    jetstream.DiscardNew,
		Duplicates: r.dedupeWindow(),
		MaxBytes:   -1,
		MaxMsgs:    -1,
		MaxAge:     0,
	}
	cfg.MaxMsgsPerSubject = -1
	if r.cfg.MaxQueueMessages > 0 {
		cfg.MaxMsgsPerSubject = int64(r.cfg.MaxQueueMessages)
		cfg.DiscardNewPerSubject = true
	}
	if r.cfg.MaxQueueBytes > 0 {
		cfg.MaxBytes = r.cfg.MaxQueueBytes
	}
	if err := r.createOrUpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("cluster: stream %s: %w", name, err)
	}
	return nil
}

// replicas is the queue streams' replica count: the configured one, else 3
// when this node's NATS server is part of a cluster that advertises at
// least 3 servers to clients, else 1.
func (r *router) replicas() int {
	if r.cfg.Replicas > 0 {
		return r.cfg.Replicas
	}
	if n := r.queues.replicas.Load(); n > 0 {
		return int(n)
	}
	if !r.nc.IsConnected() {
		return 1 // no stream can be made now anyway; count again later
	}
	n := 1
	if r.nc.ConnectedClusterName() != "" && len(r.nc.Servers()) >= 3 {
		n = 3
	}
	r.queues.replicas.Store(int32(n))
	return n
}

// closeAll stops every feed and fails the publishes still waiting for a
// stream; the async publisher's pending ones fail in close (its cleanup
// calls onPubErr).
func (q *queueState) closeAll(r *router) {
	q.mu.Lock()
	q.closing = true
	var failed []*pendingPub
	for _, vs := range q.streams {
		failed = append(failed, vs.queued...)
		vs.queued = nil
	}
	for _, vs := range q.hist {
		failed = append(failed, vs.queued...)
		vs.queued = nil
	}
	feeds := make([]*queueFeed, 0, len(q.feeds))
	for f := range q.feeds {
		feeds = append(feeds, f)
	}
	q.mu.Unlock()
	for _, f := range feeds {
		f.Stop()
	}
	for _, p := range failed {
		r.finish(p, errRouterClosed)
	}
}

// createOrUpdateStream creates the stream cfg describes or brings an
// existing one to it, keeping the replica count it has (changing it is an
// operator's decision, not a node's).
func (r *router) createOrUpdateStream(ctx context.Context, cfg jetstream.StreamConfig) error {
	_, err := r.js.CreateStream(ctx, cfg)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		var s jetstream.Stream
		if s, err = r.js.Stream(ctx, cfg.Name); err == nil {
			cfg.Replicas = s.CachedInfo().Config.Replicas
			_, err = r.js.UpdateStream(ctx, cfg)
		}
	}
	return err
}
