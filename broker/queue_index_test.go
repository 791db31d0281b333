package broker

import (
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/stompbox/stompbox/frames"
)

// The index follows the queues map: a queue made by a SEND is found, one
// retired is gone, a temporary queue is gone with its session.
func TestQueueIndexFollowsQueues(t *testing.T) {
	b := New(Config{})
	sp := b.spaces[DefaultVirtualHost]
	c := newClient(t, b)
	c.connect()
	c.mustSend(frames.CmdSend, "x", "destination:/queue/a", "receipt:r")
	if f := c.next(); f.Command != frames.CmdReceipt {
		t.Fatalf("SEND: %s", f.Command)
	}
	q := sp.index.get("/queue/a")
	if q == nil || q != sp.queues["/queue/a"] {
		t.Fatalf("index has %p, map %p", q, sp.queues["/queue/a"])
	}
	c.mustSend(frames.CmdSubscribe, "", "id:s", "destination:/queue/a")
	if f := c.next(); f.Command != frames.CmdMessage {
		t.Fatalf("got %s", f.Command)
	}
	c.mustSend(frames.CmdUnsubscribe, "", "id:s", "receipt:u")
	c.next()
	if got := sp.index.get("/queue/a"); got != nil {
		t.Fatalf("a retired queue (empty, no consumer) is still indexed: %p", got)
	}
	c.mustSend(frames.CmdSubscribe, "", "id:t", "destination:/temp-queue/r", "receipt:t")
	c.next()
	n := 0
	sp.index.m.Range(func(any, any) bool { n++; return true })
	if n != len(sp.queues) || n != 1 {
		t.Fatalf("index holds %d, map %d; want the temporary queue alone", n, len(sp.queues))
	}
	_ = c.send(frames.CmdDisconnect, "", "receipt:d") // the session ends: an error here says so
	c.s.Release()                                     // released for good (a dropped one would be parked, its queue kept)
	sp.index.m.Range(func(k, _ any) bool {
		t.Fatalf("%v still indexed after the session ended", k)
		return false
	})
}

// BenchmarkQueueLookup: both cores looking up queues of one space, as
// every SEND does: through the space's lock (before) against the sharded
// index (now).
func BenchmarkQueueLookup(b *testing.B) {
	br := New(Config{})
	sp := br.spaces[DefaultVirtualHost]
	var names []string
	for i := range 64 {
		name := "/queue/q" + strconv.Itoa(i)
		names = append(names, name)
		sp.mu.Lock()
		sp.setQueueLocked(name, newQueue(sp, name, nil, false))
		sp.mu.Unlock()
	}
	b.Run("space-lock", func(b *testing.B) {
		var next atomic.Uint32
		b.RunParallel(func(pb *testing.PB) {
			i := int(next.Add(1)) * 17
			for pb.Next() {
				sp.mu.RLock()
				q := sp.queues[names[i%len(names)]]
				sp.mu.RUnlock()
				if q == nil {
					b.Fatal("missing")
				}
				i++
			}
		})
	})
	b.Run("index", func(b *testing.B) {
		var next atomic.Uint32
		b.RunParallel(func(pb *testing.PB) {
			i := int(next.Add(1)) * 17
			for pb.Next() {
				if q, _ := sp.queue(names[i%len(names)], nil); q == nil {
					b.Fatal("missing")
				}
				i++
			}
		})
	})
}
