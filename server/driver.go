package server

import "time"

// connection is one served connection, whichever driver serves it: the
// goroutine pair (conn) or the epoll readiness driver (pollConn, Linux).
type connection interface {
	// base is what every driver keeps of the connection.
	base() *wire
	// closeNow closes the socket at once (Shutdown past its deadline);
	// the driver sees the failure and ends.
	closeNow()
}

// The connection drivers (Config.ConnectionDriver).
const (
	// DriverEpoll reads a connection only when epoll says it is readable,
	// from a short-lived goroutine with a pooled buffer, and writes from
	// one that runs only while output is pending: an idle connection holds
	// no goroutine and no buffer. Linux only; TLS connections and other
	// systems use DriverGoroutines.
	DriverEpoll = "epoll"
	// DriverGoroutines serves each connection with a read loop and a
	// writer goroutine for its whole life.
	DriverGoroutines = "goroutines"
)

func driverName(polled bool) string {
	if polled {
		return DriverEpoll
	}
	return DriverGoroutines
}

// earliest is the earlier of two times, zero meaning none.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}
