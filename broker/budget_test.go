package broker

import (
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/stompbox/stompbox/frames"
)

// sendSize is what a SEND with these headers and body counts in a queue
// (Message.size), built as handleSend builds it.
func sendSize(dest, body string) int {
	f := &frames.Frame{Command: frames.CmdSend, Body: []byte(body),
		Headers: []frames.Header{{Key: []byte("destination"), Value: []byte(dest)}}}
	return newMessage(f, "x", dest, "", false, 0).size()
}

// sendFrame is a borrowed-style SEND frame for calling handlers directly.
func sendFrame(body string, headers ...string) *frames.Frame {
	f := &frames.Frame{Command: frames.CmdSend, Body: []byte(body)}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		f.Headers = append(f.Headers, frames.Header{Key: []byte(k), Value: []byte(v)})
	}
	return f
}

// released ends c's session as the driver does and checks that nothing
// stays charged to its budget once the writer has taken the last frame.
func released(t *testing.T, c *client) {
	t.Helper()
	c.s.Release()
	c.poll()
	if held := c.s.budget.held(); held != 0 {
		t.Fatalf("budget holds %d bytes after release, want 0", held)
	}
}

// A transactional SEND reserves its room in its queue (created if need be)
// and in the broker's total when it is accepted; past either it is refused
// as full now (nothing changed), and the reservations go with ABORT or the
// end of the session.
func TestTransactionReservesQueueRoom(t *testing.T) {
	body := strings.Repeat("x", 1000)
	cases := []struct {
		name  string
		cfg   func(size int) Config
		dests [3]string // the three SENDs; the third is refused
		full  FullReason
	}{
		{"queue bytes, new queue", func(n int) Config { return Config{MaxQueueBytes: 2 * n} },
			[3]string{"/queue/new", "/queue/new", "/queue/new"}, FullQueue},
		{"queue messages, temporary queue", func(int) Config { return Config{MaxQueueMessages: 2} },
			[3]string{"/temp-queue/r", "/temp-queue/r", "/temp-queue/r"}, FullQueue},
		{"broker total, temporary queues", func(n int) Config { return Config{MaxTotalQueuedBytes: 2 * n, MaxDestinationsPerConnection: 10} },
			[3]string{"/temp-queue/a", "/temp-queue/b", "/temp-queue/c"}, FullTotal},
		{"broker total, new queues", func(n int) Config { return Config{MaxTotalQueuedBytes: 2 * n, MaxDestinationsPerConnection: 10} },
			[3]string{"/queue/a", "/queue/b", "/queue/c"}, FullTotal},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			size := sendSize(tc.dests[0], body) // the destinations of a case have the same length
			b := New(tc.cfg(size))
			c := newClient(t, b)
			c.connect()
			c.mustSend(frames.CmdBegin, "", "transaction:t")
			c.mustSend(frames.CmdSend, body, "destination:"+tc.dests[0], "transaction:t")
			c.mustSend(frames.CmdSend, body, "destination:"+tc.dests[1], "transaction:t")
			if got := b.queuedBytes.Load(); got != int64(2*size) {
				t.Fatalf("broker queued bytes %d with two reservations, want %d", got, 2*size)
			}
			if got := c.s.budget.held(); got != int64(2*size) {
				t.Fatalf("budget holds %d, want the transaction's %d", got, 2*size)
			}
			sp := b.spaces[DefaultVirtualHost]
			queues, created := len(sp.queues), c.s.created
			err := c.s.handleSend(sendFrame(body, "destination:"+tc.dests[2], "transaction:t"))
			if err == nil || err.full != tc.full || !err.retryable || err.code != CodeLimitExceeded {
				t.Fatalf("third SEND: %+v, want limit-exceeded full %v", err, tc.full)
			}
			if got := b.queuedBytes.Load(); got != int64(2*size) || c.s.budget.held() != int64(2*size) {
				t.Fatalf("a refused SEND changed the counts: queued %d, budget %d", got, c.s.budget.held())
			}
			if len(sp.queues) != queues || c.s.created != created || (tc.full == FullTotal && created != 2) {
				t.Fatalf("a refused SEND left %d queues (was %d), %d destinations created (was %d)",
					len(sp.queues), queues, c.s.created, created)
			}
			released(t, c)
			if got := b.queuedBytes.Load(); got != 0 {
				t.Fatalf("broker queued bytes %d after the session ended, want 0", got)
			}
			if n := len(sp.queues); n != 0 {
				t.Fatalf("%d queues left after the session ended, want 0 (reserved-for queues retired)", n)
			}
		})
	}
}

