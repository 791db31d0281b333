package main

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/stompbox/stompbox/frames"
)

// The ways a delivery breaks a scenario's promise.
var (
	errLost       = errors.New("message lost")
	errDuplicate  = errors.New("message duplicated")
	errReordered  = errors.New("message reordered")
	errBadMessage = errors.New("message without stompbench headers")
)

// stamp is what a message says about itself.
type stamp struct {
	producer int
	seq      int64
	sentAt   int64 // intended send time, ns since the run's base
}

// readStamp parses the stompbench headers of a MESSAGE without allocating.
func readStamp(f *frames.Frame, producers int) (stamp, error) {
	var s stamp
	var seen int
	for i := range f.Headers {
		h := &f.Headers[i]
		var dst *int64
		switch string(h.Key) {
		case hdrProducer:
			v, ok := parseInt(h.Value)
			if !ok || v < 0 || v >= int64(producers) {
				return s, fmt.Errorf("%w: %s %q", errBadMessage, hdrProducer, h.Value)
			}
			s.producer = int(v)
			seen |= 1
			continue
		case hdrSeq:
			dst, seen = &s.seq, seen|2
		case hdrSentAt:
			dst, seen = &s.sentAt, seen|4
		default:
			continue
		}
		v, ok := parseInt(h.Value)
		if !ok {
			return s, fmt.Errorf("%w: %s %q", errBadMessage, h.Key, h.Value)
		}
		*dst = v
	}
	if seen != 7 {
		return s, errBadMessage
	}
	return s, nil
}

// parseInt reads a non-negative decimal.
func parseInt(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// ledger records, for the whole run, which (producer, seq) were delivered:
// a bit per message, set atomically by every consumer, so a duplicate is
// caught even when two consumers of a queue get the same message.
type ledger struct {
	bits     [][]atomic.Uint64 // per producer
	messages int64
}

func newLedger(producers int, messages int64) *ledger {
	l := &ledger{bits: make([][]atomic.Uint64, producers), messages: messages}
	for i := range l.bits {
		l.bits[i] = make([]atomic.Uint64, (messages+63)/64)
	}
	return l
}

// mark records a delivery; it fails if it was delivered before.
func (l *ledger) mark(s stamp) error {
	if s.seq >= l.messages {
		return fmt.Errorf("%w: producer %d seq %d is beyond the %d sent", errBadMessage, s.producer, s.seq, l.messages)
	}
	bit := uint64(1) << (s.seq % 64)
	if l.bits[s.producer][s.seq/64].Or(bit)&bit != 0 {
		return fmt.Errorf("%w: producer %d seq %d delivered twice", errDuplicate, s.producer, s.seq)
	}
	return nil
}

// missing counts the messages not delivered and names the first one.
func (l *ledger) missing() (count int64, first string) {
	for p, words := range l.bits {
		for seq := int64(0); seq < l.messages; seq++ {
			if words[seq/64].Load()&(uint64(1)<<(seq%64)) == 0 {
				if count == 0 {
					first = fmt.Sprintf("producer %d seq %d", p, seq)
				}
				count++
			}
		}
	}
	return count, first
}

// order checks one consumer's deliveries against the per-producer order.
// With gapless, every producer's messages must arrive one after the other
// (a topic subscriber, a lone queue consumer); otherwise only increasing
// (consumers sharing a queue each see a subsequence).
type order struct {
	next    []int64 // per producer: the lowest seq still acceptable
	gapless bool
	name    string // the consumer, for messages
}

func newOrder(producers int, gapless bool, name string) *order {
	return &order{next: make([]int64, producers), gapless: gapless, name: name}
}

// check accepts s or says how it breaks the order.
func (o *order) check(s stamp) error {
	want := o.next[s.producer]
	switch {
	case s.seq == want || (!o.gapless && s.seq > want):
		o.next[s.producer] = s.seq + 1
		return nil
	case s.seq > want:
		return fmt.Errorf("%w (or reordered): %s got producer %d seq %d after seq %d, seq %d missing",
			errLost, o.name, s.producer, s.seq, want-1, want)
	case o.gapless:
		// Everything before want arrived exactly once, in order.
		return fmt.Errorf("%w: %s got producer %d seq %d again (after seq %d)", errDuplicate, o.name, s.producer, s.seq, want-1)
	}
	return fmt.Errorf("%w: %s got producer %d seq %d after seq %d", errReordered, o.name, s.producer, s.seq, want-1)
}
