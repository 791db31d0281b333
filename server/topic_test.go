package server

import (
	"bytes"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	stompframe "github.com/go-stomp/stomp/v3/frame"

	"github.com/stompbox/stompbox/frames"
)

// The helpers of the messaging tests (topic, queue, ack, tx, durable) live
// here. Absence is never proved by waiting: a later message on the same
// path (a sentinel) must arrive first, or a receipt must arrive with no
// frame before it.

// gsWait bounds every wait for a frame the server should send.
const gsWait = 5 * time.Second

// gsConn is a go-stomp connection that is closed when the test ends:
// DISCONNECT, then each subscription drained until go-stomp closes it, so
// no client goroutine outlives the test.
type gsConn struct {
	*stomp.Conn
	t    testing.TB
	subs []*stomp.Subscription
	once sync.Once
}

// dialGS connects a go-stomp client (STOMP 1.2) to srv.
func dialGS(t testing.TB, srv *testServer, opts ...func(*stomp.Conn) error) *gsConn {
	t.Helper()
	opts = append([]func(*stomp.Conn) error{
		stomp.ConnOpt.Logger(gsQuietLogger{}),
		stomp.ConnOpt.DisconnectReceiptTimeout(gsWait),
		stomp.ConnOpt.RcvReceiptTimeout(gsWait),
	}, opts...)
	c, err := stomp.Dial("tcp", srv.addr, opts...)
	if err != nil {
		t.Fatalf("go-stomp dial: %v", err)
	}
	gc := &gsConn{Conn: c, t: t}
	t.Cleanup(gc.close)
	return gc
}

// subscribe subscribes and returns once the subscription is live on the
// server (go-stomp's SUBSCRIBE cannot carry a receipt of its own).
func (c *gsConn) subscribe(dest string, ack stomp.AckMode, opts ...func(*stompframe.Frame) error) *stomp.Subscription {
	c.t.Helper()
	sub, err := c.Subscribe(dest, ack, opts...)
	if err != nil {
		c.t.Fatalf("subscribe %s: %v", dest, err)
	}
	c.subs = append(c.subs, sub)
	c.barrier()
	return sub
}

// barrier returns once the server has acted on every frame this connection
// sent before it: frames are handled in order, and the ABORT of an empty
// transaction asks for a receipt.
func (c *gsConn) barrier() {
	c.t.Helper()
	tx, err := c.BeginWithError()
	if err == nil {
		err = tx.AbortWithReceipt()
	}
	if err != nil {
		c.t.Fatalf("barrier: %v", err)
	}
}

// send publishes a text/plain body and waits for its receipt.
func (c *gsConn) send(dest, body string, opts ...func(*stompframe.Frame) error) {
	c.t.Helper()
	opts = append(opts, stomp.SendOpt.Receipt)
	if err := c.Send(dest, "text/plain", []byte(body), opts...); err != nil {
		c.t.Fatalf("send %q to %s: %v", body, dest, err)
	}
}

// close disconnects (DISCONNECT with receipt) and drains the
// subscriptions; a test calls it to disconnect midway, the cleanup again.
// The RECEIPT follows the session's release (TestDisconnectReceiptAfterRelease),
// so a test may connect again at once.
func (c *gsConn) close() {
	c.once.Do(func() {
		c.t.Helper()
		var wg sync.WaitGroup
		for _, sub := range c.subs {
			wg.Go(func() {
				for range sub.C { // ends when go-stomp closes C after the connection closed
				}
			})
		}
		if err := c.Disconnect(); err != nil {
			c.t.Errorf("disconnect: %v", err)
		}
		drained := make(chan struct{})
		go func() {
			wg.Wait()
			close(drained)
		}()
		select {
		case <-drained:
		case <-time.After(2 * gsWait):
			c.t.Errorf("go-stomp subscriptions still open %v after DISCONNECT", 2*gsWait)
		}
	})
}

// rawDisconnect ends a raw client's session with DISCONNECT (receipt),
// waits for the server to close the connection and closes the client's
// side. The RECEIPT follows the session's release (unacknowledged messages
// requeued, durable subscriptions detached; TestDisconnectReceiptAfterRelease),
// so the test may connect again at once.
func rawDisconnect(c *rawClient) {
	c.t.Helper()
	c.send(frame("DISCONNECT", "", "receipt:rawDisconnect"))
	rawUntilReceipt(c, "rawDisconnect")
	c.expectClosed(gsWait)
	_ = c.conn.Close() // ends the server's linger at once
}

// gsQuietLogger keeps go-stomp's logging out of test output.
type gsQuietLogger struct{}

func (gsQuietLogger) Debugf(string, ...any)   {}
func (gsQuietLogger) Infof(string, ...any)    {}
func (gsQuietLogger) Warningf(string, ...any) {}
func (gsQuietLogger) Errorf(string, ...any)   {}
func (gsQuietLogger) Debug(string)            {}
func (gsQuietLogger) Info(string)             {}
func (gsQuietLogger) Warning(string)          {}
func (gsQuietLogger) Error(string)            {}

