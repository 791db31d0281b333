package server

import "time"

// The sweeper: one goroutine, owned by the Server, that removes durable
// subscriptions nobody consumed for the broker's DurableIdleTTL and lets
// presence members whose grace period ended leave. The broker starts no
// goroutines or timers itself; it exposes Broker.SweepIdleDurables and
// Broker.SweepPresence and this loop calls them. It also forgets the
// idempotency keys older than DedupeWindow (Broker.SweepDedupe).

// sweepInterval is how often the sweeper looks for a TTL: a quarter of it,
// so a durable outlives its TTL by at most that, within bounds that keep
// a tiny TTL from spinning and a huge one from never looking.
func sweepInterval(ttl time.Duration) time.Duration {
	return min(max(ttl/4, 100*time.Millisecond), time.Minute)
}

// startSweeperLocked starts the sweeper once, if the broker has an idle
// TTL, a presence grace period or a dedupe window; s.mu is held and the server is not
// closed. Shutdown stops it and waits for it (s.wg).
func (s *Server) startSweeperLocked() {
	if s.sweepStop != nil {
		return
	}
	var durables time.Duration
	if ttl := s.broker.Config().DurableIdleTTL; ttl > 0 {
		durables = sweepInterval(ttl)
	}
	presence := s.broker.PresenceSweepInterval()
	every := durables
	if presence > 0 && (every == 0 || presence < every) {
		every = presence
	}
	var dedupe time.Duration
	if window := s.broker.Config().DedupeWindow; window > 0 {
		dedupe = sweepInterval(window)
		if every == 0 || dedupe < every {
			every = dedupe
		}
	}
	if every == 0 {
		return
	}
	// The durables are swept every durableTicks ticks: at their own pace,
	// not at the presence sweep's (a walk of every durable each second).
	durableTicks, dedupeTicks := 0, 0
	if durables > 0 {
		durableTicks = int(max(durables/every, 1))
	}
	if dedupe > 0 {
		dedupeTicks = int(max(dedupe/every, 1))
	}
	s.sweepStop = make(chan struct{})
	s.wg.Add(1)
	go s.sweep(s.sweepStop, every, durableTicks, dedupeTicks)
}

// sweep runs until stop is closed.
func (s *Server) sweep(stop <-chan struct{}, every time.Duration, durableTicks, dedupeTicks int) {
	defer s.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	now := s.broker.Config().Now
	for tick := 1; ; tick++ {
		select {
		case <-stop:
			return
		case <-t.C:
			if durableTicks > 0 && tick%durableTicks == 0 {
				s.broker.SweepIdleDurables(now()) // it logs each removal
			}
			s.broker.SweepPresence(now())
			if dedupeTicks > 0 && tick%dedupeTicks == 0 {
				s.broker.SweepDedupe(now())
			}
		}
	}
}
