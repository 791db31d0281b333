package broker

import (
	"errors"
	"fmt"

	"github.com/stompbox/stompbox/frames"
)

// ErrQueueFull is wrapped by MoveDeadLetters when a destination queue has
// no room: the messages before it were moved, the rest stay in the
// dead-letter queue.
var ErrQueueFull = errors.New("broker: queue full")

// dlqHeaders are the headers deadLetterMessage adds, dropped again when a
// message goes back to its queue.
func dlqHeader(key []byte) bool {
	switch string(key) {
	case "dlq-reason", "original-destination", "original-message-id", "original-delivery-count":
		return true
	}
	return false
}

// MoveDeadLetters moves up to max ready messages (0: all) of dead-letter
// queue dlq back to the queues their original-destination headers name,
// front first, as new messages (new message-id, delivery count 0, the
// dead-letter headers removed). Each move is one atomic journal append
// (the DLQ's removal and the queue's enqueue), as dead-lettering is, so a
// crash neither loses nor duplicates it. It stops at the first message
// whose queue is full (ErrQueueFull), whose original destination is not a
// queue here (ErrNotAQueue) or that the journal refuses, and returns how
// many it moved with that error; that message stays at the DLQ's front.
func (b *Broker) MoveDeadLetters(vhost, dlq string, max int) (moved int, err error) {
	q, err := b.adminQueue(vhost, dlq)
	if err != nil {
		return 0, err
	}
	if q.kind() != 3 {
		return 0, fmt.Errorf("%w: %s is not a dead-letter queue (/queue/DLQ.*)", ErrNotAQueue, dlq)
	}
	if max <= 0 {
		// "All" is what is there now: messages a consumer rejects back
		// into the DLQ while they are moved must not keep this going.
		q.mu.Lock()
		max = q.ready.Len()
		q.mu.Unlock()
	}
	for moved < max {
		done, err := q.moveFront()
		if err != nil {
			return moved, fmt.Errorf("broker: move from %s stopped after %d messages: %w", dlq, moved, err)
		}
		if done {
			return moved, nil
		}
		moved++
	}
	return moved, nil
}

// moveFront moves the DLQ's front message back to its original queue;
// done when the DLQ has no ready message left.
func (q *queue) moveFront() (done bool, err error) {
	b, sp := q.b, q.sp
	q.mu.Lock()
	if q.ready.Len() == 0 || q.deleted {
		q.mu.Unlock()
		return true, nil
	}
	// Taken out of ready but still counted in q until its move is
	// journaled, as dead-lettering does: a refused move puts it back.
	qm := q.ready.PopFront()
	q.mu.Unlock()

	target := ""
	for _, h := range qm.msg.Headers {
		if string(h.Key) == "original-destination" {
			target = string(h.Value)
			break
		}
	}
	var dst *queue
	switch {
	case target == "":
		err = fmt.Errorf("%w: message %s has no original-destination header", ErrNotAQueue, qm.msg.ID)
	case isDLQName(target) || len(target) < len("/queue/x") || target[:len("/queue/")] != "/queue/":
		err = fmt.Errorf("%w: message %s came from %s, not a queue messages can be moved back to", ErrNotAQueue, qm.msg.ID, target)
	default:
		var serr *stompError
		if dst, serr = sp.queue(target, anyCreator); serr != nil {
			err = fmt.Errorf("%w: %s: %s", ErrQueueFull, target, serr.detail)
		} else if dst.clustered {
			err = fmt.Errorf("%w: %s lives in the cluster", ErrNotAQueue, target)
		} else if serr := dst.room(1, qm.msg.size()); serr != nil {
			err = fmt.Errorf("%w: %s: %s", ErrQueueFull, target, serr.detail)
		}
	}
	if err != nil {
		q.keep([]*queuedMessage{qm})
		return false, err
	}
	m := qm.msg.withoutDLQ(b.newMessageID(), target)
	if recs := q.appendRemoval(nil, qm); recs != nil {
		recs = append(recs, JournalRecord{Op: OpEnqueue, Queue: sp.journalPrefix + target, MessageID: m.ID, Message: m})
		if serr := b.journalAppend(recs...); serr != nil {
			q.keep([]*queuedMessage{qm})
			return false, serr
		}
	}
	// Room was checked above; a producer may have filled the queue since,
	// by a message or so: the move is journaled now and must not be lost.
	serr := sp.enqueueNamed(target, m, false, anyCreator)
	q.mu.Lock()
	q.settleLocked(qm, settleAck)
	q.dropLocked(qm)
	q.unlock()
	if serr != nil {
		// The journal has the move; memory could not take it (the target
		// was retired meanwhile and could not be made again). Said loudly:
		// the message is in the target after a restart, not before.
		b.cfg.Logger.Error("moved dead letter journaled but not queued in memory: it reaches its queue at the next restart",
			"dlq", q.name, "queue", target, "message_id", m.ID, "err", serr)
		return false, serr
	}
	return false, nil
}

// withoutDLQ is m's copy sent back to destination: new id, the headers
// dead-lettering added dropped.
func (m *Message) withoutDLQ(id, destination string) *Message {
	c := &Message{ID: id, Destination: destination, Body: m.Body, Persistent: m.Persistent, ExpiresAt: m.ExpiresAt}
	c.Headers = append(c.Headers, frames.Header{Key: []byte("destination"), Value: []byte(destination)})
	for _, h := range m.Headers {
		if string(h.Key) != "destination" && !dlqHeader(h.Key) {
			c.Headers = append(c.Headers, h)
		}
	}
	c.enc12 = appendHeaders12(nil, c.Headers)
	c.markText()
	return c
}
