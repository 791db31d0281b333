package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/stompbox/stompbox/broker"
)

// Durable subscriptions across nodes (docs/cluster.md "Durable
// subscriptions"). The registry is one JetStream KV bucket,
// <PREFIX>_DURABLES, replicated as the queue streams, with two keys per
// durable subscription:
//
//	s.<vhost>.<user>.<client-id>.<name>   its spec (durableValue)
//	h.<vhost>.<user>.<client-id>.<name>   its holder, while a node consumes it (holderValue)
//
// each part one KV token (presenceToken). A node creates the s key with
// KV Create (an existing key is the same durable subscription: attach to
// it) and deletes it to remove the durable subscription, whose backlog,
// the clustered queue broker.durableQueueName names, it then purges from
// the vhost's queue stream (with its shared consumer). Every node watches
// the bucket and hands the s keys to its broker
// (broker.Broker.ApplyRemoteDurable). The h key says which node consumes
// it: taken with Create (or Update of a stale one), refreshed every
// holdTTL/3 while held, deleted (at its own revision) when let go. A
// holder not refreshed for holdTTL (its node died or lost NATS) may be
// taken over by another node.

// durableValue is what an s key holds.
type durableValue struct {
	VHost    string    `json:"vhost"`
	User     string    `json:"user"`
	ClientID string    `json:"client_id"`
	Name     string    `json:"name"`
	Topic    string    `json:"topic"`
	Unowned  bool      `json:"unowned,omitempty"`
	Owner    string    `json:"owner"` // the node that created it
	Created  time.Time `json:"created"`
}

// holderValue is what an h key holds.
type holderValue struct {
	durableValue
	Node  string    `json:"node"`
	Since time.Time `json:"since"`
}

func (v durableValue) spec() broker.DurableSpec {
	return broker.DurableSpec{User: v.User, ClientID: v.ClientID, Name: v.Name, Topic: v.Topic, Unowned: v.Unowned}
}

// durableHold is this node's hold of one durable subscription.
type durableHold struct {
	n     int    // nested holds (HoldDurable calls not released)
	rev   uint64 // the h key's revision this node last wrote
	value []byte
}

// durableState is the router's side of the registry.
type durableState struct {
	mu      sync.Mutex                    // leaf: nothing is called under it
	kv      jetstream.KeyValue            // guarded by mu: the bucket once made
	holds   map[string]*durableHold       // guarded by mu: by h key
	release map[string]uint64             // guarded by mu: h keys to delete, at the revision
	wake    chan struct{}                 // capacity 1: releases wait
	known   map[string]broker.DurableSpec // written by the watcher only, under mu: s key -> spec applied
	vhosts  map[string]string             // the watcher's only: s key -> vhost
	hmu     sync.Mutex                    // serializes HoldDurable with the keeper's holder writes; before mu
	met     durableMetrics
}

// durableMetrics are the registry's collectors.
type durableMetrics struct {
	known   prometheus.Gauge
	refused prometheus.Counter
	failed  prometheus.Counter
}

func (d *durableState) init(reg prometheus.Registerer) {
	d.met = durableMetrics{
		known: prometheus.NewGauge(prometheus.GaugeOpts{Name: "stompbox_cluster_durables",
			Help: "Durable subscriptions of the cluster's registry this node's broker knows."}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{Name: "stompbox_cluster_durable_holds_refused_total",
			Help: "Durable subscription attachments refused because another node holds it."}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{Name: "stompbox_cluster_durable_holder_write_failures_total",
			Help: "Holder key writes (refresh or delete) that failed; the holder goes stale after the presence TTL."}),
	}
	if reg != nil {
		reg.MustRegister(d.met.known, d.met.refused, d.met.failed)
	}
	d.holds = make(map[string]*durableHold)
	d.release = make(map[string]uint64)
	d.wake = make(chan struct{}, 1)
	d.known = make(map[string]broker.DurableSpec)
	d.vhosts = make(map[string]string)
}

// durablesBucketName is <PREFIX>_DURABLES.
func durablesBucketName(prefix string) string {
	return sanitizeName(strings.ToUpper(prefix)) + "_DURABLES"
}

