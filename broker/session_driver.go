package broker

import "time"

// The driver's side of a Session, besides Feed and Output: Tick runs what
// is due and says what to wait for next. A driver that reads bytes when
// they come and calls Tick in a loop serves the session fully, whether it
// parks a goroutine on the socket or waits on epoll.

// maxTicks bounds the flow-control work one Tick runs while its timers
// keep being due; the at it returns then says "now" again.
const maxTicks = 16

// Tick runs the work that did not arrive on the socket: what a
// Transport.Poke asked for (poked), and whatever is due at now given when
// bytes last arrived (lastRead): flow-control retries and timers, and the
// read timeout, after which a silent client is told why (heartbeat-timeout,
// or connect-timeout before CONNECT) and the session ends (err is then
// ErrSessionClosed). It tells the driver what to wait for next: read says
// whether to read the socket (false: flow control holds the session until
// a Transport.Poke or at), and at when to call Tick even if nothing
// arrives (zero: never). Read loop only.
func (s *Session) Tick(now, lastRead time.Time, poked bool) (read bool, at time.Time, err error) {
	for range maxTicks {
		paused, wakeAt := s.FlowWait()
		if poked || !wakeAt.IsZero() && !now.Before(wakeAt) {
			poked = false
			if err := s.Poked(); err != nil {
				return false, time.Time{}, err
			}
			continue
		}
		if paused {
			return false, wakeAt, nil
		}
		deadline := s.ReadDeadline(lastRead)
		if !deadline.IsZero() && !now.Before(deadline) {
			s.Expire()
			return false, time.Time{}, ErrSessionClosed
		}
		return true, earliest(deadline, wakeAt), nil
	}
	paused, wakeAt := s.FlowWait()
	return !paused, wakeAt, nil
}
