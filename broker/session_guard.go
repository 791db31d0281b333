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
	if !s.b.cfg.Authorizer.Allow(s.principalInfo, s.space.name, a, destination) {
		return forbidden(s.principalInfo, a, destination)
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

// mayCreate counts a destination this connection is about to create and
// refuses it past MaxDestinationsPerConnection.
func (s *Session) mayCreate(exists bool) *stompError {
	limit := s.b.cfg.MaxDestinationsPerConnection
	if exists || limit == 0 {
		return nil
	}
	if s.created >= limit {
		return connLimitErr("this connection has created its limit of " + strconv.Itoa(limit) + " destinations")
	}
	s.created++
	return nil
}

// queueExists reports whether the queue key exists in the session's space.
func (s *Session) queueExists(key string) bool {
	q, _ := s.space.queue(key, false)
	return q != nil
}

// topicExists reports whether the topic has subscribers already.
func (s *Session) topicExists(name string) bool {
	s.space.mu.RLock()
	defer s.space.mu.RUnlock()
	return s.space.topics[name] != nil
}

// delayAuthFailure makes a client whose credentials were refused wait
// before it hears so: guessing passwords costs the guesser time. The wait
// parks only this connection's read loop, and ends early with ctx (the
// connect deadline).
func (s *Session) delayAuthFailure(ctx context.Context) {
	d := s.b.cfg.AuthFailureDelay
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

// destinationExists reports whether a SUBSCRIBE to dest finds its
// destination already there (a durable subscription counts as new: it is
// the client's own).
func (s *Session) destinationExists(kind destKind, name, dest string) bool {
	switch kind {
	case kindTopic:
		return isWildcard(name) || s.topicExists(name)
	case kindQueue:
		return s.queueExists(dest)
	case kindTempQueue:
		return s.tempQueues[s.replyAddress(name)] != nil
	}
	return true
}
