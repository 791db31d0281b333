package broker

// Reservations: a transactional SEND is checked against its queue's limits
// and the broker-wide total when it arrives, and what it will add is held
// (reserved) until COMMIT turns it into the real enqueue or ABORT (or the
// end of the session) gives it back. COMMIT therefore never fails half-way,
// and open transactions can never hold more than the limits allow.

// reserve holds one message of size bytes for a transaction, if it fits
// the queue's limits and the broker's total; errQueueDeleted
// when the queue was retired since it was looked up.
func (q *queue) reserve(size int) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.deleted {
		return errQueueDeleted
	}
	if err := q.roomLocked(1, size); err != nil {
		return err
	}
	q.reservedCount++
	q.reservedBytes += size
	q.b.queuedBytes.Add(int64(size))
	return nil
}

// unreserve gives back one reservation of size bytes (ABORT, or a message
// that expired before COMMIT), and retires the queue if that left it idle.
func (q *queue) unreserve(size int) {
	q.mu.Lock()
	q.reservedCount--
	q.reservedBytes -= size
	q.b.queuedBytes.Add(-int64(size))
	q.wakeLocked() // an aborted transaction frees room for blocked producers
	q.mu.Unlock()
	q.retireIfIdle()
}

// isDeleted reports whether the queue was removed from its space.
func (q *queue) isDeleted() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.deleted
}

// enqueueReserved turns a reservation into the message itself, without
// checking limits again: the reservation already counts it. A queue with
// reservations is not retired, and a temporary queue outlives its session's
// transactions, so deleted is only a safety net: the message is dropped.
func (q *queue) enqueueReserved(m *Message) {
	size := m.size()
	q.mu.Lock()
	defer q.unlock()
	q.reservedCount--
	q.reservedBytes -= size
	if q.deleted {
		q.b.queuedBytes.Add(-int64(size))
		q.b.stats.Dropped.Add(1)
		q.wakeLocked()
		return
	}
	q.pushLocked(m, size) // queuedBytes already counts the reservation
}