// durableKeyOf is the key (class "s" or "h") of spec in vhost.
func durableKeyOf(class, vhost string, spec broker.DurableSpec) string {
	b := make([]byte, 0, 16+2*(len(vhost)+len(spec.User)+len(spec.ClientID)+len(spec.Name)))
	b = append(b, class...)
	user := spec.User
	if spec.Unowned {
		user = "\x00unowned" // no user's name: an unowned one never meets an owned one
	}
	for _, s := range []string{vhost, user, spec.ClientID, spec.Name} {
		b = append(b, '.')
		b = presenceToken(b, s)
	}
	return string(b)
}

// holdTTL is how long a holder lives unrefreshed.
func (r *router) holdTTL() time.Duration { return r.presenceTTL() }

// durablesKV returns the bucket, made if need be.
func (r *router) durablesKV(ctx context.Context) (jetstream.KeyValue, error) {
	d := &r.durables
	d.mu.Lock()
	kv := d.kv
	d.mu.Unlock()
	if kv != nil {
		return kv, nil
	}
	cfg := jetstream.KeyValueConfig{
		Bucket: durablesBucketName(r.cfg.Prefix), History: 1,
		Storage: jetstream.FileStorage, Replicas: r.replicas(),
	}
	kv, err := r.js.CreateKeyValue(ctx, cfg)
	if errors.Is(err, jetstream.ErrBucketExists) {
		kv, err = r.js.KeyValue(ctx, cfg.Bucket)
	}
	if err != nil {
		return nil, unavailable("durables bucket", err)
	}
	d.mu.Lock()
	d.kv = kv
	d.mu.Unlock()
	return kv, nil
}

// CreateDurable implements broker.ClusterDurables.
func (r *router) CreateDurable(vhost string, spec broker.DurableSpec) (broker.DurableSpec, error) {
	ctx, cancel := context.WithTimeout(r.ctx, r.cfg.PublishTimeout)
	defer cancel()
	kv, err := r.durablesKV(ctx)
	if err != nil {
		return spec, err
	}
	v, err := json.Marshal(durableValue{VHost: vhost, User: spec.User, ClientID: spec.ClientID, Name: spec.Name,
		Topic: spec.Topic, Unowned: spec.Unowned, Owner: r.cfg.Node, Created: time.Now()})
	if err != nil {
		return spec, fmt.Errorf("cluster: durable: %w", err)
	}
	key := durableKeyOf("s", vhost, spec)
	if _, err = kv.Create(ctx, key, v); errors.Is(err, jetstream.ErrKeyExists) {
		e, gerr := kv.Get(ctx, key)
		if gerr != nil {
			return spec, unavailable("durable lookup", gerr)
		}
		var old durableValue
		if jerr := json.Unmarshal(e.Value(), &old); jerr != nil {
			return spec, fmt.Errorf("cluster: durable %s: %w", key, jerr)
		}
		return old.spec(), fmt.Errorf("cluster: %w", broker.ErrDurableExists)
	}
	if err != nil {
		return spec, unavailable("durable create", err)
	}
	// A new one starts empty: copies stored for an earlier one of the same
	// name by a node that had not yet seen its removal go.
	return spec, r.purgeDurable(ctx, vhost, spec)
}

// RemoveDurable implements broker.ClusterDurables: the registry first (no
// node stores copies for it once it saw that), then its backlog.
func (r *router) RemoveDurable(vhost string, spec broker.DurableSpec) error {
	ctx, cancel := context.WithTimeout(r.ctx, r.cfg.PublishTimeout)
	defer cancel()
	kv, err := r.durablesKV(ctx)
	if err != nil {
		return err
	}
	if err := kv.Delete(ctx, durableKeyOf("s", vhost, spec)); err != nil {
		return unavailable("durable delete", err)
	}
	return r.purgeDurable(ctx, vhost, spec)
}

