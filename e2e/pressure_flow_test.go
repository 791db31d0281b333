//go:build e2e

package e2e

import (
	"bytes"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	stompframe "github.com/go-stomp/stomp/v3/frame"
)

// Flow control against the real binary with its default limits: a
// producer faster than its consumers, or than its rate limit, is slowed
// down, never disconnected, and nothing it sent is lost.

// flowMessages is the 200,000 x 128 B run of the issue; fewer under -race,
// whose broker is several times slower.
func flowMessages() int {
	if raceEnabled {
		return 20_000
	}
	return 200_000
}

// flowRunTimeout bounds one run: generous, the runs take seconds.
const flowRunTimeout = 120 * time.Second

var flowBody = bytes.Repeat([]byte("x"), 128)

func flowDial(t *testing.T, addr string) *stomp.Conn {
	t.Helper()
	c, err := stomp.Dial("tcp", addr, stomp.ConnOpt.HeartBeat(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bounded(c.Disconnect) })
	return c
}

// flowProduce sends n messages numbered by a seq header, with receipt the
// last with a receipt (so it returns once the broker took them all), and
// reports the first error on the returned channel.
func flowProduce(c *stomp.Conn, dest string, n int, receipt bool) <-chan error {
	done := make(chan error, 1)
	go func() {
		for i := range n {
			opts := []func(*stompframe.Frame) error{stomp.SendOpt.Header("seq", strconv.Itoa(i))}
			if receipt && i == n-1 {
				opts = append(opts, stomp.SendOpt.Receipt)
			}
			if err := c.Send(dest, "text/plain", flowBody, opts...); err != nil {
				done <- fmt.Errorf("send %d: %w", i, err)
				return
			}
		}
		done <- nil
	}()
	return done
}

// flowConsume receives n messages from sub and checks each is the next
// in sequence (so none is lost, duplicated or reordered), acknowledging
// each with ack set.
func flowConsume(t *testing.T, c *stomp.Conn, sub *stomp.Subscription, n int, ack bool) {
	t.Helper()
	deadline := time.After(flowRunTimeout)
	for i := range n {
		select {
		case m, ok := <-sub.C:
			if !ok || m.Err != nil {
				t.Fatalf("message %d: subscription ended: %v", i, m)
			}
			if got := m.Header.Get("seq"); got != strconv.Itoa(i) {
				t.Fatalf("message %d has seq %q: lost, duplicated or reordered", i, got)
			}
			if len(m.Body) != len(flowBody) {
				t.Fatalf("message %d: %d bytes", i, len(m.Body))
			}
			if ack {
				if err := c.Ack(m); err != nil {
					t.Fatalf("ack %d: %v", i, err)
				}
			}
		case <-deadline:
			t.Fatalf("only %d of %d messages within %v", i, n, flowRunTimeout)
		}
	}
}

func flowWaitProducer(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("producer: %v", err)
		}
	case <-time.After(flowRunTimeout):
		t.Fatal("producer did not finish")
	}
}

// flowPrefetch keeps a client-individual go-stomp consumer within its own
// buffers: one goroutine of the client both hands MESSAGEs to the
// subscription's channel (capacity 16) and writes its ACKs, so with more
// unacknowledged messages in flight the client deadlocks itself.
var flowPrefetch = stomp.SubscribeOpt.Header("prefetch-count", "16")

// TestPressureFlowWorkQueue: one producer sending as fast as it can, one
// consumer, auto-ack and client-individual: both finish with no ERROR and
// every message exactly once, in order.
func TestPressureFlowWorkQueue(t *testing.T) {
	n := flowMessages()
	b := startBroker(t)
	for _, tc := range []struct {
		name string
		ack  stomp.AckMode
		opts []func(*stompframe.Frame) error
	}{
		{"auto", stomp.AckAuto, nil},
		{"client-individual", stomp.AckClientIndividual, []func(*stompframe.Frame) error{flowPrefetch}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dest := "/queue/flow-" + tc.name
			consumer := flowDial(t, b.addr)
			sub, err := consumer.Subscribe(dest, tc.ack, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			done := flowProduce(flowDial(t, b.addr), dest, n, true)
			flowConsume(t, consumer, sub, n, tc.ack != stomp.AckAuto)
			flowWaitProducer(t, done)
			t.Logf("%d messages in %v (%.0f msgs/s)", n, time.Since(start), float64(n)/time.Since(start).Seconds())
		})
	}
	requireHostileHealthy(t, listenAttr(t, b, "admin"))
	b.stop()
}

