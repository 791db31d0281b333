package cluster

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/stompbox/stompbox/broker"
)

// Presence across nodes (docs/cluster.md "Presence"). Every node writes
// the members it holds into one JetStream KV bucket, <PREFIX>_PRESENCE,
// one key per member and node:
//
//	<vhost>.<set segment>...<user>.<presence-id>.<node>
//
// each part escaped as a KV key token (presenceToken), with a JSON value
// (presenceValue). The bucket keeps one revision per key and drops keys
// older than Config.PresenceTTL; a node puts a key when it starts holding
// a member, puts it again every PresenceTTL/3 while it holds it, and
// deletes it when it lets the member go. Every node watches the whole
// bucket and hands what the others hold to its broker
// (broker.Broker.ApplyRemotePresence), which merges it into its sets. A
// key not refreshed for PresenceTTL is dropped by each watching node
// itself (a dead node cannot delete its keys, and the bucket's expiry is
// not reported to watchers), so a dead node's members leave within
// PresenceTTL plus one sweep.

const (
	defaultPresenceTTL = 30 * time.Second
	// maxPresenceKey bounds a readable key; a longer one is its virtual
	// host, a hash of the rest and its node (NATS limits subject length).
	maxPresenceKey = 512
	// maxPresencePending bounds the writes waiting for NATS. Puts are for
	// members this node holds (bounded by the broker); a delete past the
	// bound is dropped instead: the key it was for ages out within the
	// TTL, as a dead node's do.
	maxPresencePending = 1 << 16
	// presenceEscape starts an escaped token: "~" (subjects.go) is not
	// allowed in KV keys, "=" is, and "=" is never in a plain token.
	presenceEscape = '='
)

// presenceValue is what a key holds: everything the key names, so a
// watcher never parses keys, plus since, when the node began to hold it.
type presenceValue struct {
	VHost string    `json:"vhost"`
	Set   string    `json:"set"`
	User  string    `json:"user"`
	ID    string    `json:"id"`
	Info  string    `json:"info"`
	Node  string    `json:"node"`
	Since time.Time `json:"since"`
	// Instance names the process that wrote it: two processes with the
	// same cluster.node (a misconfiguration) or a restarted node can be
	// told apart from this one.
	Instance string `json:"instance"`
}

// remotePresence is a key another node wrote and this node's broker holds.
type remotePresence struct {
	vhost, set, node string
	m                broker.PresenceMember
	seen             time.Time // the last put or refresh this node saw
}

// localPresence is a member this node holds.
type localPresence struct {
	since time.Time
	value []byte
}

// presenceState is the router's side of presence sharing.
type presenceState struct {
	// mu is a leaf lock: PresenceChanged takes it under the broker's
	// presenceSpace.mu, and nothing is called while it is held.
	mu     sync.Mutex
	local  map[string]localPresence   // guarded by mu: what this node holds, by key (refreshed)
	ops    map[string][]byte          // guarded by mu: writes not yet made, by key: a value to put, nil to delete
	kv     jetstream.KeyValue         // guarded by mu: the bucket once made, nil before
	wake   chan struct{}              // capacity 1: ops are waiting
	remote map[string]*remotePresence // the watcher goroutine's only: what the broker holds of other nodes, by key
	met    presenceMetrics
	// instance (immutable) is this process's random id, and started
	// (immutable) when its router began: a key of this node's name from
	// another instance written before started is an earlier run's.
	instance string
	started  time.Time
	// twinWarned (watcher goroutine only) says the error about another
	// live process with this node's name was logged.
	twinWarned bool
}

// presenceMetrics are the presence collectors of the router.
type presenceMetrics struct {
	remote  prometheus.Gauge
	expired prometheus.Counter
	failed  prometheus.Counter
}

