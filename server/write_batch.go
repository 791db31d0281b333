package server

// writeBatch is a writer's buffers for one flush: the frames' bytes, where
// each ends, and whether each is valid UTF-8 (a WebSocket text message).
type writeBatch struct {
	out  []byte
	ends []int
	text []bool
}

// maxKeptBatch is the largest batch buffer kept for the next flush: a
// burst's buffers are not pinned for a quiet connection.
const maxKeptBatch = 64 << 10

// heartbeat adds a STOMP heart-beat (an EOL) as a frame of its own.
func (b *writeBatch) heartbeat() {
	b.out = append(b.out, '\n')
	b.ends = append(b.ends, len(b.out))
	b.text = append(b.text, true)
}

// keep reports whether the batch is small enough to reuse.
func (b *writeBatch) keep() bool { return cap(b.out) <= maxKeptBatch }
