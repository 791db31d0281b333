package server

import (
	"sync"
	"time"

	"github.com/stompbox/stompbox/broker"
)

// rateKeeper keeps the snapshots rates are computed from: at most one
// per second, taken on demand (by a request or an event stream), so an
// admin API nobody reads costs nothing. Only the destinations of the
// latest snapshot are kept.
type rateKeeper struct {
	mu    sync.Mutex
	at    time.Time                // guarded by mu: of the latest snapshot; zero before the first
	dests []broker.DestinationInfo // guarded by mu: the latest snapshot (shared read-only)
	rates map[destKey]destRate     // guarded by mu: per destination, against the snapshot before
	prev  map[destKey][2]uint64    // guarded by mu: the latest snapshot's counters
	in    uint64                   // guarded by mu: broker totals at the latest snapshot
	out   uint64                   // guarded by mu
	total destRate                 // guarded by mu: the broker's message rates
}

// destKey names a destination across virtual hosts.
type destKey struct{ vhost, name string }

// destRate is messages per second in and out.
type destRate struct{ in, out float64 }

// snapshotEvery is the least time between two snapshots.
const snapshotEvery = time.Second

// rateSnapshot is what a reader gets: the destinations (read-only), their
// rates and the broker's.
type rateSnapshot struct {
	dests []broker.DestinationInfo
	rates map[destKey]destRate // read-only
	total destRate
	in    uint64 // messages in and out, totals
	out   uint64
}

// snapshot returns the latest snapshot, taking a new one first when the
// latest is a second old or more. take reads the broker.
func (k *rateKeeper) snapshot(now time.Time, b adminBroker, stats *broker.Stats) rateSnapshot {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.at.IsZero() || now.Sub(k.at) >= snapshotEvery {
		k.take(now, b, stats)
	}
	return rateSnapshot{dests: k.dests, rates: k.rates, total: k.total, in: k.in, out: k.out}
}

// take replaces the snapshot (under mu). The previous one's destination
// slice is not reused: readers may still hold it.
func (k *rateKeeper) take(now time.Time, b adminBroker, stats *broker.Stats) {
	dt := now.Sub(k.at).Seconds()
	first := k.at.IsZero()
	dests := b.Destinations(make([]broker.DestinationInfo, 0, len(k.dests)))
	rates := make(map[destKey]destRate, len(dests))
	prev := make(map[destKey][2]uint64, len(dests))
	for i := range dests {
		d := &dests[i]
		key := destKey{d.VHost, d.Name}
		cur := [2]uint64{d.Enqueued, d.Delivered}
		prev[key] = cur
		if p, ok := k.prev[key]; ok && !first {
			rates[key] = destRate{perSecond(p[0], cur[0], dt), perSecond(p[1], cur[1], dt)}
		}
	}
	in, out := stats.Published.Load(), stats.Delivered.Load()
	if first {
		k.total = destRate{}
	} else {
		k.total = destRate{perSecond(k.in, in, dt), perSecond(k.out, out, dt)}
	}
	k.at, k.dests, k.rates, k.prev, k.in, k.out = now, dests, rates, prev, in, out
}

// perSecond is the rate of a counter from a to b over dt seconds; 0 when
// it went back (a destination deleted and made again).
func perSecond(a, b uint64, dt float64) float64 {
	if b < a || dt <= 0 {
		return 0
	}
	return float64(b-a) / dt
}