func (p *presenceState) init(reg prometheus.Registerer) {
	p.local = make(map[string]localPresence)
	p.ops = make(map[string][]byte)
	p.wake = make(chan struct{}, 1)
	p.remote = make(map[string]*remotePresence)
	var id [8]byte
	_, _ = rand.Read(id[:]) // crypto/rand never fails on supported platforms
	p.instance, p.started = hex.EncodeToString(id[:]), time.Now()
	p.met = presenceMetrics{
		remote: prometheus.NewGauge(prometheus.GaugeOpts{Name: "stompbox_cluster_presence_remote_members",
			Help: "Presence members other nodes hold that this node's broker holds too (one per member and node)."}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{Name: "stompbox_cluster_presence_expired_total",
			Help: "Presence members of other nodes dropped because their node stopped refreshing them (presence TTL)."}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{Name: "stompbox_cluster_presence_write_failures_total",
			Help: "Writes of this node's presence members to the presence bucket that failed (retried)."}),
	}
	if reg != nil {
		reg.MustRegister(p.met.remote, p.met.expired, p.met.failed)
	}
}

// presenceTTL is the bucket's TTL: how long a key lives unrefreshed.
func (r *router) presenceTTL() time.Duration {
	if r.cfg.PresenceTTL > 0 {
		return r.cfg.PresenceTTL
	}
	return defaultPresenceTTL
}

// presenceBucketName is <PREFIX>_PRESENCE.
func presenceBucketName(prefix string) string {
	return sanitizeName(strings.ToUpper(prefix)) + "_PRESENCE"
}

// presenceToken is one KV key token for s: s itself when plain
// ([A-Za-z0-9_-]+), else "=" and the lowercase hex of its bytes (so "" is
// "="). Injective, and never a dot or a wildcard.
func presenceToken(b []byte, s string) []byte {
	if plainSegment(s) {
		return append(b, s...)
	}
	b = append(b, presenceEscape)
	return hex.AppendEncode(b, []byte(s))
}

// presenceKeyOf is the key of member m of set in vhost held by node. The
// set's segments are tokens of their own, and the vhost and the last
// three parts are one token each, so the key is injective.
func presenceKeyOf(vhost, set, node string, m broker.PresenceMember) string {
	b := make([]byte, 0, 64+2*(len(vhost)+len(set)+len(m.User)+len(m.ID)+len(node)))
	b = presenceToken(b, vhost)
	for seg := range strings.SplitSeq(set, ".") {
		b = append(b, '.')
		b = presenceToken(b, seg)
	}
	for _, s := range []string{m.User, m.ID} {
		b = append(b, '.')
		b = presenceToken(b, s)
	}
	if len(b) > maxPresenceKey {
		// "=h" is not the escape of anything ("h" is not hex): it cannot
		// collide with a readable key.
		sum := sha256.Sum256(b)
		b = append(presenceToken(b[:0], vhost), ".=h"...)
		b = hex.AppendEncode(b, sum[:])
	}
	b = append(b, '.')
	return string(presenceToken(b, node))
}

// PresenceChanged implements broker.ClusterPresence: it records the write
// and wakes the writer; it never blocks.
func (r *router) PresenceChanged(vhost, set string, m broker.PresenceMember, present bool) {
	key := presenceKeyOf(vhost, set, r.cfg.Node, m)
	p := &r.presence
	now := time.Now()
	p.mu.Lock()
	if present {
		since := now
		if old, ok := p.local[key]; ok {
			since = old.since
		}
		v, err := json.Marshal(presenceValue{VHost: vhost, Set: set, User: m.User, ID: m.ID, Info: m.Info, Node: r.cfg.Node, Since: since,
			Instance: p.instance})
		if err != nil {
			p.mu.Unlock()
			panic("cluster: encoding a presence value: " + err.Error()) // strings and a time always encode
		}
		p.local[key] = localPresence{since: since, value: v}
		p.ops[key] = v
	} else {
		delete(p.local, key)
		if _, queued := p.ops[key]; queued || len(p.ops) < maxPresencePending {
			p.ops[key] = nil
		}
	}
	p.mu.Unlock()
	p.signal()
}