// ABORT gives the reservations back and retires the queue it created;
// COMMIT turns them into the messages without counting them twice; a plain
// SEND meanwhile sees the reserved room as taken.
func TestTransactionAbortAndCommit(t *testing.T) {
	body := strings.Repeat("x", 100)
	size := sendSize("/queue/a", body)
	b := New(Config{MaxQueueMessages: 2})
	c := newClient(t, b)
	c.connect()
	sp := b.spaces[DefaultVirtualHost]

	c.mustSend(frames.CmdBegin, "", "transaction:t")
	c.mustSend(frames.CmdSend, body, "destination:/queue/a", "transaction:t")
	c.mustSend(frames.CmdSend, body, "destination:/queue/a", "transaction:t")
	q, _ := sp.queue("/queue/a", nil)
	if q == nil || q.reservedCount != 2 || q.reservedBytes != 2*size || q.count != 0 {
		t.Fatalf("queue after two transactional SENDs: %+v", q)
	}
	if err := c.s.handleSend(sendFrame(body, "destination:/queue/a")); err == nil || err.full != FullQueue {
		t.Fatalf("plain SEND into reserved room: %+v, want full queue", err)
	}
	c.mustSend(frames.CmdAbort, "", "transaction:t")
	if got, _ := sp.queue("/queue/a", nil); got != nil || b.queuedBytes.Load() != 0 || c.s.budget.held() != 0 {
		t.Fatalf("after ABORT: queue %v, queued %d, budget %d; want none, 0, 0", got, b.queuedBytes.Load(), c.s.budget.held())
	}

	c.mustSend(frames.CmdBegin, "", "transaction:u")
	c.mustSend(frames.CmdSend, body, "destination:/queue/a", "transaction:u")
	c.mustSend(frames.CmdSend, body, "destination:/queue/a", "transaction:u")
	c.mustSend(frames.CmdCommit, "", "transaction:u")
	q, _ = sp.queue("/queue/a", nil)
	if q == nil || q.count != 2 || q.bytes != 2*size || q.reservedCount != 0 || q.reservedBytes != 0 {
		t.Fatalf("queue after COMMIT: %+v", q)
	}
	if got := b.queuedBytes.Load(); got != int64(2*size) || c.s.budget.held() != 0 {
		t.Fatalf("after COMMIT: queued %d, budget %d; want %d, 0", got, c.s.budget.held(), 2*size)
	}
	released(t, c)
}

// A transaction that could never fit the connection's budget (only its
// own COMMIT or ABORT, behind it, would free room) is refused for good.
func TestTransactionPastBudgetIsNotRetryable(t *testing.T) {
	b := New(Config{MaxConnectionBytes: 4096})
	c := newClient(t, b)
	c.connect()
	c.mustSend(frames.CmdBegin, "", "transaction:t")
	c.mustSend(frames.CmdSend, strings.Repeat("x", 3000), "destination:/queue/a", "transaction:t")
	err := c.send(frames.CmdSend, strings.Repeat("y", 1500), "destination:/queue/a", "transaction:t")
	if !isClosed(err) {
		t.Fatalf("SEND past the budget: %v, want the session closed", err)
	}
	f := c.next()
	if f.Command != frames.CmdError || hdr(f, "error-code") != CodeLimitExceeded || hdr(f, "retryable") != "false" {
		t.Fatalf("got %s %v", f.Command, headerLines(f))
	}
	released(t, c)
	if got := b.queuedBytes.Load(); got != 0 {
		t.Fatalf("queued bytes %d after the session ended", got)
	}
}

