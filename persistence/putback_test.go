package persistence

import (
	"slices"
	"testing"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/frames"
)

// An auto-ack queue message taken for a consumer whose connection then
// dies before its writer takes it goes back to its queue. On disk it must
// never look consumed until the MESSAGE was handed to the writer: a crash
// at any point leaves it live, at its place (its original enqueue and
// sequence number), and once the consumer has it, it is removed.
func TestAutoAckPutBackKeepsSequence(t *testing.T) {
	const queue = "/queue/work"
	want := []string{"m1", "m2", "m3"}
	setup := func(t *testing.T) (string, *File, *peer) {
		dir := t.TempDir()
		b, f := startBroker(t, dir, broker.Config{})
		newPeer(t, b).sendPersistent(queue, want...)
		consumer := newPeer(t, b)
		consumer.send(frames.CmdSubscribe, "", "id:s", "destination:"+queue, "ack:auto")
		// The three MESSAGEs are in the consumer's outbox, not written.
		return dir, f, consumer
	}

	t.Run("crash while in the outbox", func(t *testing.T) {
		dir, f, _ := setup(t)
		mustClose(t, f) // everything the broker journaled so far is on disk; nothing more
		if got := liveBodies(t, dir, queue); !slices.Equal(got, want) {
			t.Fatalf("after a crash with the messages not yet written: live %v, want %v", got, want)
		}
	})

	t.Run("put back, then crash", func(t *testing.T) {
		dir, f, consumer := setup(t)
		consumer.s.Abort(broker.ClosePeer) // the connection died: the outbox goes back to the queue
		consumer.s.Release()
		mustClose(t, f)
		if got := liveBodies(t, dir, queue); !slices.Equal(got, want) {
			t.Fatalf("after a put-back and a restart: live %v, want %v (in their original order)", got, want)
		}
		// And the restarted broker delivers them in that order.
		b, f := startBroker(t, dir, broker.Config{})
		c := newPeer(t, b)
		c.send(frames.CmdSubscribe, "", "id:s", "destination:"+queue, "ack:auto")
		var got []string
		for _, m := range c.poll() {
			got = append(got, string(m.Body))
		}
		if !slices.Equal(got, want) {
			t.Fatalf("recovered broker delivered %v, want %v", got, want)
		}
		mustClose(t, f)
		if got := liveBodies(t, dir, queue); len(got) != 0 {
			t.Fatalf("after the writer took them: live %v, want none", got)
		}
	})

	t.Run("written", func(t *testing.T) {
		dir, f, consumer := setup(t)
		if fs := consumer.poll(); len(fs) != len(want) {
			t.Fatalf("consumer got %d frames, want %d MESSAGEs", len(fs), len(want))
		}
		mustClose(t, f)
		if got := liveBodies(t, dir, queue); len(got) != 0 {
			t.Fatalf("after the writer took them: live %v, want none", got)
		}
	})
}
