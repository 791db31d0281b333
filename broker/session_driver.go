package broker

import "time"

// The driver's side of a Session, besides Feed and Output: what to wait
// for (NextDeadline) and what to run when it is due or when the session
// asked for it with Transport.Poke (Tick). A driver that reads bytes
// when they come and calls these two in a loop serves the session fully,
// whether it parks a goroutine on the socket or waits on epoll.

// maxTicks bounds the flow-control work one Tick runs while its timers
// keep being due; the driver's next NextDeadline then says "now" again.
const maxTicks = 16

// NextDeadline tells the driver what to wait for, given when bytes last
// arrived (lastRead): read says whether to read the socket (false: flow
// control holds the session until a Transport.Poke or at), and at when to
// call Tick even if nothing arrives (zero: never). Read loop only.
func (s *Session) NextDeadline(lastRead time.Time) (read bool, at time.Time) {
	paused, wakeAt := s.FlowWait()
	if paused {
		return false, wakeAt
	}
	return true, earliest(s.ReadDeadline(lastRead), wakeAt)
}

// Tick runs the work that did not arrive on the socket: what a
// Transport.Poke asked for (poked), and whatever is due at now given when
// bytes last arrived (lastRead): flow-control retries and timers, and the
// read timeout, after which a silent client is told why (heartbeat-timeout,
// or connect-timeout before CONNECT) and the session ends. It returns
// ErrSessionClosed once the session has ended. Read loop only.
func (s *Session) Tick(now, lastRead time.Time, poked bool) error {
	for range maxTicks {
		paused, wakeAt := s.FlowWait()
		if !poked && (wakeAt.IsZero() || now.Before(wakeAt)) {
			if deadline := s.ReadDeadline(lastRead); !paused && !deadline.IsZero() && !now.Before(deadline) {
				s.Expire()
				return ErrSessionClosed
			}
			return nil
		}
		poked = false
		if err := s.Poked(); err != nil {
			return err
		}
	}
	return nil
}