// A persistent SEND to a topic is refused while a durable subscription's
// queue it reaches is full (it would be journaled and then enqueued past
// the limit); a non-persistent one is accepted and dropped there.
func TestPersistentSendChecksDurableQueues(t *testing.T) {
	j := &memJournal{}
	b := New(Config{Journal: j, MaxQueueMessages: 2})
	d := newClient(t, b)
	d.connect("client-id:app")
	d.mustSend(frames.CmdSubscribe, "", "destination:/topic/news", "id:d", "durable-subscription-name:n", "ack:client")
	if err := d.send(frames.CmdDisconnect, ""); !isClosed(err) {
		t.Fatalf("DISCONNECT: %v", err)
	}
	d.s.Release()

	p := newClient(t, b)
	p.connect()
	p.mustSend(frames.CmdSend, "1", "destination:/topic/news", "persistent:true")
	p.mustSend(frames.CmdSend, "2", "destination:/topic/news", "persistent:true")
	sp := b.spaces[DefaultVirtualHost]
	qs := sp.durableQueuesFor("news")
	if len(qs) != 1 || qs[0].count != 2 {
		t.Fatalf("durable queues %v", qs)
	}
	appends := len(j.appends)
	if err := p.s.handleSend(sendFrame("3", "destination:/topic/news", "persistent:true")); err == nil || err.full != FullQueue {
		t.Fatalf("persistent SEND to a full durable backlog: %+v, want full queue", err)
	}
	if len(j.appends) != appends || qs[0].count != 2 {
		t.Fatalf("the refused SEND was journaled (%d appends, want %d) or queued (%d)", len(j.appends), appends, qs[0].count)
	}
	dropped := b.stats.Dropped.Load()
	p.mustSend(frames.CmdSend, "4", "destination:/topic/news")
	if qs[0].count != 2 || b.stats.Dropped.Load() != dropped+1 {
		t.Fatalf("non-persistent SEND: durable count %d, dropped %d; want 2, %d", qs[0].count, b.stats.Dropped.Load(), dropped+1)
	}
	released(t, p)
}

// Each unacknowledged topic delivery is charged to the subscriber's budget
// at its size until ACK or NACK; past the budget it is a slow consumer.
func TestTopicUnackedChargesBudget(t *testing.T) {
	body := strings.Repeat("x", 1000)
	size := sendSize("/topic/t", body)
	t.Run("ack and nack release", func(t *testing.T) {
		b := New(Config{})
		sub, pub := newClient(t, b), newClient(t, b)
		sub.connect()
		pub.connect()
		sub.mustSend(frames.CmdSubscribe, "", "destination:/topic/t", "id:s", "ack:client-individual")
		sub.poll()
		pub.mustSend(frames.CmdSend, body, "destination:/topic/t")
		pub.mustSend(frames.CmdSend, body, "destination:/topic/t")
		ms := sub.poll()
		if len(ms) != 2 || sub.s.budget.held() != int64(2*size) {
			t.Fatalf("%d messages, budget %d; want 2, %d", len(ms), sub.s.budget.held(), 2*size)
		}
		sub.mustSend(frames.CmdAck, "", "id:"+hdr(ms[0], "ack"))
		if got := sub.s.budget.held(); got != int64(size) {
			t.Fatalf("budget %d after ACK, want %d", got, size)
		}
		sub.mustSend(frames.CmdNack, "", "id:"+hdr(ms[1], "ack"))
		if got := sub.s.budget.held(); got != 0 {
			t.Fatalf("budget %d after NACK, want 0", got)
		}
		released(t, sub)
		released(t, pub)
	})
	t.Run("past the budget is a slow consumer", func(t *testing.T) {
		// Room for three unacknowledged messages and one delivery in the
		// outbox, not four.
		b := New(Config{MaxConnectionBytes: 4*size + 600})
		sub, pub := newClient(t, b), newClient(t, b)
		sub.connect()
		pub.connect()
		sub.mustSend(frames.CmdSubscribe, "", "destination:/topic/t", "id:s", "ack:client-individual")
		sub.poll()
		for i := range 3 {
			pub.mustSend(frames.CmdSend, body, "destination:/topic/t")
			if ms := sub.poll(); len(ms) != 1 || sub.s.budget.held() != int64((i+1)*size) {
				t.Fatalf("message %d: %d frames, budget %d", i, len(ms), sub.s.budget.held())
			}
		}
		pub.mustSend(frames.CmdSend, body, "destination:/topic/t")
		f := sub.next()
		if f.Command != frames.CmdError || hdr(f, "error-code") != CodeSlowConsumer {
			t.Fatalf("got %s %v, want ERROR slow-consumer", f.Command, headerLines(f))
		}
		released(t, sub)
		released(t, pub)
	})
}

