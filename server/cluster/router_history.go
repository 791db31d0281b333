package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/stompbox/stompbox/broker"
)

// Topic history across nodes (broker.ClusterHistory, docs/cluster.md
// "Topic history"). Each history rule of each virtual host is one
// JetStream stream, <PREFIX>_H_<vhost token>_<rule id> (the rule id a hash
// of its pattern, subjects.go), with limits retention: per subject (per
// topic) the rule's size, no message older than its max_age, the oldest
// discarded first, so a publish is never refused for being full. A topic's
// messages are stored on historySubject, so the topic comes back from the
// subject alone.
//
// PublishHistory stores a message as PublishQueue does (router_queues.go:
// async publish, the same pending and PubAck handling). Every node, the
// publishing one included, learns of it only through its mirror: one
// goroutine per (vhost, rule) that makes sure the stream exists, tells the
// sink the stream's epoch (its creation time) and last sequence, and then
// reads the stream in order from where the sink says, handing it each
// message. Whatever goes wrong (NATS down, the stream deleted, a message
// lost between the server and this node) ends the mirror's session; the
// next one starts over with Start, which on the same epoch continues where
// the sink is, and on a new one (the stream was made again) starts anew.
//
// The mirror reads through an ephemeral AckNone consumer of its own and
// checks the consumer sequence itself, as jetstream's ordered consumer
// does, rather than using that ordered consumer: the ordered consumer
// silently recreates its consumer after a reconnect or a deleted
// consumer, which after the stream was deleted and made again would carry
// on in the new stream from the old stream's position, under the old
// epoch. Here every new consumer comes with a new Start, and the consumer
// is known to read the stream incarnation whose epoch Start was given.

const (
	// historyFetchBatch and historyFetchBytes bound one pull of a mirror
	// (and so what it holds in memory at once): messages and bytes; the
	// byte bound is raised to what one message may take (the server's
	// max payload) so a big message cannot wedge the mirror.
	historyFetchBatch = 256
	historyFetchBytes = 8 << 20
	// historyFetchWait bounds one pull's wait for messages, and so how
	// long a mirror runs on after close.
	historyFetchWait = time.Second
	// historyConsumerInactive removes a mirror's consumer that nobody pulls
	// from any more (its node died), long after a pull's wait.
	historyConsumerInactive = 30 * time.Second
	// historyDeleteWait bounds the deletion of a mirror's consumer when
	// its session ends.
	historyDeleteWait = time.Second
)

// errEpochMoved ends a mirror's session whose consumer was made while the
// stream was made anew: it may read either incarnation.
var errEpochMoved = errors.New("cluster: history stream made anew while the mirror started")

// errHistoryGap ends a mirror's session that missed a message of its
// consumer (lost between the server and this node).
var errHistoryGap = errors.New("cluster: history consumer skipped a message")

// historyKey names one mirror.
type historyKey struct {
	vhost string
	rule  int
}

// historyState is the router's history side.
type historyState struct {
	mu      sync.Mutex                    // leaf, but for queueState.mu taken under it in KeepHistory
	mirrors map[historyKey]*historyMirror // guarded by mu
	met     historyMetrics
}

// historyMetrics are the mirrors' collectors.
type historyMetrics struct {
	mirrored     prometheus.Counter
	decodeErrors prometheus.Counter
	missed       prometheus.Counter
}

// init makes the state's maps and collectors; lag is the lag gauge's
// function.
func (h *historyState) init(reg prometheus.Registerer, lag func() float64) {
	h.mirrors = make(map[historyKey]*historyMirror)
	h.met = historyMetrics{
		mirrored: prometheus.NewCounter(prometheus.CounterOpts{Name: "stompbox_cluster_history_mirrored_total",
			Help: "Topic history messages mirrored from the cluster into this node's histories."}),
		decodeErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "stompbox_cluster_history_decode_errors_total",
			Help: "Messages of topic history streams that did not decode and were skipped."}),
		missed: prometheus.NewCounter(prometheus.CounterOpts{Name: "stompbox_cluster_history_missed_total",
			Help: "Messages stored in a topic history stream after this node's mirror had caught up that the stream dropped before the mirror read them (this node's subscribers did not get them live)."}),
	}
	if reg != nil {
		reg.MustRegister(h.met.mirrored, h.met.decodeErrors, h.met.missed, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "stompbox_cluster_history_lag",
			Help: "Messages of the topic history streams not mirrored into this node yet (last known stream sequence minus last mirrored, summed over every history)."},
			lag))
	}
}

