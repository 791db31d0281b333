package broker

import "time"

// LivenessTimeout is how long, once connected, the client may stay silent
// before it is closed with heartbeat-timeout: its negotiated heart-beat
// interval times the tolerance (0: no timeout, or not connected yet). A
// driver that can make the client answer without the application's help
// (WebSocket pings) pings more often than that. Safe from any goroutine.
func (s *Session) LivenessTimeout() time.Duration {
	return time.Duration(s.liveness.Load())
}
