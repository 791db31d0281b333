package cluster

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The registry's background work (router_durables.go): the keeper deletes
// released holder keys and refreshes held ones; the watcher hands the
// registry to the broker.

// durableKeeper deletes released holder keys and refreshes held ones
// every holdTTL/3, until the router closes.
func (r *router) durableKeeper() {
	defer r.wg.Done()
	d := &r.durables
	tick := time.NewTicker(max(r.holdTTL()/3, 10*time.Millisecond))
	defer tick.Stop()
	for {
		refresh := false
		select {
		case <-r.ctx.Done():
			return
		case <-d.wake:
		case <-tick.C:
			refresh = true
		}
		// Under hmu: HoldDurable neither adopts a key being deleted nor
		// races a refresh.
		d.hmu.Lock()
		d.mu.Lock()
		kv, rel := d.kv, d.release
		d.release = make(map[string]uint64)
		type put struct {
			key   string
			rev   uint64
			value []byte
		}
		var puts []put
		if refresh {
			for key, h := range d.holds {
				puts = append(puts, put{key, h.rev, h.value})
			}
		}
		d.mu.Unlock()
		if kv == nil {
			d.hmu.Unlock()
			continue
		}
		for key, rev := range rel {
			ctx, cancel := context.WithTimeout(r.ctx, r.cfg.PublishTimeout)
			// At its revision: a hold taken again meanwhile stays.
			if err := kv.Delete(ctx, key, jetstream.LastRevision(rev)); err != nil {
				d.met.failed.Inc()
				r.log.Debug("holder delete failed; it goes stale", "key", key, "error", err)
			}
			cancel()
		}
		for _, p := range puts {
			ctx, cancel := context.WithTimeout(r.ctx, r.cfg.PublishTimeout)
			rev, err := kv.Update(ctx, p.key, p.value, p.rev)
			cancel()
			if err != nil {
				d.met.failed.Inc()
				r.log.Warn("durable subscription holder refresh failed", "key", p.key, "error", err)
				continue
			}
			d.mu.Lock()
			if h := d.holds[p.key]; h != nil && h.rev == p.rev {
				h.rev = rev
			} else if old, ok := d.release[p.key]; ok && old == p.rev {
				d.release[p.key] = rev // released meanwhile: delete what was written
			}
			d.mu.Unlock()
		}
		d.hmu.Unlock()
	}
}

// durablesWatcher waits for the broker, then watches the registry and
// hands it to the broker, until the router closes; a watch that ends
// (NATS lost) is started again.
func (r *router) durablesWatcher() {
	defer r.wg.Done()
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for r.brk.Load() == nil {
		select {
		case <-r.ctx.Done():
			return
		case <-poll.C:
		}
	}
	for r.ctx.Err() == nil {
		ctx, cancel := context.WithTimeout(r.ctx, r.cfg.PublishTimeout)
		kv, err := r.durablesKV(ctx)
		cancel()
		var w jetstream.KeyWatcher
		if err == nil {
			w, err = kv.WatchAll(r.ctx)
		}
		if err != nil {
			r.log.Debug("durables bucket not available", "error", err)
			t := time.NewTimer(time.Second)
			select {
			case <-r.ctx.Done():
			case <-t.C:
			}
			t.Stop()
			continue
		}
		r.followDurables(w)
		_ = w.Stop()
	}
}

// followDurables applies the watch's entries until it ends, the
// connection was re-established, or the router closes.
func (r *router) followDurables(w jetstream.KeyWatcher) {
	reconnects := r.nc.Stats().Reconnects
	check := time.NewTicker(time.Second)
	defer check.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-check.C:
			if r.nc.Stats().Reconnects != reconnects {
				return // a new watch catches up at once
			}
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e != nil {
				r.applyDurable(e)
			}
		}
	}
}

// applyDurable hands one registry entry to the broker.
func (r *router) applyDurable(e jetstream.KeyValueEntry) {
	d := &r.durables
	b := r.brk.Load()
	key := e.Key()
	switch {
	case strings.HasPrefix(key, "s."):
		if e.Operation() != jetstream.KeyValuePut {
			if spec, ok := d.known[key]; ok {
				vhost := d.vhosts[key]
				d.mu.Lock()
				delete(d.known, key)
				d.mu.Unlock()
				d.met.known.Dec()
				delete(d.vhosts, key)
				b.ApplyRemoteDurable(vhost, spec, false)
			}
			return
		}
		var v durableValue
		if err := json.Unmarshal(e.Value(), &v); err != nil {
			r.log.Debug("durables entry ignored", "key", key)
			return
		}
		if old, ok := d.known[key]; ok && old != v.spec() {
			b.ApplyRemoteDurable(v.VHost, old, false)
		}
		d.mu.Lock()
		if _, ok := d.known[key]; !ok {
			d.met.known.Inc()
		}
		d.known[key] = v.spec()
		d.mu.Unlock()
		d.vhosts[key] = v.VHost
		b.ApplyRemoteDurable(v.VHost, v.spec(), true)
	case strings.HasPrefix(key, "h.") && e.Operation() == jetstream.KeyValuePut:
		var v holderValue
		if err := json.Unmarshal(e.Value(), &v); err == nil && v.Node != r.cfg.Node {
			b.DurableActive(v.VHost, v.spec())
		}
	}
}

// knownDurables is how many durable subscriptions of the registry this
// node has applied.
func (r *router) knownDurables() int {
	d := &r.durables
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.known)
}

// flushReleases deletes the holder keys released and not deleted yet, within
// ctx: a node shutting down lets other nodes attach its durable
// subscriptions at once rather than after the presence TTL.
func (r *router) flushReleases(ctx context.Context) {
	d := &r.durables
	d.hmu.Lock()
	defer d.hmu.Unlock()
	d.mu.Lock()
	kv, rel := d.kv, d.release
	d.release = make(map[string]uint64)
	d.mu.Unlock()
	if kv == nil || len(rel) == 0 || !r.nc.IsConnected() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.PublishTimeout)
	defer cancel()
	for key, rev := range rel {
		if err := kv.Delete(ctx, key, jetstream.LastRevision(rev)); err != nil {
			d.met.failed.Inc()
			r.log.Debug("holder delete at close failed; it goes stale", "key", key, "error", err)
		}
	}
}
