package broker

import (
	"math"
	"time"
)

// HeaderReconnectAfter is the ERROR server-shutdown header that tells a
// client how many milliseconds to wait before it reconnects
// (docs/compliance.md, "Reconnect after shutdown"). The server spreads the
// values over a window, so a restart does not bring every client back in
// the same instant.
const HeaderReconnectAfter = "reconnect-after"

// ShutdownReconnectAfter is Shutdown with a reconnect-after hint: the
// server-shutdown ERROR carries reconnect-after:<d in ms>. A negative d
// sends no hint. Safe from any goroutine.
func (s *Session) ShutdownReconnectAfter(d time.Duration) {
	if d >= 0 {
		s.reconnectAfter.Store(int32(min(d.Milliseconds(), math.MaxInt32-1) + 1))
	}
	s.Shutdown()
}
