package broker

import "sync/atomic"

// budget is a connection's one byte budget: everything the broker holds
// because of that connection is charged to it (outbox entries at their
// encoded size, control frames, unacknowledged topic messages, open
// transactions, input held while the connection is blocked). Output that
// does not fit makes a slow consumer; input that does not fit blocks the
// producer. Safe for concurrent use: publishers charge deliveries, the
// writer releases them, the read loop charges input.
type budget struct {
	used  atomic.Int64
	limit int64 // immutable
}

// charge adds n if the total stays within the limit, and reports whether
// it did. It is one atomic add on the delivery path (undone when over),
// not a load and compare-and-swap loop: a charge racing with one that is
// being undone may fail near the limit, which only moves the point where
// a client is slow by one message.
func (b *budget) charge(n int) bool {
	if b.used.Add(int64(n)) > b.limit {
		b.used.Add(-int64(n))
		return false
	}
	return true
}

// force adds n whatever the limit: for what the broker must hold anyway
// (the frame being handled), so the budget still says what is held.
func (b *budget) force(n int) { b.used.Add(int64(n)) }

// release gives back n charged before.
func (b *budget) release(n int) { b.used.Add(-int64(n)) }

// held is what is charged now.
func (b *budget) held() int64 { return b.used.Load() }
