package broker

import (
	"slices"
	"strconv"
	"testing"

	"github.com/stompbox/stompbox/frames"
)

// A queue backlog may fill only half a consumer's outbox, so a topic message
// arriving on the same connection still fits: the connection is not closed
// as a slow consumer and no queue message is lost.
func TestQueueBacklogLeavesRoomForTopics(t *testing.T) {
	b := New(Config{MaxOutboxBytes: 4096})
	pub := newClient(t, b)
	pub.connect()
	for i := range 100 {
		pub.mustSend(frames.CmdSend, "q"+strconv.Itoa(i), "destination:/queue/q")
	}
	c := newClient(t, b)
	c.connect()
	c.mustSend(frames.CmdSubscribe, "", "destination:/topic/t", "id:t")
	c.mustSend(frames.CmdSubscribe, "", "destination:/queue/q", "id:q")
	pub.mustSend(frames.CmdSend, "tick", "destination:/topic/t")
	var got []string
	for range 200 { // each poll frees the outbox and lets the queue refill it
		got = append(got, bodies(c.poll())...)
		if c.closing {
			t.Fatal("consumer closed: a queue backlog made a topic message overflow the outbox")
		}
	}
	if n := b.Stats().SlowConsumers.Load(); n != 0 {
		t.Fatalf("%d slow consumers", n)
	}
	want := []string{"tick"}
	for i := range 100 {
		want = append(want, "q"+strconv.Itoa(i))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("got %d messages %v, want every queue message and the tick", len(got), got)
	}
}

// Auto-ack queue messages still waiting in an outbox when the connection is
// dropped (slow consumer, peer gone) go back to the queue: they were never
// written, so they were never delivered.
func TestAutoAckBacklogReturnsToQueueOnAbort(t *testing.T) {
	b := New(Config{})
	pub := newClient(t, b)
	pub.connect()
	for i := range 5 {
		pub.mustSend(frames.CmdSend, "m"+strconv.Itoa(i), "destination:/queue/q")
	}
	c := newClient(t, b)
	c.connect()
	c.mustSend(frames.CmdSubscribe, "", "destination:/queue/q", "id:q") // auto ack; nothing taken yet
	c.s.Abort(ClosePeer)
	c.s.Release()
	d := newClient(t, b)
	d.connect()
	d.mustSend(frames.CmdSubscribe, "", "destination:/queue/q", "id:q")
	fs := d.poll()
	if got := bodies(fs); !slices.Equal(got, []string{"m0", "m1", "m2", "m3", "m4"}) {
		t.Fatalf("second consumer got %v, want all five in order", got)
	}
	if hdr(fs[0], "redelivered") != "true" {
		t.Fatalf("a message queued to a connection that died is marked redelivered: got %q", hdr(fs[0], "redelivered"))
	}
}

// A transaction is held to the queue limits as its SENDs arrive, counting
// what it already holds, so COMMIT cannot take a queue past them.
func TestTransactionSendsRespectQueueLimits(t *testing.T) {
	b := New(Config{MaxQueueMessages: 2, FullPolicy: FullError})
	c := newClient(t, b)
	c.connect()
	c.mustSend(frames.CmdSubscribe, "", "destination:/queue/q", "id:s", "ack:client", "prefetch-count:1")
	c.mustSend(frames.CmdBegin, "", "transaction:t")
	c.mustSend(frames.CmdSend, "1", "destination:/queue/q", "transaction:t")
	c.mustSend(frames.CmdSend, "2", "destination:/queue/q", "transaction:t")
	err := c.send(frames.CmdSend, "3", "destination:/queue/q", "transaction:t", "receipt:r")
	if !isClosed(err) {
		t.Fatalf("third SEND in the transaction: %v, want the session closed", err)
	}
	f := c.next()
	if f.Command != frames.CmdError || hdr(f, "error-code") != CodeLimitExceeded || hdr(f, "receipt-id") != "r" {
		t.Fatalf("got %s %v, want ERROR limit-exceeded for receipt r", f.Command, headerLines(f))
	}
	q, _ := b.spaces[DefaultVirtualHost].queue("/queue/q", nil)
	if q != nil && q.count != 0 {
		t.Fatalf("queue holds %d messages; the uncommitted transaction must not have added any", q.count)
	}
}

// Re-subscribing a durable subscription to another topic while another
// connection consumes it is refused: it must not delete a subscription in
// use.
func TestDurableInUseCannotBeReplaced(t *testing.T) {
	b := New(Config{})
	a := newClient(t, b)
	a.connect("client-id:X")
	a.mustSend(frames.CmdSubscribe, "", "destination:/topic/a", "id:s", "ack:client", "durable-subscription-name:d")
	a.mustSend(frames.CmdSend, "m", "destination:/topic/a")
	if got := bodies(a.poll()); !slices.Equal(got, []string{"m"}) {
		t.Fatalf("A got %v", got)
	}
	other := newClient(t, b)
	other.connect("client-id:X")
	err := other.send(frames.CmdSubscribe, "", "destination:/topic/b", "id:s", "durable-subscription-name:d")
	if !isClosed(err) {
		t.Fatalf("SUBSCRIBE of a durable in use to another topic: %v, want ERROR", err)
	}
	if f := other.next(); hdr(f, "error-code") != CodeSubscriptionInUse {
		t.Fatalf("got %v, want subscription-in-use", headerLines(f))
	}
	a.s.Release() // the unacked "m" goes back to the durable, which still exists
	again := newClient(t, b)
	again.connect("client-id:X")
	again.mustSend(frames.CmdSubscribe, "", "destination:/topic/a", "id:s", "durable-subscription-name:d")
	if got := bodies(again.poll()); !slices.Equal(got, []string{"m"}) {
		t.Fatalf("after reconnect the durable gave %v, want the unacked m", got)
	}
}

// hookTransport runs a function on its first Wake: here, in the middle of
// a SUBSCRIBE, between looking its queue up and serving it.
type hookTransport struct {
	fakeTransport
	hook func()
}

func (h *hookTransport) Wake() {
	h.fakeTransport.Wake()
	if f := h.hook; f != nil {
		h.hook = nil
		f()
	}
}

// A SUBSCRIBE racing with the retirement of its idle queue still ends up
// consuming the live queue.
func TestSubscribeSurvivesQueueRetirement(t *testing.T) {
	b := New(Config{})
	ht := &hookTransport{}
	a := &client{t: t, s: b.NewSession(ht, "a"), tr: &ht.fakeTransport, version: frames.V12, parser: frames.NewParser(frames.Limits{})}
	a.connect()
	other := newClient(t, b)
	other.connect()
	ht.hook = func() { // runs when A's SUBSCRIBE queues its RECEIPT
		other.mustSend(frames.CmdSubscribe, "", "destination:/queue/r", "id:x")
		other.mustSend(frames.CmdUnsubscribe, "", "id:x")
	}
	a.mustSend(frames.CmdSubscribe, "", "destination:/queue/r", "id:a", "receipt:r")
	a.poll()
	other.mustSend(frames.CmdSend, "hello", "destination:/queue/r")
	if got := bodies(a.poll()); !slices.Equal(got, []string{"hello"}) {
		t.Fatalf("A got %v, want hello", got)
	}
}
