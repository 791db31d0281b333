package server

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/stompbox/stompbox/frames"
)

// BenchmarkTopicFanoutBody: one publisher, 100 subscribers of a topic,
// bodies of 16 KiB and 64 KiB, over native STOMP and over WebSocket; ns/op
// is per SEND (100 deliveries). This is where copying a shared body into
// every subscriber's write buffer cost the most (issue 15: vectored writes
// of the shared body). The clients are the transport benchmarks' (they
// parse each frame but never touch a body with a content-length), so the
// difference between runs is the server's.
func BenchmarkTopicFanoutBody(b *testing.B) {
	for _, tr := range []benchTransport{overTCP, overWS} {
		for _, size := range []int{16 << 10, 64 << 10} {
			name := []string{"TCP", "WS"}[tr] + "/body=" + strconv.Itoa(size>>10) + "KiB"
			b.Run(name, func(b *testing.B) { benchFanoutBody(b, tr, 100, size) })
		}
	}
}

// benchFanoutBody is benchDelivery to consumers topic subscribers with
// bodies of size bytes. The producer may run ahead of the slowest consumer
// by 2 MiB of bodies, a quarter of a subscriber's outbox: the benchmark
// measures delivery, not a backlog that would end in slow-consumer.
func benchFanoutBody(b *testing.B, tr benchTransport, consumers, size int) {
	window := max(4, (2<<20)/size)
	step := window / 4
	srv, url := startWebServer(b, Config{MaxConnectionsPerIP: -1, ConnectionRatePerIP: -1})
	dial := func() *benchClient {
		c := dialBench(b, tr, srv, url)
		c.buf = make([]byte, size+4<<10) // a whole WebSocket message
		c.count.bodySize = size
		return c
	}
	subs := make([]*benchClient, consumers)
	for i := range subs {
		subs[i] = dial()
		subs[i].write(subs[i].wire(frame("SUBSCRIBE", "", "id:1", "destination:/topic/bench", "ack:auto", "receipt:s")))
		if f := subs[i].nextFrame(b); f != frames.CmdReceipt {
			b.Fatalf("got %v, want RECEIPT", f)
		}
	}
	producer := dial()
	send := producer.wire(frame("SEND", strings.Repeat("x", size),
		"destination:/topic/bench", "content-type:text/plain", "content-length:"+strconv.Itoa(size)))

	runDelivery(b, producer, send, subs, size, step, window)
}

// consumeBy reads n messages, reporting on progress every level it
// reaches (k*step messages).
func (c *benchClient) consumeBy(n, step int, progress chan<- int) error {
	level := 0
	for c.count.messages < n {
		if err := c.readSome(); err != nil {
			return err
		}
		if c.count.other != 0 || c.count.badBody {
			return errors.New("bench: unexpected frame " + c.count.other.String())
		}
		for ; (level+1)*step <= c.count.messages; level++ {
			progress <- level + 1
		}
	}
	return nil
}
