package broker

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stompbox/stompbox/frames"
)

// Cluster mode's edges, each found in review: what a fed queue message
// does when its consumer is parked, slow, new or gone, and what a remote
// topic message does to durable subscriptions.

// A consumer whose connection dropped is parked for resume_grace (2 min by
// default) and stays a consumer of its queue, but it cannot take
// anything: nothing is fetched for it, and what its node holds ready goes
// back to the cluster for consumers on other nodes.
func TestClusterParkedConsumerIsNotFed(t *testing.T) {
	mc := newMemCluster()
	a, b := mc.node(Config{}), mc.node(Config{})
	parkedSubscriber(t, a.b, "id:q", "destination:/queue/q", "ack:client", "receipt:sub")
	pub := newClient(t, a.b)
	pub.connect()
	for i := range 10 {
		pub.mustSend(frames.CmdSend, strconv.Itoa(i), "destination:/queue/q")
	}
	mc.pump()
	cb := queueConsumer(t, b, "client-individual", 0)
	mc.pump()
	got := len(cb.poll())
	held := 0
	if q := a.b.spaces[DefaultVirtualHost].queues["/queue/q"]; q != nil {
		q.mu.Lock()
		held = q.ready.Len()
		q.mu.Unlock()
	}
	if got != 10 {
		t.Fatalf("node B's live consumer got %d of 10; node A holds %d in its ready list for a parked session "+
			"(kept InProgress by keepAlive for the whole resume grace)", got, held)
	}
}

// A message fetched and given back without ever being delivered counts as
// a delivery in JetStream, so the next consumer would see it as
// redelivered (and max_redeliveries dead-letter it early): nothing is
// fetched for a parked consumer.
func TestClusterParkedConsumerDoesNotInflateDeliveryCount(t *testing.T) {
	mc := newMemCluster()
	a, b := mc.node(Config{MaxRedeliveries: 1}), mc.node(Config{MaxRedeliveries: 1})
	c := newClient(t, a.b)
	c.connect()
	c.mustSend(frames.CmdSubscribe, "", "id:q", "destination:/queue/q", "ack:client-individual", "receipt:sub")
	mustFrame(t, c, "RECEIPT")
	c.s.Abort(ClosePeer)
	c.s.Release() // parked
	pub := newClient(t, a.b)
	pub.connect()
	pub.mustSend(frames.CmdSend, "m", "destination:/queue/q")
	mc.pump()           // fed to node A for the parked session, never delivered
	a.b.ReleaseParked() // grace over: given back (Nak)
	cb := queueConsumer(t, b, "client-individual", 0)
	mc.pump()
	f := cb.next()
	if f.Command != frames.CmdMessage {
		t.Fatalf("got %s", f.Command)
	}
	if hdr(f, "redelivered") == "true" {
		t.Fatalf("first delivery to any client has redelivered:true delivery-count:%s", hdr(f, "delivery-count"))
	}
}

func mkMsg(id, dest, body string, persistent bool) *Message {
	m := (&Message{Body: []byte(body), Persistent: persistent}).withHeaders(id, dest)
	return m
}

// A node that had a journal with /queue/ messages restarts in cluster
// mode: Recover puts them into a clustered queue with no Settler. An ACK
// then journals no removal (the queue is not journaled), so they come
// back at every restart; and when the last consumer leaves,
// A journal holding messages of /queue/ destinations cannot be recovered
// into cluster mode: the cluster never saw them, and a clustered queue
// journals nothing, so they would come back after every restart or be
// lost. Recover refuses, loudly.
func TestClusterRecoverRefusesJournaledQueueMessages(t *testing.T) {
	j := &memJournal{}
	m := mkMsg("old-1", "/queue/q", "old", true)
	_ = j.Append(context.Background(), JournalRecord{Op: OpEnqueue, Queue: "/queue/q", MessageID: m.ID, Message: m})
	mc := newMemCluster()
	a := mc.node(Config{Journal: j})
	err := a.b.Recover()
	if !errors.Is(err, ErrJournalHoldsClusterQueues) || !strings.Contains(err.Error(), "/queue/q") {
		t.Fatalf("Recover: %v, want ErrJournalHoldsClusterQueues naming /queue/q", err)
	}
	// Without cluster mode the same journal recovers.
	if err := New(Config{Journal: j}).Recover(); err != nil {
		t.Fatalf("single-node Recover: %v", err)
	}
}

