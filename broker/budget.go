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
// it did.
func (b *budget) charge(n int) bool {
	for {
		used := b.used.Load()
		if used+int64(n) > b.limit {
			return false
		}
		if b.used.CompareAndSwap(used, used+int64(n)) {
			return true
		}
	}
}

// force adds n whatever the limit: for what the broker must hold anyway
// (the frame being handled), so the budget still says what is held.
func (b *budget) force(n int) { b.used.Add(int64(n)) }

// release gives back n charged before.
func (b *budget) release(n int) { b.used.Add(-int64(n)) }

// held is what is charged now.
func (b *budget) held() int64 { return b.used.Load() }