// The outbox counts a delivery at an upper bound of its encoded size, per-
// delivery headers included: an 8 KB subscription id is 8 KB a MESSAGE.
func TestDeliverySizeBoundsTheEncoding(t *testing.T) {
	f := sendFrame("body", "destination:/queue/a", "k:v\\n:x", "reply-to:/queue/r")
	m := newMessage(f, "ID:host-18446744073709551615", "/queue/a", "", false, 0)
	for _, v := range []string{"1.0", "1.1", "1.2"} {
		for _, id := range []string{"s", strings.Repeat("a:\\\n", 64), strings.Repeat("i", 256)} {
			for _, e := range []outEntry{{deliveries: 1}, {deliveries: math.MaxInt, ackID: math.MaxUint64}} {
				c := newClient(t, New(Config{}))
				c.connect("accept-version:" + v)
				sub := &subscription{session: c.s, id: id, num: math.MaxUint32, header: subscriptionHeader(c.s.escaping, id)}
				e.msg, e.sub = m, sub
				enc := OutputBatch{flat: true}
				c.s.appendMessage(&enc, &e)
				if got, bound := enc.Len(), deliverySize(m, sub); got > bound {
					t.Errorf("STOMP %s, id of %d bytes, deliveries %d: encoded %d > bound %d", v, len(id), e.deliveries, got, bound)
				}
			}
		}
	}

	// The case, scaled: a long subscription id and tiny messages
	// fill the outbox after limit/deliverySize deliveries, not limit/size.
	id := strings.Repeat("i", 8000) // as long as the default header line allows
	b := New(Config{MaxIDLength: 8192, MaxOutboxBytes: 64 << 10})
	sub, pub := newClient(t, b), newClient(t, b)
	sub.connect()
	pub.connect()
	sub.mustSend(frames.CmdSubscribe, "", "destination:/topic/t", "id:"+id)
	sub.poll()
	n := 0
	for ; n < 100 && !sub.s.out.closed.Load(); n++ {
		pub.mustSend(frames.CmdSend, "x", "destination:/topic/t")
	}
	if n != 8 {
		t.Fatalf("slow consumer after %d tiny messages to an 8,000-byte subscription id under a 64 KiB outbox, want 8", n)
	}
	released(t, sub)
	released(t, pub)
}

// RECEIPTs a client does not read are held to its outbox and budget: past
// them it is a slow consumer, and the ERROR that says so still gets out.
func TestControlFramesFloodIsSlowConsumer(t *testing.T) {
	receipt := strings.Repeat("r", 200)
	rcptSize := len(frames.AppendEnd(frames.AppendHeader(frames.AppendCommand(nil, frames.CmdReceipt), frames.Escape12, []byte("receipt-id"), []byte(receipt+"0000"))))
	cases := []struct {
		name string
		cfg  Config
	}{
		{"budget", Config{MaxConnectionBytes: 20 * rcptSize}},
		{"outbox", Config{MaxOutboxBytes: 20 * rcptSize}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, New(tc.cfg))
			c.connect()
			var err error
			n := 0
			for ; n < 1000 && err == nil; n++ {
				err = c.send(frames.CmdBegin, "", "transaction:t", "receipt:"+receipt+strconv.Itoa(1000+2*n))
				if err == nil {
					err = c.send(frames.CmdAbort, "", "transaction:t", "receipt:"+receipt+strconv.Itoa(1001+2*n))
				}
			}
			if !isClosed(err) || n != 11 {
				t.Fatalf("after %d BEGIN/ABORT pairs: %v; want closed on the 21st RECEIPT", n, err)
			}
			fs := c.poll()
			last := fs[len(fs)-1]
			if len(fs) != 1 || last.Command != frames.CmdError || hdr(last, "error-code") != CodeSlowConsumer {
				t.Fatalf("got %v, want only the slow-consumer ERROR", commands(fs))
			}
			released(t, c)
		})
	}
}

// Publishers charge the subscriber's budget while its writer releases it,
// concurrently: once everything is written and the session released, the
// budget holds nothing (run with -race).
func TestBudgetConcurrentChargeAndRelease(t *testing.T) {
	b := New(Config{})
	sub := newClient(t, b)
	sub.connect()
	sub.mustSend(frames.CmdSubscribe, "", "destination:/topic/t", "id:s")
	sub.poll()
	const publishers, each = 4, 500
	done := make(chan error, publishers)
	for range publishers {
		pub := newClient(t, b)
		pub.connect()
		go func() {
			var err error
			for i := 0; i < each && err == nil; i++ {
				err = pub.send(frames.CmdSend, "body", "destination:/topic/t")
			}
			pub.s.Release()
			done <- err
		}()
	}
	var out []byte
	received := 0
	for finished := 0; finished < publishers; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			finished++
		default:
			out, _ = sub.s.AppendOutput(out[:0])
			received += strings.Count(string(out), "MESSAGE\n")
		}
	}
	out, _ = sub.s.AppendOutput(out[:0])
	received += strings.Count(string(out), "MESSAGE\n")
	if received != publishers*each {
		t.Fatalf("received %d messages, want %d", received, publishers*each)
	}
	if held := sub.s.budget.held(); held != 0 {
		t.Fatalf("budget holds %d with everything written", held)
	}
	released(t, sub)
}
