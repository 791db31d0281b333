package server

import (
	"math/rand/v2"
	"time"
)

// DefaultShutdownReconnectWindow is Config.ShutdownReconnectWindow's
// default: the window over which the reconnect-after hints of one shutdown
// are spread.
const DefaultShutdownReconnectWindow = 10 * time.Second

// tellShutdown asks every session in conns to end with ERROR
// server-shutdown, each with its own reconnect-after hint within
// Config.ShutdownReconnectWindow (none when it is negative).
func (s *Server) tellShutdown(conns []connection) {
	window := s.cfg.ShutdownReconnectWindow
	if window < 0 {
		for _, c := range conns {
			c.base().session.Shutdown()
		}
		return
	}
	delays := reconnectDelays(len(conns), window, rand.Float64)
	for i, c := range conns {
		c.base().session.ShutdownReconnectAfter(delays[i])
	}
}

// reconnectDelays spreads n reconnect delays over [0, window): the window
// is cut into n equal slots, each delay falls at a random point of its own
// slot (stratified jitter), and the slots are dealt out in random order.
// So the delays cover the window evenly whatever n is (a plain uniform
// draw clumps), they are distinct whenever a slot is at least a
// millisecond wide, and no connection can tell its place from its order
// of acceptance. rnd returns a float in [0, 1) (tests pass their own).
func reconnectDelays(n int, window time.Duration, rnd func() float64) []time.Duration {
	delays := make([]time.Duration, n)
	if n == 0 {
		return delays
	}
	slot := float64(window) / float64(n)
	for i := range delays {
		d := time.Duration(slot * (float64(i) + rnd()))
		delays[i] = min(d, window-1) // float rounding must not reach the window's end
	}
	// Fisher-Yates with rnd, so a test's rnd makes the order reproducible.
	for i := n - 1; i > 0; i-- {
		j := int(rnd() * float64(i+1))
		delays[i], delays[j] = delays[j], delays[i]
	}
	return delays
}
