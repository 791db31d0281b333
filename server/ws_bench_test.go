package server

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/stompbox/stompbox/frames"
)

// The transport benchmarks run the same scenario over native STOMP (TCP)
// and STOMP over WebSocket, in the same process and run, with clients that
// do as little as possible: they write prebuilt wire bytes (one SEND per
// write, one SEND per WebSocket message, as stomp.js does) and count
// MESSAGE frames with a frames.Parser. Neither client allocates in steady
// state, so B/op and allocs/op are the server's; the difference between
// the two columns is the transport.
//
// The WebSocket client is gobwas/ws: ws.Dialer for the upgrade (offering
// v12.stomp), ws.WriteFrame over ws.MaskFrameInPlace to build its masked
// frames once, and a reader of server frame headers that does not
// allocate (ws.ReadHeader allocates per call).

const (
	benchBodySize = 128
	// benchWindow bounds the messages the producer may be ahead of the
	// slowest consumer, so the benchmark measures delivery, not a growing
	// backlog (which would end in limit-exceeded or slow-consumer).
	benchWindow = 1024
	// benchStep is how often (in messages) a consumer reports progress.
	benchStep = 64
)

// benchTransport says how a benchmark client reaches the server.
type benchTransport int

const (
	overTCP benchTransport = iota
	overWS
)

// benchClient is one raw STOMP client of the transport benchmarks.
type benchClient struct {
	conn      net.Conn
	br        *bufio.Reader
	transport benchTransport
	parser    *frames.Parser
	buf       []byte
	ext       [8]byte // extended payload length (a local would escape)
	count     benchCounter
}

// benchCounter counts MESSAGE frames and checks their body size.
type benchCounter struct {
	messages int
	other    frames.Command // first frame that was not a MESSAGE
	badBody  bool
	bodySize int // expected body size; 0: benchBodySize
}

func (h *benchCounter) HandleFrame(f *frames.Frame) error {
	switch {
	case f.Command != frames.CmdMessage:
		if h.other == 0 {
			h.other = f.Command
		}
	case len(f.Body) != cmp.Or(h.bodySize, benchBodySize):
		h.badBody = true
	default:
		h.messages++
	}
	return nil
}

func (h *benchCounter) HandleHeartbeat() error { return nil }

func dialBench(b *testing.B, tr benchTransport, srv *testServer, url string) *benchClient {
	b.Helper()
	c := &benchClient{transport: tr, parser: frames.NewParser(frames.Limits{}), buf: make([]byte, 64<<10)}
	switch tr {
	case overTCP:
		conn, err := net.Dial("tcp", srv.addr)
		if err != nil {
			b.Fatal(err)
		}
		c.conn = conn
	case overWS:
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, br, _, err := ws.Dialer{Protocols: []string{"v12.stomp"}}.Dial(ctx, url)
		if err != nil {
			b.Fatal(err)
		}
		c.conn, c.br = conn, br
	}
	if c.br == nil {
		c.br = bufio.NewReaderSize(c.conn, 64<<10)
	}
	b.Cleanup(func() { _ = c.conn.Close() })
	c.write(c.wire(frame("CONNECT", "", "accept-version:1.2", "host:bench", "heart-beat:0,0")))
	if f := c.nextFrame(b); f != frames.CmdConnected {
		b.Fatalf("got %v, want CONNECTED", f)
	}
	return c
}