func (p *presenceState) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// bucket returns the bucket once made, else nil.
func (p *presenceState) bucket() jetstream.KeyValue {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.kv
}

// takeOps returns the writes to make now, and with refresh a put of every
// member this node holds.
func (p *presenceState) takeOps(refresh bool) map[string][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	ops := p.ops
	p.ops = make(map[string][]byte, len(ops))
	if refresh {
		for key, l := range p.local {
			if _, ok := ops[key]; !ok {
				ops[key] = l.value
			}
		}
	}
	return ops
}

// retry puts back failed writes that no newer write replaced: a put only
// while the member is still held (the refresh would write it anyway), a
// delete within maxPresencePending.
func (p *presenceState) retry(failed map[string][]byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for key, v := range failed {
		if _, newer := p.ops[key]; newer {
			continue
		}
		if _, held := p.local[key]; v != nil && held || v == nil && len(p.ops) < maxPresencePending {
			p.ops[key] = v
		}
	}
}

// presenceWriter makes the writes PresenceChanged records and refreshes
// this node's keys every PresenceTTL/3, until the router closes. A failed
// write is retried at the next wake or refresh; while the bucket does not
// exist yet, writes wait.
func (r *router) presenceWriter() {
	defer r.wg.Done()
	p := &r.presence
	tick := time.NewTicker(max(r.presenceTTL()/3, 10*time.Millisecond))
	defer tick.Stop()
	for {
		refresh := false
		select {
		case <-r.ctx.Done():
			return
		case <-p.wake:
		case <-tick.C:
			refresh = true
		}
		kv := p.bucket()
		if kv == nil {
			continue
		}
		ops := p.takeOps(refresh)
		failed := make(map[string][]byte)
		for key, v := range ops {
			if len(failed) > 0 || r.closed() {
				failed[key] = v // NATS is failing: keep the rest for later
				continue
			}
			ctx, cancel := context.WithTimeout(r.ctx, r.cfg.PublishTimeout)
			var err error
			if v == nil {
				err = kv.Delete(ctx, key)
			} else {
				_, err = kv.Put(ctx, key, v)
			}
			cancel()
			if err != nil {
				p.met.failed.Inc()
				r.log.Debug("presence write failed", "key", key, "error", err)
				failed[key] = v
			}
		}
		if len(failed) > 0 {
			p.retry(failed)
		}
	}
}

// presenceWatcher makes the bucket (retrying while NATS is unreachable),
// watches it and hands the other nodes' members to the broker, and drops
// those not refreshed within PresenceTTL, until the router closes.
func (r *router) presenceWatcher() {
	defer r.wg.Done()
	ttl := r.presenceTTL()
	sweep := time.NewTicker(max(ttl/10, 10*time.Millisecond))
	defer sweep.Stop()
	for r.ctx.Err() == nil {
		w, err := r.watchPresence(ttl)
		if err != nil {
			r.log.Debug("presence bucket not available", "error", err)
			r.presenceIdle(sweep, time.Second)
			continue
		}
		r.presenceFollow(w, sweep, ttl)
		r.stopWatch(w)
	}
}

// stopWatch stops a watch and drains what it still delivers: nats.go sends
// to the watch's channel holding its lock, so an undrained full channel
// would keep that goroutine (and the watch's close) blocked for ever. The
// drain is bounded; the router's WaitGroup owns it.
func (r *router) stopWatch(w jetstream.KeyWatcher) {
	_ = w.Stop()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		t := time.NewTimer(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case _, ok := <-w.Updates():
				if !ok {
					return
				}
			case <-t.C:
				return
			}
		}
	}()
}

