package broker

import (
	"context"
	"strconv"
	"time"
)

// Per-connection admission: authorization of each SEND and SUBSCRIBE, the
// frame and byte rates, and how many destinations one connection may
// bring into existence. All read-loop state.

// forbidden is the ERROR for an action the Authorizer refused. Retrying
// the same thing cannot help.
func forbidden(p *Principal, a Action, destination string) *stompError {
	return &stompError{code: CodeForbidden, message: "forbidden",
		detail: "User " + strconv.Quote(p.Name) + " may not " + a.String() + " " +
			strconv.Quote(truncateString(destination, 128)) + ".", reason: ClosePolicy}
}

// authorize asks the Authorizer about a destination the client named;
// temporary and reply queues are the sessions' own and are not asked about.
func (s *Session) authorize(a Action, kind destKind, destination string) *stompError {
	if kind == kindTempQueue || kind == kindReplyQueue {
		return nil
	}
	if !s.b.cfg.Authorizer.Allow(s.principal, s.space.name, a, destination) {
		return forbidden(s.principal, a, destination)
	}
	return nil
}

// rateBucket is a token bucket refilled at rate per second up to burst.
type rateBucket struct {
	rate, burst float64 // immutable; rate 0: unlimited
	tokens      float64
	last        time.Time
}

func newRateBucket(rate, burst int) rateBucket {
	return rateBucket{rate: float64(rate), burst: float64(max(burst, rate)), tokens: float64(max(burst, rate))}
}

// take removes n tokens at now and reports whether the bucket had them.
func (rb *rateBucket) take(now time.Time, n float64) bool {
	if rb.rate == 0 {
		return true
	}
	if !rb.last.IsZero() {
		rb.tokens = min(rb.burst, rb.tokens+now.Sub(rb.last).Seconds()*rb.rate)
	}
	rb.last = now
	rb.tokens -= n
	return rb.tokens >= 0
}

func rateErr(what string, limit int) *stompError {
	return &stompError{code: CodeLimitExceeded, message: "rate limit exceeded",
		detail: "This connection sent more than " + strconv.Itoa(limit) + " " + what +
			" per second for longer than its burst allows; slow down and reconnect.",
		retryable: true, reason: CloseLimitExceeded}
}

// countCreation is called, under the table lock, when this connection is
// about to create a destination (queue, topic, durable subscription,
// temporary queue); past MaxDestinationsPerConnection it refuses.
func (s *Session) countCreation() *stompError {
	limit := s.b.cfg.MaxDestinationsPerConnection
	if limit == 0 {
		return nil
	}
	if int(s.created) >= limit {
		return connLimitErr("this connection has created its limit of " + strconv.Itoa(limit) + " destinations")
	}
	s.created++
	return nil
}

// DelayAuthFailure makes a client whose credentials were refused wait
// AuthFailureDelay before it hears so: guessing passwords (or tokens, on
// the WebSocket upgrade) costs the guesser time. The wait parks only the
// caller, the refused connection's own goroutine, and ends early with ctx.
func (b *Broker) DelayAuthFailure(ctx context.Context) {
	d := b.cfg.AuthFailureDelay
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
