package server

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/frames"
)

// expectReceipt reads the next frame and fails unless it is the RECEIPT for id.
func (c *rawClient) expectReceipt(id string) {
	c.t.Helper()
	f := c.next(5 * time.Second)
	if f.Command != frames.CmdReceipt || header(f, "receipt-id") != id {
		c.t.Fatalf("got %s %v (%s), want RECEIPT %s", f.Command, f.Headers, f.Body, id)
	}
}

// limitExceeded is the ERROR a broker limit answers with: retryable when
// waiting can help (a full queue), not for the connection's own limits.
func limitExceeded(receipt string) errorWant {
	return errorWant{message: "limit exceeded", code: "limit-exceeded", retryable: true, receipt: receipt}
}

func connLimitExceeded(receipt string) errorWant {
	return errorWant{message: "limit exceeded", code: "limit-exceeded", retryable: false, receipt: receipt}
}

// MaxSubscriptions bounds live subscriptions per connection; UNSUBSCRIBE
// frees a slot.
func TestLimitMaxSubscriptions(t *testing.T) {
	srv := startServer(t, Config{Broker: broker.Config{MaxSubscriptions: 3}})
	c := dialRaw(t, srv.addr)
	c.connect()
	for i := 1; i <= 3; i++ {
		id := strconv.Itoa(i)
		c.send(frame("SUBSCRIBE", "", "id:"+id, "destination:/topic/t"+id, "receipt:s"+id))
		c.expectReceipt("s" + id)
	}
	c.send(frame("UNSUBSCRIBE", "", "id:2", "receipt:u2"))
	c.expectReceipt("u2")
	c.send(frame("SUBSCRIBE", "", "id:4", "destination:/queue/q4", "receipt:s4"))
	c.expectReceipt("s4")
	c.send(frame("SUBSCRIBE", "", "id:5", "destination:/topic/t5", "receipt:s5"))
	f := c.expectERROR(connLimitExceeded("s5"))
	if !strings.Contains(string(f.Body), "3 subscriptions") {
		t.Errorf("body %q does not name the limit", f.Body)
	}
}

// MaxTransactions bounds open transactions per connection; COMMIT and ABORT
// free a slot.
func TestLimitMaxTransactions(t *testing.T) {
	srv := startServer(t, Config{Broker: broker.Config{MaxTransactions: 2}})
	c := dialRaw(t, srv.addr)
	c.connect()
	for _, step := range []struct{ command, tx string }{
		{"BEGIN", "t1"}, {"BEGIN", "t2"}, {"ABORT", "t1"}, {"BEGIN", "t3"}, {"COMMIT", "t2"}, {"BEGIN", "t4"},
	} {
		receipt := step.command + "-" + step.tx
		c.send(frame(step.command, "", "transaction:"+step.tx, "receipt:"+receipt))
		c.expectReceipt(receipt)
	}
	c.send(frame("BEGIN", "", "transaction:t5", "receipt:b5"))
	f := c.expectERROR(connLimitExceeded("b5"))
	if !strings.Contains(string(f.Body), "2 open transactions") {
		t.Errorf("body %q does not name the limit", f.Body)
	}
}