// gsRecv returns the next message of sub or fails the test.
func gsRecv(t testing.TB, sub *stomp.Subscription) *stomp.Message {
	t.Helper()
	select {
	case m, ok := <-sub.C:
		if !ok {
			t.Fatalf("subscription to %s closed", sub.Destination())
		}
		if m.Err != nil {
			t.Fatalf("subscription to %s: %v", sub.Destination(), m.Err)
		}
		return m
	case <-time.After(gsWait):
		t.Fatalf("no message on %s within %v", sub.Destination(), gsWait)
	}
	return nil
}

// gsBodies receives n messages and returns their bodies.
func gsBodies(t testing.TB, sub *stomp.Subscription, n int) []string {
	t.Helper()
	bodies := make([]string, n)
	for i := range bodies {
		bodies[i] = string(gsRecv(t, sub).Body)
	}
	return bodies
}

// rawUntilReceipt reads frames until the RECEIPT for id and returns those
// that came before it; an ERROR or another receipt fails the test.
func rawUntilReceipt(c *rawClient, id string) []*frames.Frame {
	c.t.Helper()
	var before []*frames.Frame
	for range 1000 {
		f := c.next(gsWait)
		switch f.Command {
		case frames.CmdError:
			c.t.Fatalf("ERROR %s (error-code %s) while waiting for receipt %s: %s",
				header(f, "message"), header(f, "error-code"), id, f.Body)
		case frames.CmdReceipt:
			if got := header(f, "receipt-id"); got != id {
				c.t.Fatalf("RECEIPT receipt-id %q, want %q", got, id)
			}
			return before
		}
		before = append(before, f)
	}
	c.t.Fatalf("no RECEIPT %s within 1000 frames", id)
	return nil
}

// rawBodies describes frames as "COMMAND body" for comparisons.
func rawBodies(frs []*frames.Frame) []string {
	out := make([]string, len(frs))
	for i, f := range frs {
		out[i] = f.Command.String() + " " + string(f.Body)
	}
	return out
}

// rawExpectCmd returns the next frame, failing the test unless it is cmd.
func rawExpectCmd(c *rawClient, cmd frames.Command) *frames.Frame {
	c.t.Helper()
	f := c.next(gsWait)
	if f.Command != cmd {
		c.t.Fatalf("got %s (message %q, error-code %q, body %q), want %s",
			f.Command, header(f, "message"), header(f, "error-code"), f.Body, cmd)
	}
	return f
}

// Every current subscriber of a topic gets each message once, in order.
func TestTopicEverySubscriberGetsEachMessageInOrder(t *testing.T) {
	srv := startServer(t, Config{})
	subs := make([]*stomp.Subscription, 3)
	for i := range subs {
		subs[i] = dialGS(t, srv).subscribe("/topic/fan", stomp.AckAuto)
	}
	pub := dialGS(t, srv)
	const n = 40
	want := make([]string, n)
	for i := range want {
		want[i] = fmt.Sprintf("m%02d", i)
		pub.send("/topic/fan", want[i])
	}
	for i, sub := range subs {
		if got := gsBodies(t, sub, n); !slices.Equal(got, want) {
			t.Errorf("subscriber %d got %q, want %q", i, got, want)
		}
	}
	// Every delivery is queued while the SEND is handled, before its receipt.
	if got := srv.Broker().Stats().Delivered.Load(); got != 3*n {
		t.Errorf("Stats.Delivered = %d, want %d (one per subscriber and message)", got, 3*n)
	}
}

// A subscriber added later gets what is published after it subscribed,
// nothing from before.
func TestTopicLateSubscriberMissesEarlierMessages(t *testing.T) {
	srv := startServer(t, Config{})
	early := dialGS(t, srv).subscribe("/topic/late", stomp.AckAuto)
	pub := dialGS(t, srv)
	pub.send("/topic/late", "before")
	late := dialGS(t, srv).subscribe("/topic/late", stomp.AckAuto)
	pub.send("/topic/late", "after")

	if got := gsBodies(t, early, 2); !slices.Equal(got, []string{"before", "after"}) {
		t.Errorf("early subscriber got %q, want [before after]", got)
	}
	if got := string(gsRecv(t, late).Body); got != "after" {
		t.Errorf("late subscriber's first message is %q, want %q", got, "after")
	}
}

