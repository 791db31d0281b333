package broker

import "time"

// The parts of a Session that most connections never use live behind
// pointers, made when first needed: an idle connection (issue 15: a few
// KiB each, 19,000 of them) should carry only what every session needs.
// Flow control's state (sessionFlow, flow_session.go) is one of them.

// sessionRate is the per-connection rate limiting, made by NewSession only
// when MaxFramesPerSecond or MaxBytesPerSecond is set; read loop only.
type sessionRate struct {
	frames rateBucket // MaxFramesPerSecond
	bytes  rateBucket // MaxBytesPerSecond
	fedAt  time.Time  // when the chunk being parsed arrived
}