// A persistent topic message from another node was never journaled here:
// an offline durable subscription's backlog takes it within its limits
// (the newest dropped past them), not as a journaled message promised to
// it.
func TestClusterRemotePersistentTopicKeepsDurableLimits(t *testing.T) {
	mc := newMemCluster()
	j := &memJournal{}
	a := mc.node(Config{})
	b := mc.node(Config{Journal: j, MaxQueueMessages: 5})
	d := userClient(t, b.b, "u", "cid")
	d.subscribeDurable("/topic/t", "d1")
	d.s.Release() // the durable stays, without a consumer
	pub := newClient(t, a.b)
	pub.connect()
	for i := range 50 {
		pub.mustSend(frames.CmdSend, strconv.Itoa(i), "destination:/topic/t", "persistent:true")
	}
	sp := b.b.spaces[DefaultVirtualHost]
	var n int
	sp.mu.RLock()
	for _, du := range sp.durables {
		du.queue.mu.Lock()
		n = du.queue.count
		du.queue.mu.Unlock()
	}
	sp.mu.RUnlock()
	if n > 5 {
		t.Fatalf("offline durable on node B holds %d messages from node A, limit 5", n)
	}
}

// RECEIPT before MESSAGE: the feed started in attach may offer a message
// that is dispatched to the new consumer before handleSubscribe queues the
// RECEIPT. racyCluster's feed offers from its own goroutine as soon as it
// starts, as the router's does once its fetch returns.
type racyCluster struct {
	*memNode
	msgs chan *Message
}

type nopFeed struct{}

func (nopFeed) More() {}
func (nopFeed) Stop() {}

type nopSettler struct{}

func (nopSettler) Ack()  {}
func (nopSettler) Nak()  {}
func (nopSettler) Term() {}

func (r *racyCluster) ConsumeQueue(vhost, queue string, sink QueueSink) QueueFeed {
	go func() {
		for m := range r.msgs {
			sink.Offer(m, 1, nopSettler{})
		}
	}()
	return nopFeed{}
}

func TestClusterFedMessageComesAfterSubscribeReceipt(t *testing.T) {
	bad := 0
	for i := range 300 {
		mc := newMemCluster()
		rc := &racyCluster{msgs: make(chan *Message, 1)}
		rc.memNode = &memNode{c: mc, interest: map[string]int{}}
		rc.memNode.b = New(Config{Cluster: rc})
		m := mkMsg("m"+strconv.Itoa(i), "/queue/q", "x", false)
		rc.msgs <- m
		c := newClient(t, rc.memNode.b)
		c.connect()
		var wg sync.WaitGroup
		c.mustSend(frames.CmdSubscribe, "", "id:q", "destination:/queue/q", "receipt:sub")
		wg.Wait()
		// Wait for the offer to land.
		var fs []*frames.Frame
		for range 1000 {
			fs = append(fs, c.poll()...)
			if len(fs) >= 2 {
				break
			}
		}
		close(rc.msgs)
		if len(fs) >= 1 && fs[0].Command != frames.CmdReceipt {
			bad++
		}
	}
	if bad > 0 {
		t.Fatalf("%d of 300 SUBSCRIBEs got a MESSAGE before their RECEIPT", bad)
	}
}

// docs/cluster.md: "64 in flight per ack:auto consumer": the fed
// deliveries still in a consumer's outbox count against its window, so a
// consumer that reads nothing is not fed 500 messages.
func TestClusterAutoAckCreditCountsOutbox(t *testing.T) {
	mc := newMemCluster()
	a := mc.node(Config{})
	c := queueConsumer(t, a, "auto", 0) // never reads again
	pub := newClient(t, a.b)
	pub.connect()
	for i := range 500 {
		pub.mustSend(frames.CmdSend, strconv.Itoa(i), "destination:/queue/q")
	}
	mc.pump()
	left := len(mc.queue("/" + "/queue/q").ready)
	if taken := 500 - left; taken > 64 {
		t.Fatalf("node A took %d messages out of the cluster for one auto-ack consumer that read none (doc: 64)", taken)
	}
	_ = c
}

// A topic with history on node B: a message published on node A reaches
// B's subscriber without an offset and is not retained in B's history
// (DeliverTopic bypasses topicHistory), so a client that resumes after the
