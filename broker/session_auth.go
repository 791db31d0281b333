package broker

import (
	"strconv"
	"sync/atomic"
	"time"
)

// A session's rights are checked at CONNECT and on every SUBSCRIBE and
// SEND; this file keeps them true afterwards. Credentials that expire (a
// JWT's exp) end the session when they do, and a reloaded security
// configuration (SIGHUP) is applied to sessions already open. Both arrive
// from other goroutines (a runtime timer, the reloader) as a
// Transport.Poke; the checks run in Poked, on the read loop, which owns
// the principal and the subscriptions.

// sessionAuth is a session's state for keeping its rights current.
type sessionAuth struct {
	// expiry (read loop only) is armed at CONNECT when the principal
	// expires and stopped by Release; it only sets expired and pokes.
	expiry *time.Timer
	// flags: authExpired is set by the expiry timer, authReauthorize by
	// RequestReauthorize (any goroutine); the read loop clears them in
	// Poked. authConnected is set once CONNECT succeeded: only then is
	// there anything to re-authorize, and only then may
	// RequestReauthorize interrupt the driver's read (a TLS handshake in
	// progress must not be). One word rather than three: every
	// connection carries it.
	flags atomic.Uint32
}

// The bits of sessionAuth.flags.
const (
	authExpired uint32 = 1 << iota
	authReauthorize
	authConnected
)

// RequestReauthorize asks the session to check its rights again, because
// the Authenticator's or the Authorizer's configuration was reloaded: its
// read loop asks a PrincipalChecker (if the Authenticator is one) whether
// the principal still stands, then the Authorizer whether it may still use
// its virtual host and every destination it subscribes to. Whatever is no
// longer allowed ends the session with ERROR forbidden. Safe from any
// goroutine; it returns at once.
func (s *Session) RequestReauthorize() {
	if s.auth.flags.Load()&authConnected == 0 {
		return // CONNECT checks everything with the current configuration
	}
	s.auth.flags.Or(authReauthorize)
	s.t.Poke()
}

// armExpiry starts the expiry timer for the principal CONNECT accepted,
// if it expires. The timer runs no session code: it pokes the driver,
// whose read loop then calls Poked.
func (s *Session) armExpiry() {
	if s.principal.Expires.IsZero() {
		return
	}
	d := s.principal.Expires.Sub(s.b.cfg.Now())
	if s.auth.expiry == nil {
		s.auth.expiry = time.AfterFunc(d, func() {
			s.auth.flags.Or(authExpired)
			s.t.Poke()
		})
		return
	}
	s.auth.expiry.Reset(d)
}

// stopExpiry stops the expiry timer, so a released session is not kept
// alive by it until its token would have expired. Read loop only.
func (s *Session) stopExpiry() {
	if s.auth.expiry != nil {
		s.auth.expiry.Stop()
	}
}

// checkRights is Poked's share of this file: it ends the session when its
// credentials have expired or, after RequestReauthorize, when its rights
// are gone. It returns ErrSessionClosed when it ended the session.
func (s *Session) checkRights() error {
	old := s.auth.flags.And(^(authExpired | authReauthorize))
	expired, reauthorize := old&authExpired != 0, old&authReauthorize != 0
	if s.state != stateConnected {
		return nil // CONNECT checks everything with the current configuration
	}
	var err *stompError
	if expired {
		if exp := s.principal.Expires; !s.b.cfg.Now().Before(exp) {
			err = &stompError{code: CodeTokenExpired, message: "token expired",
				detail: "The credentials of this session expired at " + exp.UTC().Format(time.RFC3339) +
					"; reconnect with a new token.", retryable: true, reason: CloseTokenExpired}
		} else {
			s.armExpiry() // the wall clock went back: wait for the rest
		}
	}
	if err == nil && reauthorize {
		err = s.reauthorize()
	}
	if err == nil {
		return nil
	}
	s.fail(err, nil)
	s.state = stateClosed
	return ErrSessionClosed
}

// reauthorize checks the principal, its virtual host and every
// subscription against the current configuration, and adopts the
// principal as the Authenticator now describes it.
func (s *Session) reauthorize() *stompError {
	if pc, ok := s.b.cfg.Authenticator.(PrincipalChecker); ok {
		p, err := pc.CheckPrincipal(s.principal)
		if err != nil {
			return &stompError{code: CodeForbidden, message: "forbidden",
				detail: "User " + strconv.Quote(s.principal.Name) + " is no longer allowed to connect: " + err.Error() + ".",
				reason: ClosePolicy}
		}
		if p != nil {
			s.principal = p
		}
	}
	if !s.b.cfg.Authorizer.AllowHost(s.principal, s.space.name) {
		return &stompError{code: CodeForbidden, message: "forbidden",
			detail: "User " + strconv.Quote(s.principal.Name) + " may no longer use virtual host " + strconv.Quote(s.space.name) + ".",
			reason: ClosePolicy}
	}
	for _, sub := range s.subs {
		if err := s.reauthorizePresence(sub); err != nil {
			return err
		}
		kind, _, perr := parseDestination(sub.dest)
		if perr != nil {
			continue // accepted at SUBSCRIBE, so never; nothing to ask about
		}
		if err := s.authorize(ActionSubscribe, kind, sub.dest); err != nil {
			err.detail = "After a configuration reload: " + err.detail + " The subscription " +
				strconv.Quote(truncateString(sub.id, 64)) + " is no longer allowed."
			return err
		}
	}
	return nil
}
