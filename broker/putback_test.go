package broker

import (
	"slices"
	"testing"

	"github.com/stompbox/stompbox/frames"
)

// An auto-ack consumer unsubscribes with a persistent message still in its
// outbox, so its queue (empty, no consumer) is retired, and then its
// connection dies before the writer took the message: the message goes
// back to a queue of the same name, not lost, and no removal of it is
// journaled (its enqueue is still live on disk).
func TestPutBackIntoRetiredQueue(t *testing.T) {
	j := &memJournal{}
	b := New(Config{Journal: j})
	p := newClient(t, b)
	p.connect()
	p.mustSend(frames.CmdSend, "kept", "destination:/queue/work", "persistent:true")
	c := newClient(t, b)
	c.connect()
	c.mustSend(frames.CmdSubscribe, "", "id:s", "destination:/queue/work")
	c.mustSend(frames.CmdUnsubscribe, "", "id:s")
	if q, _ := b.spaces[DefaultVirtualHost].queue("/queue/work", nil); q != nil {
		t.Fatal("the queue was not retired with its only message in a consumer's outbox")
	}
	c.s.Abort(ClosePeer)
	c.s.Release()
	if n := b.stats.Dropped.Load(); n != 0 {
		t.Fatalf("%d messages dropped", n)
	}
	for _, r := range j.all() {
		if r.Op == OpRemove {
			t.Fatalf("journaled %v %s %s for a message no consumer got", r.Op, r.Queue, r.MessageID)
		}
	}
	d := newClient(t, b)
	d.connect()
	d.mustSend(frames.CmdSubscribe, "", "id:s", "destination:/queue/work")
	if got := bodies(d.poll()); !slices.Equal(got, []string{"kept"}) {
		t.Fatalf("next consumer got %v, want [kept]", got)
	}
	if rs := j.all(); rs[len(rs)-1].Op != OpRemove {
		t.Fatalf("journal %v: want the removal last, once the consumer's writer took it", ops(rs))
	}
}

// An auto-ack consumer's writer journals the removals of the persistent
// queue messages it takes, all of one write together, and none before;
// past maxKeptRemovals it does not keep the room for them afterwards.
func TestWriterJournalsAutoAckRemovals(t *testing.T) {
	for _, n := range []int{10, maxKeptRemovals + 44} {
		j := &memJournal{}
		b := New(Config{Journal: j})
		p := newClient(t, b)
		p.connect()
		for range n {
			p.mustSend(frames.CmdSend, "m", "destination:/queue/work", "persistent:true")
		}
		c := newClient(t, b)
		c.connect()
		c.mustSend(frames.CmdSubscribe, "", "id:s", "destination:/queue/work")
		removals := func() int {
			j.mu.Lock()
			defer j.mu.Unlock()
			k := 0
			for _, r := range j.forgets {
				if r.Op == OpRemove {
					k++
				}
			}
			return k
		}
		if k := removals(); k != 0 {
			t.Fatalf("%d removals journaled before the writer took any MESSAGE", k)
		}
		if got := len(bodies(c.poll())); got != n {
			t.Fatalf("consumer got %d messages, want %d", got, n)
		}
		if k := removals(); k != n {
			t.Fatalf("%d removals journaled after the writer took %d MESSAGEs", k, n)
		}
		if kept := cap(c.s.spareRemovals); (n > maxKeptRemovals) != (kept == 0) {
			t.Fatalf("after a write of %d removals the session keeps room for %d (bound %d)", n, kept, maxKeptRemovals)
		}
	}
}
