package broker

import (
	"sync/atomic"

	"github.com/stompbox/stompbox/frames"
)

// counterStripes spreads the per-frame counters over separate cache lines:
// a session always adds to the stripe its number picks, so sessions on
// different cores rarely contend, and a scrape sums the stripes.
const counterStripes = 16

// frameCounters is one stripe. Its size is a multiple of the cache line,
// so neighbouring stripes never share one.
type frameCounters struct {
	in         [frames.NumCommands]atomic.Uint64
	out        [frames.NumCommands]atomic.Uint64
	heartbeats atomic.Uint64
	_          [64 - (2*frames.NumCommands*8+8)%64]byte
}

// counts is the session's stripe of the broker's frame counters,
// computed rather than kept as a pointer: the admin card took that word of
// the Session (issue 15 bounds its size).
func (s *Session) counts() *frameCounters { return &s.b.frameStripes[s.stripe%counterStripes] }

// closeCounters counts, per close reason, sessions that ended.
type closeCounters [closeReasonCount]atomic.Uint64

// errorCodes are the error-code values counted by stompbox_errors_total:
// every code an ERROR frame can carry, so the label set is fixed.
var errorCodes = [...]string{
	CodeFrameTooLarge, CodeMalformedFrame, CodeUnknownCommand, CodeProtocolError,
	CodeMissingHeader, CodeInvalidHeader, CodeInvalidDestination, CodeDuplicateSubscription,
	CodeUnknownSubscription, CodeSubscriptionInUse, CodeUnknownMessage, CodeUnknownTransaction,
	CodeAuthFailed, CodeForbidden, CodeUnsupportedVersion, CodeConnectTimeout,
	CodeHeartbeatTimeout, CodeSlowConsumer, CodeLimitExceeded, CodeServerShutdown, CodeInternal,
	CodeUnknownHost, CodeSessionTakenOver, CodeClosedByOperator,
}

// errorCounters counts ERROR frames by error-code, in errorCodes order;
// the last slot takes a code missing from the list.
type errorCounters [len(errorCodes) + 1]atomic.Uint64

func (c *errorCounters) add(code string) {
	for i, known := range errorCodes {
		if known == code {
			c[i].Add(1)
			return
		}
	}
	c[len(errorCodes)].Add(1)
}

// sumFrames adds up every stripe's counters.
func (b *Broker) sumFrames() (in, out [frames.NumCommands]uint64, heartbeats uint64) {
	for i := range b.frameStripes {
		st := &b.frameStripes[i]
		for c := range frames.NumCommands {
			in[c] += st.in[c].Load()
			out[c] += st.out[c].Load()
		}
		heartbeats += st.heartbeats.Load()
	}
	return in, out, heartbeats
}

// countOutput counts the frames the writer encoded: MESSAGE deliveries,
// and control frames by their first byte (CONNECTED, RECEIPT, ERROR are
// the only control frames a session queues).
func (st *frameCounters) countControl(first byte) {
	switch first {
	case 'C':
		st.out[frames.CmdConnected].Add(1)
	case 'R':
		st.out[frames.CmdReceipt].Add(1)
	case 'E':
		st.out[frames.CmdError].Add(1)
	}
}

// StripedCounter is a counter that sessions on every core add to at once
// (messages published, delivered): each session adds to the stripe its
// number picks, on a cache line of its own, so adding does not bounce one
// line between cores; Load sums the stripes.
type StripedCounter struct {
	stripes [counterStripes]struct {
		n atomic.Uint64
		_ [56]byte
	}
}

// Add adds n to stripe's share.
func (c *StripedCounter) Add(stripe uint32, n uint64) { c.stripes[stripe%counterStripes].n.Add(n) }

// Load returns the total.
func (c *StripedCounter) Load() uint64 {
	var sum uint64
	for i := range c.stripes {
		sum += c.stripes[i].n.Load()
	}
	return sum
}
