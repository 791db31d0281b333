package broker

import "time"

// The parts of a Session that most connections never use live behind
// pointers, made when first needed: an idle connection (issue 15: a few
// KiB each, 19,000 of them) should carry only what every session needs.
// Flow control's state (sessionFlow, flow_session.go), the pipeline of
// persistent SENDs (session_pipeline.go) and a parking outbox's kept
// deliveries (outPark) are such parts; sessionExtra gathers the small
// ones.

// sessionExtra is the read-loop state few sessions use, made on first
// use (extra) and kept.
type sessionExtra struct {
	rate     sessionRate
	clientID string     // the client-id header of CONNECT
	acked    []delivery // scratch for ACK and NACK
	// resumed says this session adopted a parked one; ackMark and subMark
	// are the last ack id and subscription number it adopted: an ACK or
	// NACK of a settled id up to ackMark is a no-op (the client cannot
	// know which of them reached it), and SUBSCRIBE repeating an adopted
	// subscription's id and destination is one too.
	ackMark uint64
	subMark uint32
	resumed bool
	// adopting is set while a session handed over by another node is made
	// again: its topic subscriptions hold their deliveries until what was
	// handed over is queued first (cluster_session.go).
	adopting bool
}

// sessionRate is the per-connection rate limiting, on when
// MaxFramesPerSecond or MaxBytesPerSecond is set; read loop only.
type sessionRate struct {
	on     bool
	frames rateBucket // MaxFramesPerSecond
	bytes  rateBucket // MaxBytesPerSecond
	fedAt  time.Time  // when the chunk being parsed arrived
}

// extra returns the session's sessionExtra, made on first use.
func (s *Session) extra() *sessionExtra {
	if s.x == nil {
		s.x = &sessionExtra{}
	}
	return s.x
}

// rateLimits returns the rate limiting, nil when it is off.
func (s *Session) rateLimits() *sessionRate {
	if s.x == nil || !s.x.rate.on {
		return nil
	}
	return &s.x.rate
}

// clientID is the client-id CONNECT gave ("" for none).
func (s *Session) clientID() string {
	if s.x == nil {
		return ""
	}
	return s.x.clientID
}

// resumed reports whether this session adopted a parked one.
func (s *Session) resumed() bool { return s.x != nil && s.x.resumed }