// historyMirror mirrors one rule's history stream of one vhost into its
// sink, from its own goroutine (run).
type historyMirror struct {
	r      *router
	key    historyKey
	spec   broker.HistoryRule // immutable
	base   string             // immutable: historyBase of the rule
	ruleID string             // immutable: historyRuleID of spec.Pattern
	vs     *vhostStream       // immutable pointer; its fields guarded by queueState.mu
	sink   broker.HistorySink // called from run only

	// Progress, written by run, read by ready and the lag gauge.
	started  atomic.Bool   // Start was called at least once
	caughtUp atomic.Bool   // delivered up to the last of the latest Start
	last     atomic.Uint64 // last of the latest Start
	done     atomic.Uint64 // the last sequence read (delivered or skipped)
	known    atomic.Uint64 // the last stream sequence known to exist
	// inflight counts this node's publishes to the stream awaiting their
	// outcome (historyDone).
	inflight atomic.Int64
}

// backlogLimit is how far this node's publishes may run ahead of its
// mirror (stored or in flight, not read yet): half the rule's per-topic
// size. The stream keeps size messages per topic, so a mirror more than
// that behind would find a burst to one topic dropped before it read it;
// the other half is left for the other nodes' publishers.
func (m *historyMirror) backlogLimit() int64 { return max(1, int64(m.spec.Size)/2) }

// backlog is how many messages this node's mirror has yet to read that it
// knows of: stored ones, and this node's publishes in flight.
func (m *historyMirror) backlog() int64 {
	n := m.inflight.Load()
	if k, d := m.known.Load(), m.done.Load(); k > d {
		n += int64(k - d)
	}
	return n
}

// historyDone counts a publish's outcome out of its mirror's in-flight
// publishes before the broker hears it.
type historyDone struct {
	m    *historyMirror
	done broker.ClusterDone
}

// ClusterDone implements broker.ClusterDone.
func (d historyDone) ClusterDone(err error) {
	d.m.inflight.Add(-1)
	d.done.ClusterDone(err)
}

// KeepHistory implements broker.ClusterHistory: it starts the mirror's
// goroutine and returns at once. A second call for the same vhost and rule
// is ignored (logged).
func (r *router) KeepHistory(vhost string, rule int, spec broker.HistoryRule, sink broker.HistorySink) {
	h := &r.history
	key := historyKey{vhost, rule}
	id := historyRuleID(spec.Pattern)
	m := &historyMirror{r: r, key: key, spec: spec, ruleID: id, sink: sink,
		base: historyBase(r.cfg.Prefix, vhost, id)}
	name := historyStreamName(r.cfg.Prefix, vhost, id)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.mirrors[key] != nil {
		r.log.Warn("history: rule kept already; ignored", "vhost", vhost, "rule", rule, "pattern", spec.Pattern)
		return
	}
	q := &r.queues
	q.mu.Lock()
	if q.closing {
		q.mu.Unlock()
		return
	}
	// Two rules of one pattern (the second never matches) share a stream.
	vs := q.hist[name]
	if vs == nil {
		vs = &vhostStream{vhost: vhost, name: name, subjects: historyStreamSubjects(r.cfg.Prefix, vhost, id)}
		vs.ensure = func(ctx context.Context) error { return r.ensureHistoryStream(ctx, vs.name, vs.subjects, spec) }
		q.hist[name] = vs
	}
	m.vs = vs
	r.wg.Add(1)
	q.mu.Unlock()
	h.mirrors[key] = m
	go m.run()
}

