package broker

import "sync/atomic"

// budget is a connection's one byte budget: everything the broker holds
// because of that connection is charged to it (outbox entries at their
// encoded size, control frames, unacknowledged topic messages, open
// transactions, input held while the connection is blocked). Output that
// does not fit makes a slow consumer; input that does not fit blocks the
// producer. Safe for concurrent use: publishers charge deliveries, the
// writer releases them, the read loop charges input.
//
// The outbox's bytes are part of the budget without being added to used:
// the outbox counts them under its own lock anyway, so a delivery costs no
// atomic write (the fan-out path pushes one per subscriber). charge takes
// the outbox's lock to see them; the outbox checks used with a plain
// atomic load under that same lock, so the two never both fit into the
// same room. Lock order: outbox.mu, then nothing.
//
// Input held while the connection is blocked (input) counts toward the
// budget only for deciding when to stop reading, never against output: a
// blocked producer must still receive its MESSAGEs and RECEIPTs, not be
// closed as a slow consumer because of its own held SENDs. Output and
// held input are each bounded by the limit, so a connection holds at most
// twice its budget.
type budget struct {
	used  atomic.Int64 // what is charged besides the outbox's bytes and held input
	input atomic.Int64 // input held while blocked (read loop writes, others may read)
	limit int64        // immutable
	out   *outbox      // immutable: the session's outbox; nil when only used counts (tests)
}

// charge adds n if the total stays within the limit, and reports whether
// it did.
func (b *budget) charge(n int) bool {
	if b.out != nil {
		b.out.mu.Lock()
		defer b.out.mu.Unlock()
		if b.used.Load()+int64(b.out.bytes)+int64(n) > b.limit {
			return false
		}
		b.used.Add(int64(n))
		return true
	}
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

// held is what is charged now, the outbox's bytes and held input
// included.
func (b *budget) held() int64 {
	if b.out == nil {
		return b.used.Load() + b.input.Load()
	}
	b.out.mu.Lock()
	defer b.out.mu.Unlock()
	return b.used.Load() + b.input.Load() + int64(b.out.bytes)
}

// holdInput counts n bytes of input held while blocked, whatever the
// limit (they are held anyway), and reports whether everything charged
// still fits: when not, the driver stops reading.
func (b *budget) holdInput(n int) bool {
	b.input.Add(int64(n))
	return b.held() <= b.limit
}

// releaseInput gives back held input.
func (b *budget) releaseInput(n int) { b.input.Add(-int64(n)) }

// roomLocked reports whether the outbox, whose lock the caller holds, may
// add n bytes within the budget.
func (b *budget) roomLocked(outBytes, n int) bool {
	return b.used.Load()+int64(outBytes)+int64(n) <= b.limit
}