// watchPresence makes the bucket or brings it to this node's TTL (its
// replica count stays what it is, as the queue streams' do), records it for
// the writer, and starts watching it.
func (r *router) watchPresence(ttl time.Duration) (jetstream.KeyWatcher, error) {
	ctx, cancel := context.WithTimeout(r.ctx, r.cfg.PublishTimeout)
	defer cancel()
	cfg := jetstream.KeyValueConfig{
		Bucket: presenceBucketName(r.cfg.Prefix), History: 1, TTL: ttl,
		Storage: jetstream.FileStorage, Replicas: r.replicas(),
	}
	kv, err := r.js.CreateKeyValue(ctx, cfg)
	if errors.Is(err, jetstream.ErrBucketExists) {
		if kv, err = r.js.KeyValue(ctx, cfg.Bucket); err == nil {
			var st jetstream.KeyValueStatus
			if st, err = kv.Status(ctx); err == nil && st.TTL() != ttl {
				cfg.Replicas = st.Config().Replicas
				kv, err = r.js.UpdateKeyValue(ctx, cfg)
			}
		}
	}
	if err != nil {
		return nil, unavailable("presence bucket", err)
	}
	p := &r.presence
	p.mu.Lock()
	p.kv = kv
	p.mu.Unlock()
	p.signal()
	w, err := kv.WatchAll(r.ctx)
	if err != nil {
		return nil, unavailable("presence watch", err)
	}
	return w, nil
}

// presenceIdle waits d (or until the router closes), sweeping meanwhile.
func (r *router) presenceIdle(sweep *time.Ticker, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
			return
		case now := <-sweep.C:
			r.sweepPresence(now, r.presenceTTL())
		}
	}
}

// presenceFollow applies the watch's entries until it ends (its
// subscription closed), the connection to NATS was re-established, or the
// router closes.
func (r *router) presenceFollow(w jetstream.KeyWatcher, sweep *time.Ticker, ttl time.Duration) {
	initial := true
	var own []string // this node's keys in the initial values
	reconnects := r.nc.Stats().Reconnects
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-sweep.C:
			// Refreshes already delivered go first: a watcher that
			// stalled must not expire members whose refresh waits here.
			if !r.drainPresence(w, &initial, &own, ttl) {
				return
			}
			r.sweepPresence(time.Now(), ttl)
			if r.nc.Stats().Reconnects != reconnects {
				// The watch's ordered consumer notices a lost
				// connection only after missed heartbeats (many
				// seconds): a new watch catches up at once, its
				// initial values refreshing what this node holds.
				return
			}
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			r.followEntry(e, &initial, &own, ttl)
		}
	}
}

// followEntry applies one entry of the watch (nil: the initial values are
// in, and an earlier run's keys of this node can go).
func (r *router) followEntry(e jetstream.KeyValueEntry, initial *bool, own *[]string, ttl time.Duration) {
	if e == nil {
		*initial = false
		r.dropStaleOwn(*own)
		*own = nil
		return
	}
	if key, stale := r.applyPresence(e, *initial, ttl); stale && *initial {
		*own = append(*own, key)
	}
}

// drainPresence applies the entries the watch has delivered already,
// without waiting for more; false when the watch ended.
func (r *router) drainPresence(w jetstream.KeyWatcher, initial *bool, own *[]string, ttl time.Duration) bool {
	for range presenceDrainMax {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return false
			}
			r.followEntry(e, initial, own, ttl)
		default:
			return true
		}
	}
	return true
}

// presenceDrainMax bounds one drain (the watch's channel holds 256; more
// may arrive meanwhile): a sweep is not put off for ever.
const presenceDrainMax = 4096

// dropStaleOwn deletes the keys of this node's name that it does not hold:
// left by an earlier run of a node with the same name.
func (r *router) dropStaleOwn(keys []string) {
	p := &r.presence
	p.mu.Lock()
	for _, key := range keys {
		if _, held := p.local[key]; !held {
			if _, queued := p.ops[key]; !queued {
				p.ops[key] = nil
			}
		}
	}
	p.mu.Unlock()
	p.signal()
}