// wire returns what the client writes for STOMP bytes s: s itself over
// TCP, one masked text frame over WebSocket.
func (c *benchClient) wire(s string) []byte {
	if c.transport == overTCP {
		return []byte(s)
	}
	var buf bytes.Buffer
	f := ws.MaskFrameInPlace(ws.NewTextFrame([]byte(s)))
	if err := ws.WriteFrame(&buf, f); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

func (c *benchClient) write(wire []byte) error {
	_, err := c.conn.Write(wire)
	return err
}

// readSome reads what is available (TCP) or one message (WebSocket) and
// parses it.
func (c *benchClient) readSome() error {
	if c.transport == overTCP {
		n, err := c.br.Read(c.buf)
		if n > 0 {
			if perr := c.parser.Parse(c.buf[:n], &c.count); perr != nil {
				return perr
			}
		}
		return err
	}
	payload, op, err := c.readWSFrame()
	if err != nil {
		return err
	}
	switch op {
	case ws.OpText, ws.OpBinary:
		return c.parser.Parse(payload, &c.count)
	case ws.OpClose:
		return io.EOF
	}
	return nil
}

// readWSFrame reads one server frame (unmasked, unfragmented) into c.buf.
func (c *benchClient) readWSFrame() ([]byte, ws.OpCode, error) {
	b0, err := c.br.ReadByte()
	if err != nil {
		return nil, 0, err
	}
	b1, err := c.br.ReadByte()
	if err != nil {
		return nil, 0, err
	}
	length := int(b1 & 0x7f)
	ext := &c.ext
	switch length {
	case 126:
		if _, err := io.ReadFull(c.br, ext[:2]); err != nil {
			return nil, 0, err
		}
		length = int(binary.BigEndian.Uint16(ext[:2]))
	case 127:
		if _, err := io.ReadFull(c.br, ext[:8]); err != nil {
			return nil, 0, err
		}
		length = int(binary.BigEndian.Uint64(ext[:8]))
	}
	if b1&0x80 != 0 || b0&0x80 == 0 || length > len(c.buf) {
		return nil, 0, errors.New("bench: unexpected server frame")
	}
	if _, err := io.ReadFull(c.br, c.buf[:length]); err != nil {
		return nil, 0, err
	}
	return c.buf[:length], ws.OpCode(b0 & 0x0f), nil
}

// nextFrame reads until one frame that is not a MESSAGE arrives (setup
// only: CONNECTED, RECEIPT) and returns its command.
func (c *benchClient) nextFrame(b *testing.B) frames.Command {
	b.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer func() { _ = c.conn.SetReadDeadline(time.Time{}) }()
	for c.count.other == 0 {
		if err := c.readSome(); err != nil {
			b.Fatal(err)
		}
	}
	cmd := c.count.other
	c.count.other = 0
	return cmd
}

// benchDelivery runs one producer and consumers subscribers of dest over
// tr: b.N SENDs, each delivered to every subscriber (topic) or to the one
// consumer (queue). msgs/s counts deliveries per second of wall time, from
// the first SEND to the last delivery.
func benchDelivery(b *testing.B, tr benchTransport, dest string, consumers int) {
	benchDeliveryAfter(b, tr, dest, consumers, nil)
}

// benchDeliveryAfter is benchDelivery with setup (if not nil) run on the
// new server first, outside the timed part.
func benchDeliveryAfter(b *testing.B, tr benchTransport, dest string, consumers int, setup func(srv *testServer, url string)) {
	// Every client dials from 127.0.0.1 at once: no per-address limits.
	srv, url := startWebServer(b, Config{MaxConnectionsPerIP: -1, ConnectionRatePerIP: -1})
	if setup != nil {
		setup(srv, url)
	}
	subs := make([]*benchClient, consumers)
	for i := range subs {
		subs[i] = dialBench(b, tr, srv, url)
		subs[i].write(subs[i].wire(frame("SUBSCRIBE", "", "id:1", "destination:"+dest, "ack:auto", "receipt:s")))
		if f := subs[i].nextFrame(b); f != frames.CmdReceipt {
			b.Fatalf("got %v, want RECEIPT", f)
		}
	}
	producer := dialBench(b, tr, srv, url)
	send := producer.wire(frame("SEND", strings.Repeat("x", benchBodySize),
		"destination:"+dest, "content-type:text/plain", "content-length:128"))

	runDelivery(b, producer, send, subs, benchBodySize, benchStep, benchWindow)
}

// runDelivery is the timed part of the delivery benchmarks: producer
// writes send b.N times while every one of subs reads b.N messages of
// size bytes. Each consumer reports every level it reaches (k*step
// messages) on progress; the producer may run window messages ahead of
// the lowest level every consumer has reached.
func runDelivery(b *testing.B, producer *benchClient, send []byte, subs []*benchClient, size, step, window int) {
	consumers := len(subs)
	progress := make(chan int, consumers*(window/step+2))
	done := make(chan error, consumers)
	reached := make([]int, b.N/step+2) // consumers at each level
	stall := time.NewTimer(time.Hour)
	defer stall.Stop()

	b.ReportAllocs()
	b.SetBytes(int64(size))
	b.ResetTimer()
	start := time.Now()
	for _, s := range subs {
		go func() { done <- s.consumeBy(b.N, step, progress) }()
	}
	low := 0 // the level every consumer has reached
	for i := range b.N {
		for i-low*step >= window {
			stall.Reset(10 * time.Second)
			select {
			case k := <-progress:
				reached[k]++
				for low+1 < len(reached) && reached[low+1] == consumers {
					low++
				}
			case err := <-done:
				b.Fatalf("a consumer stopped: %v", err)
			case <-stall.C:
				b.Fatal("no progress for 10s")
			}
		}
		if err := producer.write(send); err != nil {
			b.Fatal(err)
		}
	}
	for range consumers {
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N*consumers)/elapsed.Seconds(), "msgs/s")
}

// BenchmarkQueue1to1WS: one producer, one consumer (ack auto) of a queue,
// 128 B bodies, over WebSocket.
func BenchmarkQueue1to1WS(b *testing.B) { benchDelivery(b, overWS, "/queue/bench", 1) }

// BenchmarkQueue1to1TCP is BenchmarkQueue1to1WS over native STOMP.
func BenchmarkQueue1to1TCP(b *testing.B) { benchDelivery(b, overTCP, "/queue/bench", 1) }

// BenchmarkTopicFanout100WS: one publisher, 100 subscribers of a topic,
// 128 B bodies, over WebSocket; ns/op is per SEND (100 deliveries).
func BenchmarkTopicFanout100WS(b *testing.B) { benchDelivery(b, overWS, "/topic/bench", 100) }

// BenchmarkTopicFanout100TCP is BenchmarkTopicFanout100WS over native STOMP.
func BenchmarkTopicFanout100TCP(b *testing.B) { benchDelivery(b, overTCP, "/topic/bench", 100) }