// PublishHistory implements broker.ClusterHistory; it never blocks on the
// network.
func (r *router) PublishHistory(vhost, topic string, rule int, m *broker.Message, done broker.ClusterDone) error {
	r.history.mu.Lock()
	hm := r.history.mirrors[historyKey{vhost, rule}]
	r.history.mu.Unlock()
	if hm == nil {
		return unavailable("publish history", fmt.Errorf("no history kept for rule %d of vhost %q", rule, vhost))
	}
	q := &r.queues
	if !r.nc.IsConnected() {
		r.met.publishFailed.WithLabelValues(reasonDisconnected).Inc()
		return unavailable("publish history", nats.ErrDisconnected)
	}
	if b := hm.backlog(); b >= hm.backlogLimit() {
		// Flow control: the broker holds the SEND and retries it, so the
		// mirrors are not overrun (backlogLimit).
		r.met.publishFailed.WithLabelValues(reasonMirrorBehind).Inc()
		return fmt.Errorf("cluster: publish history: %w: this node's mirror of %s has %d messages to read (limit %d)",
			broker.ErrClusterFull, hm.spec.Pattern, b, hm.backlogLimit())
	}
	if q.inflight.Add(1) > maxInflight {
		q.inflight.Add(-1)
		r.met.publishFailed.WithLabelValues(reasonTooMany).Inc()
		return unavailable("publish history", fmt.Errorf("%d messages await a PubAck", maxInflight))
	}
	id := m.ID
	if m.DedupeID != "" {
		id = m.DedupeID // a keyed SEND: a repeat on any node is stored once
	}
	msg := &nats.Msg{
		Subject: historySubject(r.cfg.Prefix, vhost, hm.ruleID, topic),
		Data:    encodeMessage(m),
		Header:  nats.Header{jetstream.MsgIDHeader: []string{id}},
	}
	hm.inflight.Add(1)
	p := &pendingPub{msg: msg, done: historyDone{hm, done}, start: time.Now(), dedupe: m.DedupeID != "", hist: hm}
	err := r.dispatch(p, "publish history", func() *vhostStream { return hm.vs })
	if err != nil {
		hm.inflight.Add(-1) // done is never called
	}
	return err
}

// historyPubErr is the error a history publish reports for werr: always
// unavailable (the contract of broker.ClusterHistory). A refusal for the
// stream's limits, which discarding old messages leaves only for a message
// too big to store, becomes unavailable too: not flow control, as waiting
// would not make room for it.
func historyPubErr(werr error) error {
	if errors.Is(werr, broker.ErrClusterUnavailable) {
		return werr
	}
	return fmt.Errorf("cluster: publish history: %w: %v", broker.ErrClusterUnavailable, werr)
}

// ensureHistoryStream creates a rule's history stream or brings an existing
// one to this node's limits (its replica count stays what it is, as for
// the queue streams).
func (r *router) ensureHistoryStream(ctx context.Context, name, subjects string, spec broker.HistoryRule) error {
	dup := r.dedupeWindow()
	if spec.MaxAge > 0 && dup > spec.MaxAge {
		dup = spec.MaxAge // JetStream's rule: the window fits in the max age
	}
	cfg := jetstream.StreamConfig{
		Name:              name,
		Subjects:          []string{subjects},
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		Storage:           jetstream.FileStorage,
		Replicas:          r.replicas(),
		Duplicates:        dup,
		MaxMsgs:           -1,
		MaxBytes:          -1,
		MaxMsgsPerSubject: -1,
		MaxAge:            max(spec.MaxAge, 0),
	}
	if spec.Size > 0 {
		cfg.MaxMsgsPerSubject = int64(spec.Size)
	}
	if r.cfg.MaxHistoryBytes > 0 {
		cfg.MaxBytes = r.cfg.MaxHistoryBytes
	}
	if err := r.createOrUpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("cluster: history stream %s: %w", name, err)
	}
	return nil
}

// historyEpoch is the epoch of a stream created at created: the lowercase
// hex of its Unix nanoseconds (at most 16 digits).
func historyEpoch(created time.Time) (string, error) {
	ns := created.UnixNano()
	if created.IsZero() || ns <= 0 {
		return "", fmt.Errorf("cluster: history stream reports creation time %v", created)
	}
	return strconv.FormatUint(uint64(ns), 16), nil
}

// historyReady says which history has not caught up yet with the stream
// as its latest Start found it, or nil.
func (r *router) historyReady() error {
	h := &r.history
	h.mu.Lock()
	defer h.mu.Unlock()
	var errs []error
	for _, m := range h.mirrors {
		if err := m.readyErr(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// readyErr is why m is not caught up, or nil.
func (m *historyMirror) readyErr() error {
	switch {
	case !m.started.Load():
		return fmt.Errorf("cluster: topic history %s of vhost %q: not mirrored yet", m.spec.Pattern, m.key.vhost)
	case !m.caughtUp.Load():
		return fmt.Errorf("cluster: topic history %s of vhost %q: catching up, at %d of %d",
			m.spec.Pattern, m.key.vhost, m.done.Load(), m.last.Load())
	}
	return nil
}

// historyLag sums every mirror's lag (the lag gauge).
func (r *router) historyLag() float64 {
	h := &r.history
	h.mu.Lock()
	defer h.mu.Unlock()
	var sum uint64
	for _, m := range h.mirrors {
		if k, d := m.known.Load(), m.done.Load(); k > d {
			sum += k - d
		}
	}
	return float64(sum)
}
