package server

import "time"

// The idle-durable sweeper: one goroutine, owned by the Server, that
// removes durable subscriptions nobody consumed for the broker's
// DurableIdleTTL. The broker starts no goroutines itself; it exposes
// Broker.SweepIdleDurables and this loop calls it. It also forgets the
// idempotency keys older than DedupeWindow (Broker.SweepDedupe).

// sweepInterval is how often the sweeper looks for a TTL: a quarter of it,
// so a durable outlives its TTL by at most that, within bounds that keep
// a tiny TTL from spinning and a huge one from never looking.
func sweepInterval(ttl time.Duration) time.Duration {
	return min(max(ttl/4, 100*time.Millisecond), time.Minute)
}

// startSweeperLocked starts the sweeper once, if the broker has an idle
// TTL; s.mu is held and the server is not closed. Shutdown stops it and
// waits for it (s.wg).
func (s *Server) startSweeperLocked() {
	ttl := s.broker.Config().DurableIdleTTL
	if window := s.broker.Config().DedupeWindow; window > 0 && (ttl <= 0 || window < ttl) {
		ttl = window // forgotten idempotency keys are swept too
	}
	if ttl <= 0 || s.sweepStop != nil {
		return
	}
	s.sweepStop = make(chan struct{})
	s.wg.Add(1)
	go s.sweep(s.sweepStop, sweepInterval(ttl))
}

// sweep runs until stop is closed.
func (s *Server) sweep(stop <-chan struct{}, every time.Duration) {
	defer s.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	now := s.broker.Config().Now
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			s.broker.SweepIdleDurables(now()) // it logs each removal
			s.broker.SweepDedupe(now())
		}
	}
}