// "*" matches exactly one segment, "#" zero or more; non-matches are not
// delivered, and each MESSAGE names the concrete topic.
func TestTopicWildcardSubscriptions(t *testing.T) {
	published := []string{"a", "a.b", "a.b.c", "ab.c", "b.a", "x.a.b", "a.c", "c"}
	tests := []struct {
		pattern string
		end     string   // published last; matches pattern, proves nothing else is pending
		want    []string // topics delivered, in order, end included
	}{
		{"a.*", "a.end", []string{"a.b", "a.c", "a.end"}},
		{"a.#", "a.end", []string{"a", "a.b", "a.b.c", "a.c", "a.end"}},
		{"a.*.c", "a.end.c", []string{"a.b.c", "a.end.c"}},
		{"*.a", "end.a", []string{"b.a", "end.a"}},
		{"#.c", "end.c", []string{"a.b.c", "ab.c", "a.c", "c", "end.c"}},
		{"a.#.c", "a.end.c", []string{"a.b.c", "a.c", "a.end.c"}},
	}
	for _, tt := range tests {
		t.Run(tt.pattern, func(t *testing.T) {
			srv := startServer(t, Config{})
			sub := dialGS(t, srv).subscribe("/topic/"+tt.pattern, stomp.AckAuto, stomp.SubscribeOpt.Id("w"))
			pub := dialGS(t, srv)
			for _, name := range append(slices.Clone(published), tt.end) {
				pub.send("/topic/"+name, name)
			}
			var got []string
			for range tt.want {
				m := gsRecv(t, sub)
				if m.Destination != "/topic/"+string(m.Body) {
					t.Errorf("MESSAGE destination %q for a message sent to /topic/%s", m.Destination, m.Body)
				}
				if id := m.Header.Get("subscription"); id != "w" {
					t.Errorf("subscription header %q, want %q", id, "w")
				}
				got = append(got, string(m.Body))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("pattern %s got %q, want %q", tt.pattern, got, tt.want)
			}
		})
	}
}

// A MESSAGE carries the concrete destination, the SUBSCRIBE's id, a unique
// message-id, the sender's headers, and the body byte for byte.
func TestTopicMessageHeadersAndBody(t *testing.T) {
	srv := startServer(t, Config{})
	sub := dialGS(t, srv).subscribe("/topic/hdr.*", stomp.AckAuto, stomp.SubscribeOpt.Id("sub-7"))
	pub := dialGS(t, srv)
	binary := []byte{0, 1, 2, 0, 0xff, '\n', 0, 'z', 0}
	sends := []struct {
		dest, contentType string
		body              []byte
		custom            map[string]string
	}{
		{"/topic/hdr.text", "text/plain;charset=utf-8", []byte("héllo"),
			map[string]string{"x-trace": "t-1", "priority": "9", "x-special": "a:b\\c\nd"}},
		{"/topic/hdr.bin", "application/octet-stream", binary, map[string]string{"x-trace": "t-2"}},
		{"/topic/hdr.empty", "text/plain", []byte{}, map[string]string{"x-trace": "t-3"}},
	}
	ids := map[string]bool{}
	for _, s := range sends {
		opts := []func(*stompframe.Frame) error{stomp.SendOpt.Receipt}
		for k, v := range s.custom {
			opts = append(opts, stomp.SendOpt.Header(k, v))
		}
		if err := pub.Send(s.dest, s.contentType, s.body, opts...); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range sends {
		m := gsRecv(t, sub)
		h := m.Header
		if m.Destination != s.dest {
			t.Errorf("destination %q, want %q", m.Destination, s.dest)
		}
		if got := h.Get("subscription"); got != "sub-7" {
			t.Errorf("subscription %q, want sub-7", got)
		}
		id := h.Get("message-id")
		if id == "" || ids[id] {
			t.Errorf("message-id %q is empty or repeated (seen %v)", id, ids)
		}
		ids[id] = true
		if m.ContentType != s.contentType {
			t.Errorf("content-type %q, want %q", m.ContentType, s.contentType)
		}
		for k, v := range s.custom {
			if got := h.Get(k); got != v {
				t.Errorf("%s: header %s = %q, want %q", s.dest, k, got, v)
			}
		}
		if !bytes.Equal(m.Body, s.body) {
			t.Errorf("%s: body %q, want %q", s.dest, m.Body, s.body)
		}
		if got, want := h.Get("content-length"), fmt.Sprint(len(s.body)); got != want {
			t.Errorf("%s: content-length %q, want %q", s.dest, got, want)
		}
		for _, k := range []string{"receipt", "transaction", "redelivered"} {
			if _, ok := h.Contains(k); ok {
				t.Errorf("%s: MESSAGE carries %s header", s.dest, k)
			}
		}
	}
}

// persistent:true is accepted and travels on the MESSAGE, to a topic and
// to a queue alike.
func TestPersistentHeaderTravels(t *testing.T) {
	for _, dest := range []string{"/topic/persist", "/queue/persist"} {
		t.Run(dest, func(t *testing.T) {
			srv := startServer(t, Config{})
			sub := dialGS(t, srv).subscribe(dest, stomp.AckAuto)
			dialGS(t, srv).send(dest, "kept", stomp.SendOpt.Header("persistent", "true"))
			m := gsRecv(t, sub)
			if got := m.Header.Get("persistent"); got != "true" || string(m.Body) != "kept" {
				t.Errorf("persistent=%q body=%q, want persistent=true body=kept", got, m.Body)
			}
		})
	}
}
