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
	cfg := s.broker.Config()
	var durables, dedupe time.Duration
	if cfg.DurableIdleTTL > 0 {
		durables = sweepInterval(cfg.DurableIdleTTL)
	}
	if cfg.DedupeWindow > 0 {
		dedupe = sweepInterval(cfg.DedupeWindow)
	}
	// Each sweep runs every so many ticks of the shortest interval, at its
	// own pace (not a walk of every durable each second for presence).
	sweeps := []sweepJob{
		{every: durables, run: func(now time.Time) { s.broker.SweepIdleDurables(now) }}, // it logs each removal
		{every: s.broker.PresenceSweepInterval(), run: func(now time.Time) { s.broker.SweepPresence(now) }},
		{every: dedupe, run: s.broker.SweepDedupe},
	}
	var every time.Duration
	for _, j := range sweeps {
		if j.every > 0 && (every == 0 || j.every < every) {
			every = j.every
		}
	}
	if every == 0 {
		return
	}
	for i := range sweeps {
		if sweeps[i].every > 0 {
			sweeps[i].ticks = int(max(sweeps[i].every/every, 1))
		}
	}
	s.sweepStop = make(chan struct{})
	s.wg.Add(1)
	go s.sweep(s.sweepStop, every, sweeps)
}

// sweepJob is one periodic broker sweep: run every ticks ticks (0: never).
type sweepJob struct {
	every time.Duration
	run   func(now time.Time)
	ticks int
}

// sweep runs until stop is closed.
func (s *Server) sweep(stop <-chan struct{}, every time.Duration, jobs []sweepJob) {
	defer s.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	now := s.broker.Config().Now
	for tick := 1; ; tick++ {
		select {
		case <-stop:
			return
		case <-t.C:
			for _, j := range jobs {
				if j.ticks > 0 && tick%j.ticks == 0 {
					j.run(now())
				}
			}
		}
	}
}
