package broker

import (
	"testing"
	"time"

	"github.com/stompbox/stompbox/frames"
)

// A persistent SEND to the topic while a new durable subscription's create
// record is being journaled must not journal an enqueue to the durable's
// queue ahead of that create: replay order is sequence order, and an
// enqueue replayed before its durable exists is skipped as a message for
// an unknown queue. The durable collects only once its create is on disk;
// a SEND after the SUBSCRIBE's RECEIPT reaches it, journaled after the
// create.
func TestDurableCreateJournaledBeforeItsFeed(t *testing.T) {
	j := &gatedJournal{entered: make(chan struct{}, 1), release: make(chan struct{})}
	b := New(Config{Authenticator: anyUserAuth{}, Journal: j})
	sub := userClient(t, b, "alice", "app")
	done := make(chan []*frames.Frame, 1)
	go func() {
		if err := sub.send(frames.CmdSubscribe, "", "id:feed", "destination:/topic/news", "durable-subscription-name:feed", "receipt:r"); err != nil {
			done <- nil
			return
		}
		done <- sub.poll()
	}()
	select {
	case <-j.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the durable's create record never reached the journal")
	}
	pub := userClient(t, b, "bob", "")
	pub.mustSend(frames.CmdSend, "during", "destination:/topic/news", "persistent:true", "receipt:p1")
	if fs := pub.poll(); len(fs) != 1 || fs[0].Command != frames.CmdReceipt {
		t.Fatalf("SEND during the create: %v (%s), want its RECEIPT", commands(fs), errBody(fs))
	}
	close(j.release)
	got := <-done
	if len(got) == 0 || got[0].Command != frames.CmdReceipt {
		t.Fatalf("SUBSCRIBE: %v (%s), want its RECEIPT", commands(got), errBody(got))
	}
	pub.mustSend(frames.CmdSend, "after", "destination:/topic/news", "persistent:true", "receipt:p2")
	if fs := pub.poll(); len(fs) != 1 || fs[0].Command != frames.CmdReceipt {
		t.Fatalf("SEND after the SUBSCRIBE: %v (%s), want its RECEIPT", commands(fs), errBody(fs))
	}

	queue := durableQueueName(DurableSpec{User: "alice", ClientID: "app", Name: "feed"})
	created, enqueues := -1, 0
	for i, r := range j.all() {
		switch {
		case r.Op == OpDurableCreate && r.Queue == queue:
			created = i
		case r.Op == OpEnqueue && r.Queue == queue:
			if created < 0 {
				t.Fatalf("journal record %d enqueues %q to %s before the durable's create: %v", i, r.Message.Body, queue, ops(j.all()))
			}
			enqueues++
		}
	}
	if created < 0 || enqueues != 1 {
		t.Fatalf("journal %v: want the durable's create, then one enqueue (the SEND after the RECEIPT)", ops(j.all()))
	}
	if fs := sub.poll(); len(fs) != 1 || string(fs[0].Body) != "after" {
		t.Fatalf("the durable's consumer got %v %q, want only \"after\"", commands(fs), bodies(fs))
	}
}
