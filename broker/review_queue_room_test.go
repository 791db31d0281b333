package broker

import (
	"strings"
	"testing"

	"github.com/stompbox/stompbox/frames"
)

// A queue message the broker accepted (body within the frame limit) must
// reach an idle consumer with an empty outbox. With default limits a body of
// MaxBody bytes is larger than MaxOutboxBytes/2, so hasQueueRoom refuses it
// forever and it blocks the head of the queue: the later small message is
// never delivered either.
func TestReviewLargeQueueMessageNeverDelivered(t *testing.T) {
	b := New(Config{})
	cons := newClient(t, b)
	cons.connect()
	cons.mustSend(frames.CmdSubscribe, "", "id:s1", "destination:/queue/big", "receipt:r1")
	cons.next()

	prod := newClient(t, b)
	prod.connect()
	big := strings.Repeat("x", frames.DefaultMaxBody) // accepted by the parser
	prod.mustSend(frames.CmdSend, big, "destination:/queue/big", "receipt:p1")
	if f := prod.next(); f.Command != frames.CmdReceipt {
		t.Fatalf("SEND got %s, want RECEIPT", f.Command)
	}
	prod.mustSend(frames.CmdSend, "small", "destination:/queue/big", "receipt:p2")
	prod.next()

	var got []*frames.Frame
	for range 3 { // poll a few times: the writer re-dispatches starved queues
		got = append(got, cons.poll()...)
	}
	if len(got) != 2 {
		t.Fatalf("consumer got %d MESSAGE frames, want 2 (big, then small): queue is stuck", len(got))
	}
}