// TestPressureFlowSlowConsumer: under -max-queue-messages 1000 a producer
// of 5,000 is blocked (reason queue) until a consumer arrives, then
// finishes; nothing is lost.
func TestPressureFlowSlowConsumer(t *testing.T) {
	const n = 5000
	b := startBroker(t, "-max-queue-messages", "1000")
	admin := listenAttr(t, b, "admin")
	done := flowProduce(flowDial(t, b.addr), "/queue/slow", n, true)
	waitHostileMetric(t, admin, `stompbox_blocked_connections{reason="queue"}`, 1, 30*time.Second)
	if depth := hostileMetric(t, admin, `stompbox_queue_messages{kind="queue"}`); depth != 1000 {
		t.Fatalf("blocked producer's queue holds %v messages, want its limit 1000", depth)
	}
	consumer := flowDial(t, b.addr)
	sub, err := consumer.Subscribe("/queue/slow", stomp.AckClientIndividual, flowPrefetch)
	if err != nil {
		t.Fatal(err)
	}
	flowConsume(t, consumer, sub, n, true)
	flowWaitProducer(t, done)
	if s := hostileMetric(t, admin, `stompbox_blocked_seconds_total{reason="queue"}`); s <= 0 {
		t.Fatalf("blocked_seconds_total{queue} = %v, want > 0", s)
	}
	waitHostileMetric(t, admin, `stompbox_blocked_connections{reason="queue"}`, 0, 10*time.Second)
	b.stop()
}

// TestPressureFlowSameConnection: one connection producing and consuming
// on a queue of at most 10 messages finishes without deadlock.
func TestPressureFlowSameConnection(t *testing.T) {
	const n = 20_000
	b := startBroker(t, "-max-queue-messages", "10")
	c := flowDial(t, b.addr)
	sub, err := c.Subscribe("/queue/self", stomp.AckClientIndividual, flowPrefetch)
	if err != nil {
		t.Fatal(err)
	}
	// No receipt: go-stomp holds a lock while it waits for one, which would
	// keep this connection's own ACKs from being written. Receiving every
	// message proves every SEND was taken.
	done := flowProduce(c, "/queue/self", n, false)
	flowConsume(t, c, sub, n, true)
	flowWaitProducer(t, done)
	b.stop()
}

// TestPressureFlowRateLimit: a producer past the default 20,000 frames/s
// is throttled, not disconnected, and nothing is lost. Under -race the
// client cannot send that fast, so the limit is lowered to 4,000.
func TestPressureFlowRateLimit(t *testing.T) {
	n, rate := 100_000, 20_000
	var flags []string
	if raceEnabled {
		n, rate = 20_000, 4_000
		flags = []string{"-max-frames-per-second", strconv.Itoa(rate)}
	}
	b := startBroker(t, flags...)
	admin := listenAttr(t, b, "admin")
	consumer := flowDial(t, b.addr)
	sub, err := consumer.Subscribe("/queue/rate", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	done := flowProduce(flowDial(t, b.addr), "/queue/rate", n, true)
	flowConsume(t, consumer, sub, n, false)
	flowWaitProducer(t, done)
	elapsed := time.Since(start)
	// Past the burst (twice the rate) the rate holds.
	if least := time.Duration(float64(n-2*rate) / float64(rate) * float64(time.Second)); elapsed < least*9/10 {
		t.Fatalf("%d frames in %v, faster than the rate limit allows (%v)", n, elapsed, least)
	}
	if s := hostileMetric(t, admin, `stompbox_blocked_seconds_total{reason="rate"}`); s <= 0 {
		t.Fatalf("blocked_seconds_total{rate} = %v, want > 0", s)
	}
	t.Logf("%d frames in %v", n, elapsed)
	b.stop()
}