// A full queue refuses the next SEND with a retryable ERROR; what it holds
// is still delivered, and nothing of the refused SEND is.
func TestLimitQueueLength(t *testing.T) {
	srv := startServer(t, Config{Broker: broker.Config{MaxQueueMessages: 5, FullPolicy: broker.FullError}})
	p := dialRaw(t, srv.addr)
	p.connect()
	for i := 1; i <= 5; i++ {
		p.send(frame("SEND", "m"+strconv.Itoa(i), "destination:/queue/full", "receipt:p"+strconv.Itoa(i)))
		p.expectReceipt("p" + strconv.Itoa(i))
	}
	p.send(frame("SEND", "m6", "destination:/queue/full", "receipt:p6"))
	f := p.expectERROR(limitExceeded("p6"))
	if !strings.Contains(string(f.Body), "/queue/full") || !strings.Contains(string(f.Body), "5 messages") {
		t.Errorf("body %q does not name the queue and its limit", f.Body)
	}

	consumer, err := stomp.Dial("tcp", srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := consumer.Disconnect(); err != nil {
			t.Error(err)
		}
	}()
	sub, err := consumer.Subscribe("/queue/full", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	// Once drained the queue takes messages again; the first after the
	// five is m7, so m6 was never queued.
	for i := 1; i <= 7; i++ {
		if i == 6 {
			continue
		}
		if i == 7 {
			if err := consumer.Send("/queue/full", "text/plain", []byte("m7"), stomp.SendOpt.Receipt); err != nil {
				t.Fatal(err)
			}
		}
		select {
		case m := <-sub.C:
			if m.Err != nil || string(m.Body) != "m"+strconv.Itoa(i) {
				t.Fatalf("message %d: got %q (err %v)", i, m.Body, m.Err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("message %d not delivered", i)
		}
	}
}

// dialStalled connects a raw client with a small socket receive buffer,
// subscribes it to dest and then stops reading, like a consumer whose
// process hangs.
func dialStalled(t *testing.T, addr, dest string) net.Conn {
	t.Helper()
	// The buffer is set before the handshake, so the window the client
	// advertises is small from the start: shrinking it on an established
	// connection makes the kernel drop data it already accepted, and the
	// retransmission backoff then stalls the test's final read.
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = setsockoptInt(syscall.SetsockoptInt, fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		return cmp.Or(err, serr)
	}}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	if _, err := nc.Write([]byte(frame("CONNECT", "", "accept-version:1.2", "host:test") +
		frame("SUBSCRIBE", "", "id:stalled", "destination:"+dest, "receipt:subscribed"))); err != nil {
		t.Fatal(err)
	}
	got := &frameLog{}
	p := frames.NewParser(frames.Limits{})
	buf := make([]byte, 512)
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for range 100 {
		if len(got.frames) >= 2 {
			break
		}
		n, err := nc.Read(buf)
		if perr := p.Parse(buf[:n], got); perr != nil {
			t.Fatal(perr)
		}
		if err != nil {
			t.Fatalf("stalled client setup: %v after %d frames", err, len(got.frames))
		}
	}
	_ = nc.SetReadDeadline(time.Time{})
	if len(got.frames) < 2 {
		t.Fatalf("stalled client setup: %d frames", len(got.frames))
	}
	if f := got.frames[1]; f.Command != frames.CmdReceipt || header(f, "receipt-id") != "subscribed" {
		t.Fatalf("stalled client setup: got %s %v", f.Command, f.Headers)
	}
	return nc
}

// setsockoptInt calls set (syscall.SetsockoptInt, whose descriptor type
// differs between Unix and Windows) with fd converted to that type.
func setsockoptInt[FD ~int | ~uintptr](set func(FD, int, int, int) error, fd uintptr, level, opt, value int) error {
	return set(FD(fd), level, opt, value)
}

// frameLog is a frames.Handler that keeps owned copies of every frame.
type frameLog struct{ frames []*frames.Frame }

func (l *frameLog) HandleFrame(f *frames.Frame) error {
	l.frames = append(l.frames, f.Clone())
	return nil
}

func (l *frameLog) HandleHeartbeat() error { return nil }

// A topic subscriber that stops reading is disconnected as a slow consumer
// once its outbox passes MaxOutboxBytes, while a bystander on the same
// topic gets every message in order and the publisher is never held up.
// The write timeout is long, so it is not what ends the slow client.
func TestLimitSlowConsumer(t *testing.T) {
	const (
		bodySize    = 16 << 10
		maxMessages = 2000 // 32 MiB: far more than socket buffers hold
		afterSlow   = 20   // messages published after the slow client is cut
		window      = 4    // the most the publisher runs ahead of the bystander
	)
	// A long linger gives the stalled client time to read its ERROR, however
	// the server bounds the final flush.
	srv := startServer(t, Config{Linger: 10 * time.Second, WriteTimeout: time.Minute, Broker: broker.Config{MaxOutboxBytes: 256 << 10}})
	stats := srv.Broker().Stats()
	before := stats.SlowConsumers.Load()

	bystander, err := stomp.Dial("tcp", srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := bystander.Subscribe("/topic/firehose", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	// Frames are handled in order: once this SEND is receipted, the
	// SUBSCRIBE before it is live.
	if err := bystander.Send("/queue/sync", "text/plain", nil, stomp.SendOpt.Receipt); err != nil {
		t.Fatal(err)
	}
	received := make(chan string, maxMessages)
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		for m := range sub.C {
			if m.Err != nil {
				return
			}
			received <- string(m.Body[:8])
		}
	}()
	// checked is how many of the bystander's messages have been checked;
	// the publisher stays at most window messages ahead of it, so that
	// however slow go-stomp is under the race detector the bystander's own
	// backlog stays well under the outbox limit.
	checked := 0
	checkBystander := func(upTo int) {
		t.Helper()
		for ; checked < upTo; checked++ {
			select {
			case b := <-received:
				if b != fmt.Sprintf("%08d", checked) {
					t.Fatalf("bystander message %d is %s: out of order", checked, b)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("bystander got %d messages, want %d", checked, upTo)
			}
		}
	}
	slow := dialStalled(t, srv.addr, "/topic/firehose")

	pub := dialRaw(t, srv.addr)
	pub.connect()
	padding := strings.Repeat("x", bodySize-8)
	sent, cutAt := 0, -1
	for sent < maxMessages && (cutAt < 0 || sent < cutAt+afterSlow) {
		checkBystander(sent - window)
		seq := fmt.Sprintf("%08d", sent)
		start := time.Now()
		pub.send(frame("SEND", seq+padding, "destination:/topic/firehose", "receipt:"+seq))
		pub.expectReceipt(seq)
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("publisher held up %v on message %d", d, sent)
		}
		sent++
		// The topic delivers before the RECEIPT is queued, so the counter
		// is current when the receipt arrives.
		if cutAt < 0 && stats.SlowConsumers.Load() > before {
			cutAt = sent
		}
	}
	if cutAt < 0 {
		t.Fatalf("no slow consumer after %d messages of %d bytes", sent, bodySize)
	}
	t.Logf("slow consumer cut after %d messages", cutAt)
	if got := stats.SlowConsumers.Load() - before; got != 1 {
		t.Errorf("%d slow consumers, want 1 (only the stalled client)", got)
	}

	// The bystander got every message, in order, and nothing more.
	checkBystander(sent)
	if err := bystander.Disconnect(); err != nil {
		t.Fatal(err)
	}
	<-collected
	if extra := len(received); extra != 0 {
		t.Errorf("bystander got %d messages more than were sent", extra)
	}

	// The stalled client, reading at last, finds an in-order prefix of the
	// messages, then ERROR slow-consumer, then the end of the connection.
	readStart := time.Now()
	got := &frameLog{}
	p := frames.NewParser(frames.Limits{})
	buf := make([]byte, 64<<10)
	_ = slow.SetReadDeadline(time.Now().Add(10 * time.Second))
	eof := false
	for range maxMessages * bodySize / 512 { // ends at EOF; bounded all the same
		n, err := slow.Read(buf)
		if perr := p.Parse(buf[:n], got); perr != nil {
			t.Fatal(perr)
		}
		if errors.Is(err, io.EOF) {
			eof = true
			break
		}
		if err != nil {
			t.Fatalf("slow client: %v after %d frames", err, len(got.frames))
		}
	}
	if !eof {
		t.Fatalf("slow client: no end of stream after %d frames", len(got.frames))
	}
	if d := time.Since(readStart); d > 5*time.Second {
		t.Errorf("slow client closed %v after it started reading", d)
	}
	if len(got.frames) == 0 {
		t.Fatal("slow client got nothing")
	}
	last := got.frames[len(got.frames)-1]
	checkERROR(t, last, errorWant{message: "slow consumer", code: "slow-consumer", retryable: true})
	messages := got.frames[:len(got.frames)-1]
	if len(messages) >= cutAt {
		t.Errorf("slow client got %d messages, but was cut off at %d", len(messages), cutAt)
	}
	for i, m := range messages {
		if m.Command != frames.CmdMessage || string(m.Body[:8]) != fmt.Sprintf("%08d", i) {
			t.Fatalf("slow client frame %d: %s %.8q, want MESSAGE %08d", i, m.Command, m.Body, i)
		}
	}
}

// openConns is how many connections the server is serving.
func (s *testServer) openConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// A slow consumer that never reads again is dropped by the server soon
// after it is cut off, not held (socket, goroutines, the batch its writer
// was writing) until a long WriteTimeout expires: the ERROR cannot reach a
// client that does not read, so there is nothing to wait for.
func TestLimitSlowConsumerDroppedWithoutReading(t *testing.T) {
	const (
		bodySize    = 16 << 10
		maxMessages = 2000
		linger      = 200 * time.Millisecond
	)
	srv := startServer(t, Config{Linger: linger, WriteTimeout: time.Minute, Broker: broker.Config{MaxOutboxBytes: 256 << 10}})
	stats := srv.Broker().Stats()
	before := stats.SlowConsumers.Load()
	dialStalled(t, srv.addr, "/topic/stalled")
	pub := dialRaw(t, srv.addr)
	pub.connect()
	body := strings.Repeat("s", bodySize)
	sent := 0
	for ; sent < maxMessages && stats.SlowConsumers.Load() == before; sent++ {
		pub.send(frame("SEND", body, "destination:/topic/stalled", "receipt:r"))
		pub.expectReceipt("r")
	}
	if stats.SlowConsumers.Load() == before {
		t.Fatalf("no slow consumer after %d messages", sent)
	}
	cut := time.Now()
	// Measuring how long the server keeps the connection: poll its count.
	for srv.openConns() > 1 && time.Since(cut) < 2*time.Second {
		time.Sleep(10 * time.Millisecond)
	}
	if n, d := srv.openConns(), time.Since(cut); n > 1 {
		t.Errorf("slow consumer's connection still served %v after it was cut off (linger %v, write timeout 1m)", d, linger)
	} else {
		t.Logf("slow consumer's connection ended %v after it was cut off", d)
	}
}