// applyPresence hands one watched entry to the broker; stale says it is a
// key of this node's name left by an earlier run (not applied).
func (r *router) applyPresence(e jetstream.KeyValueEntry, initial bool, ttl time.Duration) (key string, stale bool) {
	p := &r.presence
	key = e.Key()
	b := r.brk.Load()
	if e.Operation() != jetstream.KeyValuePut {
		if rp := p.remote[key]; rp != nil {
			delete(p.remote, key)
			p.met.remote.Dec()
			if b != nil {
				b.ApplyRemotePresence(rp.vhost, rp.set, rp.node, rp.m, false)
			}
		}
		return key, false
	}
	var v presenceValue
	if err := json.Unmarshal(e.Value(), &v); err != nil || v.VHost == "" || v.Set == "" || v.Node == "" {
		r.log.Debug("presence entry ignored: not a member", "key", key)
		return key, false
	}
	if presenceKeyOf(v.VHost, v.Set, v.Node, broker.PresenceMember{User: v.User, ID: v.ID}) != key {
		// A value that does not name its own key (a buggy or hostile
		// writer): taking it could hold a member no delete ever ends.
		r.log.Debug("presence entry ignored: its value does not match its key", "key", key)
		return key, false
	}
	if v.Node == r.cfg.Node {
		switch {
		case v.Instance == p.instance:
			return key, false // this process's own, come back
		case e.Created().Before(p.started):
			return key, true // an earlier run's: deleted once the initial values are in
		}
		if !p.twinWarned {
			p.twinWarned = true
			r.log.Error("another live process uses this cluster.node name: presence keys of the two overwrite each other; "+
				"give every node its own cluster.node", "node", v.Node)
		}
		return key, false
	}
	now := time.Now()
	seen := now
	if initial {
		// A key written before this watch began has aged already: count
		// from when it was written (within [now-TTL, now] against skew).
		if c := e.Created(); c.Before(now) {
			seen = c
		}
		if oldest := now.Add(-ttl); seen.Before(oldest) {
			seen = oldest
		}
	}
	m := broker.PresenceMember{User: v.User, ID: v.ID, Info: v.Info}
	rp := p.remote[key]
	if rp != nil && b != nil && (rp.vhost != v.VHost || rp.set != v.Set || rp.node != v.Node || rp.m.User != m.User || rp.m.ID != m.ID) {
		// Cannot happen with matching keys, but a hold must never outlive
		// its key: let go of the old one first.
		b.ApplyRemotePresence(rp.vhost, rp.set, rp.node, rp.m, false)
	}
	if b == nil || !b.ApplyRemotePresence(v.VHost, v.Set, v.Node, m, true) {
		// Not held (no broker yet, or past its bounds): offered again
		// at the node's next refresh. A hold made by an earlier put of
		// the key is let go: the router keeps no record of it any more.
		if rp != nil {
			if b != nil {
				b.ApplyRemotePresence(rp.vhost, rp.set, rp.node, rp.m, false)
			}
			delete(p.remote, key)
			p.met.remote.Dec()
		}
		return key, false
	}
	if rp == nil {
		rp = &remotePresence{}
		p.remote[key] = rp
		p.met.remote.Inc()
	}
	*rp = remotePresence{vhost: v.VHost, set: v.Set, node: v.Node, m: m, seen: seen}
	return key, false
}

// sweepPresence lets go of the other nodes' members not refreshed within
// ttl: their node died or lost NATS.
func (r *router) sweepPresence(now time.Time, ttl time.Duration) {
	p := &r.presence
	b := r.brk.Load()
	for key, rp := range p.remote {
		if now.Sub(rp.seen) <= ttl {
			continue
		}
		delete(p.remote, key)
		p.met.remote.Dec()
		p.met.expired.Inc()
		if b != nil {
			b.ApplyRemotePresence(rp.vhost, rp.set, rp.node, rp.m, false)
		}
	}
}

var _ broker.ClusterPresence = (*router)(nil)
