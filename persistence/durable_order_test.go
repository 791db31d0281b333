package persistence

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/frames"
)

// Durable subscriptions created while persistent SENDs to their topic
// stream in from other connections: on disk, no enqueue to a durable
// subscription's queue may come before that subscription's create record
// in sequence (replay) order, or recovery would skip it as a message for
// an unknown queue.
func TestDurableCreateSequencedBeforeItsMessages(t *testing.T) {
	const publishers, durables = 4, 16
	dir := t.TempDir()
	b, f := startBroker(t, dir, broker.Config{})
	var stop atomic.Bool
	var wg sync.WaitGroup
	var sent atomic.Int64
	for range publishers {
		p := newPeer(t, b)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5_000 && !stop.Load(); i++ {
				if err := p.s.Feed(frames.AppendFrame(nil, frames.V12, &frames.Frame{Command: frames.CmdSend,
					Headers: []frames.Header{{Key: []byte("destination"), Value: []byte("/topic/t")},
						{Key: []byte("persistent"), Value: []byte("true")}}, Body: []byte("x")})); err != nil {
					t.Errorf("SEND: %v", err)
					return
				}
				p.s.AppendOutput(nil)
				sent.Add(1)
				// As a driver does: answer the pokes of completed journal
				// writes, and stop reading while the session is paused
				// (its in-flight SENDs fill the connection's budget).
				for paused := true; paused; {
					select {
					case <-p.tr.poked:
						if err := p.s.Poked(); err != nil {
							t.Errorf("Poked: %v", err)
							return
						}
					default:
					}
					if paused, _ = p.s.FlowWait(); paused {
						select {
						case <-p.tr.poked:
						case <-time.After(time.Second):
						}
						if err := p.s.Poked(); err != nil {
							t.Errorf("Poked: %v", err)
							return
						}
					}
				}
			}
		}()
	}
	for i := range durables {
		c := newPeerAs(t, b, "client-id:c"+strconv.Itoa(i))
		c.send(frames.CmdSubscribe, "", "id:s", "destination:/topic/t", "durable-subscription-name:d", "receipt:r")
		if !c.awaitReceipt("r", 5*time.Second) {
			t.Fatalf("durable SUBSCRIBE %d: no RECEIPT within 5 s", i)
		}
		c.s.Release()
	}
	stop.Store(true)
	wg.Wait()
	mustClose(t, f)

	f = open(t, dir, Config{})
	created := map[string]bool{}
	enqueued := 0
	for _, r := range replay(t, f) {
		switch r.Op {
		case broker.OpDurableCreate:
			created[r.Queue] = true
		case broker.OpEnqueue:
			if !created[r.Queue] {
				t.Fatalf("an enqueue to %s replays before its durable subscription's create", r.Queue)
			}
			enqueued++
		}
	}
	if len(created) != durables || enqueued == 0 {
		t.Fatalf("%d durable subscriptions and %d enqueues to them replayed (%d SENDs); want %d and some",
			len(created), enqueued, sent.Load(), durables)
	}
}