// purgeDurable drops the backlog of durable subscription spec and its
// shared consumer.
func (r *router) purgeDurable(ctx context.Context, vhost string, spec broker.DurableSpec) error {
	subj := queueSubject(r.cfg.Prefix, vhost, durableQueue(spec))
	s, err := r.js.Stream(ctx, queueStreamName(r.cfg.Prefix, vhost))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil // nothing stored yet
	}
	if err != nil {
		return unavailable("durable purge", err)
	}
	if err := s.Purge(ctx, jetstream.WithPurgeSubject(subj)); err != nil {
		return unavailable("durable purge", err)
	}
	err = s.DeleteConsumer(ctx, queueConsumerName(r.cfg.Prefix, vhost, subj))
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return unavailable("durable consumer delete", err)
	}
	return nil
}

// durableQueue is broker's durableQueueName of spec (the queue the broker
// asks the router to store its copies in).
func durableQueue(spec broker.DurableSpec) string {
	return broker.DurableQueueName(spec)
}

// HoldDurable implements broker.ClusterDurables.
func (r *router) HoldDurable(vhost string, spec broker.DurableSpec) error {
	d := &r.durables
	key := durableKeyOf("h", vhost, spec)
	d.hmu.Lock()
	defer d.hmu.Unlock()
	v, err := json.Marshal(holderValue{durableValue: durableValue{VHost: vhost, User: spec.User, ClientID: spec.ClientID,
		Name: spec.Name, Topic: spec.Topic, Unowned: spec.Unowned}, Node: r.cfg.Node, Since: time.Now()})
	if err != nil {
		return fmt.Errorf("cluster: holder: %w", err)
	}
	d.mu.Lock()
	if h := d.holds[key]; h != nil {
		h.n++
		d.mu.Unlock()
		return nil
	}
	if rev, released := d.release[key]; released {
		// Let go here and not deleted yet (the keeper deletes under hmu,
		// which this holds): the key is still this node's; keep it.
		delete(d.release, key)
		d.holds[key] = &durableHold{n: 1, rev: rev, value: v}
		d.mu.Unlock()
		return nil
	}
	d.mu.Unlock()
	ctx, cancel := context.WithTimeout(r.ctx, r.cfg.PublishTimeout)
	defer cancel()
	kv, err := r.durablesKV(ctx)
	if err != nil {
		return err
	}
	rev, err := r.takeHolder(ctx, kv, key, v)
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.holds[key] = &durableHold{n: 1, rev: rev, value: v}
	d.mu.Unlock()
	return nil
}

// takeHolder writes this node's holder value v at key: a new key, or
// over this node's own (a release not made yet) or a stale one. A key
// deleted between the attempts is tried again, a bounded number of times.
func (r *router) takeHolder(ctx context.Context, kv jetstream.KeyValue, key string, v []byte) (uint64, error) {
	const attempts = 3
	var err error
	for range attempts {
		var rev uint64
		if rev, err = kv.Create(ctx, key, v); err == nil {
			return rev, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			break
		}
		e, gerr := kv.Get(ctx, key)
		if errors.Is(gerr, jetstream.ErrKeyNotFound) || errors.Is(gerr, jetstream.ErrKeyDeleted) {
			continue // let go meanwhile
		}
		if gerr != nil {
			return 0, unavailable("holder lookup", gerr)
		}
		var old holderValue
		_ = json.Unmarshal(e.Value(), &old) // unreadable: taken over once stale
		if old.Node != r.cfg.Node && time.Since(e.Created()) <= r.holdTTL() {
			r.durables.met.refused.Inc()
			return 0, fmt.Errorf("cluster: node %q: %w", old.Node, broker.ErrDurableHeld)
		}
		if rev, err = kv.Update(ctx, key, v, e.Revision()); err == nil {
			return rev, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			break
		}
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return 0, fmt.Errorf("cluster: taken meanwhile: %w", broker.ErrDurableHeld)
	}
	return 0, unavailable("holder", err)
}

// ReleaseDurable implements broker.ClusterDurables; the holder key is
// deleted by durableKeeper.
func (r *router) ReleaseDurable(vhost string, spec broker.DurableSpec) {
	d := &r.durables
	key := durableKeyOf("h", vhost, spec)
	d.mu.Lock()
	h := d.holds[key]
	if h == nil {
		d.mu.Unlock()
		return
	}
	if h.n--; h.n > 0 {
		d.mu.Unlock()
		return
	}
	delete(d.holds, key)
	d.release[key] = h.rev
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

var _ broker.ClusterDurables = (*router)(nil)
