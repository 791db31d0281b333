package server

import (
	"strconv"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	stompframe "github.com/go-stomp/stomp/v3/frame"

	"github.com/stompbox/stompbox/broker"
)

// prefetch keeps a client-individual go-stomp consumer within its own
// buffers: its one goroutine both hands MESSAGEs to the subscription's
// channel (capacity 16) and writes the ACKs, so more unacknowledged
// messages in flight than that deadlock the client itself.
var prefetch = stomp.SubscribeOpt.Header("prefetch-count", "10")

// flowOpts are the go-stomp options of the flow tests: no heart-beats (a
// blocked producer's client may not write them), a generous read timeout.
var flowOpts = []func(*stomp.Conn) error{
	stomp.ConnOpt.HeartBeat(0, 0),
	stomp.ConnOpt.Logger(throughputLogger{}),
}

// receiveSeq reads n messages from sub, checking each carries the next
// seq header, acknowledging each when ack is set.
func receiveSeq(t *testing.T, conn *stomp.Conn, sub *stomp.Subscription, n int, ack bool) {
	t.Helper()
	for i := range n {
		select {
		case m, ok := <-sub.C:
			if !ok || m.Err != nil {
				t.Fatalf("message %d: subscription ended (%v)", i, m)
			}
			if got := m.Header.Get("seq"); got != strconv.Itoa(i) {
				t.Fatalf("message %d: seq %q (lost, duplicated or reordered)", i, got)
			}
			if ack {
				if err := conn.Ack(m); err != nil {
					t.Fatalf("ack %d: %v", i, err)
				}
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("message %d not delivered", i)
		}
	}
}

// TestFlowProducerBlockedNotDisconnected: a producer far ahead of a
// queue's limit is slowed down (the queue never holds more than its
// limit) and every message arrives once, in order, when a consumer
// drains it.
func TestFlowProducerBlockedNotDisconnected(t *testing.T) {
	const limit, n = 100, 3000
	srv := startServer(t, Config{Broker: broker.Config{MaxQueueMessages: limit}})
	producer, err := stomp.Dial("tcp", srv.addr, flowOpts...)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.MustDisconnect()
	sent := make(chan error, 1)
	go func() {
		for i := range n {
			opts := []func(*stompframe.Frame) error{stomp.SendOpt.Header("seq", strconv.Itoa(i))}
			if i == n-1 {
				opts = append(opts, stomp.SendOpt.Receipt)
			}
			if err := producer.Send("/queue/flow", "text/plain", []byte("m"), opts...); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	consumer, err := stomp.Dial("tcp", srv.addr, flowOpts...)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.MustDisconnect()
	sub, err := consumer.Subscribe("/queue/flow", stomp.AckClientIndividual, prefetch)
	if err != nil {
		t.Fatal(err)
	}
	receiveSeq(t, consumer, sub, n, true)
	select {
	case err := <-sent:
		if err != nil {
			t.Fatalf("producer: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the producer's last RECEIPT never came")
	}
	if got := srv.broker.Stats().Published.Load(); got != n {
		t.Fatalf("published %d, want %d", got, n)
	}
}

// TestFlowSameConnectionNoDeadlock: one connection produces and consumes
// (client-individual ACKs) on a queue holding at most 10 messages; its
// ACKs overtake its held SENDs, so it finishes.
func TestFlowSameConnectionNoDeadlock(t *testing.T) {
	const n = 2000
	srv := startServer(t, Config{Broker: broker.Config{MaxQueueMessages: 10}})
	conn, err := stomp.Dial("tcp", srv.addr, flowOpts...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.MustDisconnect()
	sub, err := conn.Subscribe("/queue/self", stomp.AckClientIndividual, prefetch)
	if err != nil {
		t.Fatal(err)
	}
	sent := make(chan error, 1)
	go func() {
		for i := range n {
			// No receipt: go-stomp holds a lock while it waits for one, which
			// would keep this connection's own ACKs from being written.
			if err := conn.Send("/queue/self", "text/plain", []byte("m"), stomp.SendOpt.Header("seq", strconv.Itoa(i))); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	receiveSeq(t, conn, sub, n, true)
	select {
	case err := <-sent:
		if err != nil {
			t.Fatalf("send: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the last SEND's RECEIPT never came")
	}
}

// TestFlowRateThrottled: past max_frames_per_second the producer is
// throttled, not disconnected; nothing is lost.
func TestFlowRateThrottled(t *testing.T) {
	const rate, n = 2000, 6000 // burst 4000: the rest waits about a second
	srv := startServer(t, Config{Broker: broker.Config{MaxFramesPerSecond: rate}})
	consumer, err := stomp.Dial("tcp", srv.addr, flowOpts...)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.MustDisconnect()
	sub, err := consumer.Subscribe("/queue/rate", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	producer, err := stomp.Dial("tcp", srv.addr, flowOpts...)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.MustDisconnect()
	start := time.Now()
	for i := range n {
		if err := producer.Send("/queue/rate", "text/plain", []byte("m"), stomp.SendOpt.Header("seq", strconv.Itoa(i))); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	receiveSeq(t, consumer, sub, n, false)
	// The rate held: n frames (plus CONNECT) past a burst of 2*rate take
	// at least (n+1-2*rate)/rate seconds.
	if min := time.Duration(float64(n+1-2*rate) / rate * float64(time.Second)); time.Since(start) < min*9/10 {
		t.Fatalf("%d frames in %v: the rate limit did not hold (want at least %v)", n, time.Since(start), min)
	}
}

// TestFlowBlockTimeout: a connection blocked longer than block_timeout
// gets ERROR limit-exceeded, retryable, and no RECEIPT for what it held.
func TestFlowBlockTimeout(t *testing.T) {
	srv := startServer(t, Config{Broker: broker.Config{MaxQueueMessages: 1, BlockTimeout: 200 * time.Millisecond}})
	p := dialRaw(t, srv.addr)
	p.connect()
	p.send(frame("SEND", "1", "destination:/queue/bt", "receipt:r1"))
	p.expectReceipt("r1")
	p.send(frame("SEND", "2", "destination:/queue/bt", "receipt:r2"))
	p.expectERROR(errorWant{message: "blocked too long", code: broker.CodeLimitExceeded, retryable: true})
}

// TestFlowMetrics: every reason is exported at 0; a blocked producer
// shows as blocked on its queue, and its blocked time once it resumes.
func TestFlowMetrics(t *testing.T) {
	srv := startServer(t, Config{Broker: broker.Config{MaxQueueMessages: 1}})
	admin := startAdmin(t, srv.Server)
	body := scrapeUntil(t, admin, `stompbox_blocked_connections{reason="queue"}`, "0")
	for _, r := range []string{"queue", "total", "journal", "rate", "budget"} {
		if sample(body, `stompbox_blocked_connections{reason="`+r+`"}`) != "0" ||
			sample(body, `stompbox_blocked_seconds_total{reason="`+r+`"}`) != "0" {
			t.Fatalf("reason %s not exported at 0", r)
		}
	}
	p := dialRaw(t, srv.addr)
	p.connect()
	p.send(frame("SEND", "1", "destination:/queue/m", "receipt:r1"))
	p.expectReceipt("r1")
	p.send(frame("SEND", "2", "destination:/queue/m", "receipt:r2"))
	scrapeUntil(t, admin, `stompbox_blocked_connections{reason="queue"}`, "1")
	c := dialRaw(t, srv.addr)
	c.connect()
	c.send(frame("SUBSCRIBE", "", "destination:/queue/m", "id:s"))
	p.expectReceipt("r2")
	body = scrapeUntil(t, admin, `stompbox_blocked_connections{reason="queue"}`, "0")
	if v, err := strconv.ParseFloat(sample(body, `stompbox_blocked_seconds_total{reason="queue"}`), 64); err != nil || v <= 0 {
		t.Fatalf("blocked_seconds_total{queue} = %q, want > 0", sample(body, `stompbox_blocked_seconds_total{reason="queue"}`))
	}
}
