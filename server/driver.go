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

// clock reads a monotonic clock as nanoseconds since the server was made,
// a number atomics can hold: deadlines kept this way move with neither a
// step of the wall clock (NTP, a resumed VM) nor time zones.
type clock struct{ epoch time.Time }

// newClock starts a clock; its epoch is a second back so that no reading
// is 0, the "none" of the fields that hold them.
func newClock() clock { return clock{epoch: time.Now().Add(-time.Second)} }

// now is the current reading.
func (k clock) now() int64 { return int64(time.Since(k.epoch)) }

// at is reading r as a time with a monotonic reading.
func (k clock) at(r int64) time.Time { return k.epoch.Add(time.Duration(r)) }

// reading is t as a reading (t from time.Now or derived from one).
func (k clock) reading(t time.Time) int64 { return int64(t.Sub(k.epoch)) }
