package broker

import (
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stompbox/stompbox/frames"
)

func TestConnectNegotiates(t *testing.T) {
	tests := []struct {
		name        string
		headers     []string
		version     string
		wantVersion frames.Version
	}{
		{"1.2", []string{"accept-version:1.0,1.1,1.2", "heart-beat:0,0"}, "1.2", frames.V12},
		{"1.1", []string{"accept-version:1.0,1.1"}, "1.1", frames.V11},
		{"no accept-version is 1.0", nil, "1.0", frames.V10},
		{"unknown versions skipped", []string{"accept-version:2.0, 1.1"}, "1.1", frames.V11},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// ResumeGrace -1: no resume-token, so the headers are fixed.
			b := New(Config{ServerName: "stompbox/test", HeartBeat: frames.HeartBeat{Send: 5 * time.Second, Receive: 7 * time.Second}, ResumeGrace: -1})
			c := newClient(t, b)
			c.mustSend(frames.CmdConnect, "", append(tc.headers, "host:test", "receipt:r-1")...)
			fs := c.poll()
			if len(fs) != 2 || fs[0].Command != frames.CmdConnected || fs[1].Command != frames.CmdReceipt {
				t.Fatalf("got %v, want CONNECTED then RECEIPT", commands(fs))
			}
			// No heart-beat header from the client: none either way, and
			// CONNECTED says so (the negotiated intervals).
			want := []string{"version:" + tc.version, "session:" + c.s.ID(), "server:stompbox/test", "heart-beat:0,0",
				"max-body:4194304", "max-header-bytes:65536", "max-subscriptions:1024", "resume-grace:0"}
			if got := headerLines(fs[0]); !slices.Equal(got, want) {
				t.Fatalf("CONNECTED headers %q, want %q", got, want)
			}
			if hdr(fs[1], "receipt-id") != "r-1" {
				t.Fatalf("RECEIPT %q", headerLines(fs[1]))
			}
			if c.s.version != tc.wantVersion {
				t.Fatalf("session version %v", c.s.version)
			}
			if c.tr.wakes.Load() == 0 {
				t.Fatal("the transport was never woken")
			}
			if c.closing {
				t.Fatal("closing after CONNECT")
			}
		})
	}
}

func TestConnectHeartBeatNegotiation(t *testing.T) {
	b := New(Config{HeartBeat: frames.HeartBeat{Send: 5 * time.Second, Receive: 7 * time.Second}, HeartbeatTolerance: 2})
	c := newClient(t, b)
	// The client can send every 3s and wants one every 10s: we send every
	// max(5s, 10s) and expect one every max(7s, 3s).
	c.connect("heart-beat:3000,10000")
	if got := c.s.HeartbeatInterval(); got != 10*time.Second {
		t.Errorf("HeartbeatInterval = %v, want 10s", got)
	}
	if got := c.s.ReadTimeout(); got != 14*time.Second {
		t.Errorf("ReadTimeout = %v, want 2 x 7s", got)
	}

	c = newClient(t, b)
	c.connect("heart-beat:0,0")
	if c.s.HeartbeatInterval() != 0 || c.s.ReadTimeout() != 0 {
		t.Errorf("heart-beat 0,0: interval %v, timeout %v; want none", c.s.HeartbeatInterval(), c.s.ReadTimeout())
	}
}

// Messages wait in a queue without consumers, then go round-robin, each to
// exactly one of two consumers, in order.
func TestQueueCompetingConsumers(t *testing.T) {
	b := New(Config{})
	pub := newClient(t, b)
	pub.connect()
	for i := range 4 {
		pub.mustSend(frames.CmdSend, "m"+strconv.Itoa(i), "destination:/queue/work")
	}
	a, c := newClient(t, b), newClient(t, b)
	a.connect()
	c.connect()
	a.mustSend(frames.CmdSubscribe, "", "destination:/queue/work", "id:a")
	if got := bodies(a.poll()); !slices.Equal(got, []string{"m0", "m1", "m2", "m3"}) {
		t.Fatalf("first consumer got the backlog %v", got)
	}
	c.mustSend(frames.CmdSubscribe, "", "destination:/queue/work", "id:c")
	for i := 4; i < 10; i++ {
		pub.mustSend(frames.CmdSend, "m"+strconv.Itoa(i), "destination:/queue/work")
	}
	gotA, gotC := bodies(a.poll()), bodies(c.poll())
	if len(gotA) != 3 || len(gotC) != 3 {
		t.Fatalf("not round-robin: %v and %v", gotA, gotC)
	}
	all := append(gotA, gotC...)
	slices.Sort(all)
	if !slices.Equal(all, []string{"m4", "m5", "m6", "m7", "m8", "m9"}) {
		t.Fatalf("delivered %v", all)
	}
	for _, got := range [][]string{gotA, gotC} {
		if !slices.IsSorted(got) {
			t.Fatalf("order lost: %v", got)
		}
	}
	if fs := pub.poll(); len(fs) != 0 {
		t.Fatalf("producer got %v", commands(fs))
	}
}

func bodies(fs []*frames.Frame) []string {
	var out []string
	for _, f := range fs {
		if f.Command == frames.CmdMessage {
			out = append(out, string(f.Body))
		}
	}
	return out
}

func TestMessageHeaders(t *testing.T) {
	b := New(Config{})
	sub := newClient(t, b)
	sub.connect()
	sub.mustSend(frames.CmdSubscribe, "", "destination:/queue/q", "id:s:1", "ack:client-individual")
	pub := newClient(t, b)
	pub.connect()
	pub.mustSend(frames.CmdSend, "body", "destination:/queue/q", "content-type:text/plain", "receipt:r",
		"transaction-x:kept", "message-id:spoofed", "redelivered:spoofed", "x-a:1:2")
	m := sub.next()
	want := []string{"subscription:s:1", "message-id:" + b.idPrefix + "-1", "ack:1.1",
		"destination:/queue/q", "content-type:text/plain", "transaction-x:kept", "x-a:1:2", "content-length:4"}
	if got := headerLines(m); !slices.Equal(got, want) {
		t.Fatalf("MESSAGE headers\n got %q\nwant %q", got, want)
	}
}

// A protocol error queues one ERROR with exact headers, closes the session,
// and every later Feed returns ErrSessionClosed.
func TestErrorFrame(t *testing.T) {
	tests := []struct {
		name    string
		connect bool
		wire    string
		headers []string
		reason  CloseReason
	}{
		{"SEND without destination", true, "SEND\nreceipt:r-7\n\nbody\x00",
			[]string{"message:missing destination header", "receipt-id:r-7", "error-code:missing-header",
				"retryable:false", "content-type:text/plain"}, CloseProtocolError},
		{"frame before CONNECT", false, "SEND\ndestination:/queue/a\n\n\x00",
			[]string{"message:not connected", "error-code:protocol-error", "retryable:false", "content-type:text/plain"},
			CloseProtocolError},
		{"unsupported version", false, "CONNECT\naccept-version:2.0\n\n\x00",
			[]string{"message:unsupported protocol version", "error-code:unsupported-version", "retryable:false",
				"version:1.0,1.1,1.2", "content-type:text/plain"}, CloseProtocolError},
		{"unknown command", true, "FROB\n\n\x00", nil, CloseProtocolError},
		{"ACK of an unknown id", true, "ACK\nid:1.1\nreceipt:x\n\n\x00",
			[]string{"message:unknown message", "receipt-id:x", "error-code:unknown-message", "retryable:false",
				"content-type:text/plain"}, CloseProtocolError},
		{"COMMIT of an unknown transaction", true, "COMMIT\ntransaction:t\n\n\x00",
			[]string{"message:unknown transaction", "error-code:unknown-transaction", "retryable:false",
				"content-type:text/plain"}, CloseProtocolError},
		{"server frame from client", true, "MESSAGE\n\n\x00",
			[]string{"message:server frame from client", "error-code:protocol-error", "retryable:false",
				"content-type:text/plain"}, CloseProtocolError},
		{"frame too large", true, "SEND\ndestination:/queue/a\ncontent-length:99999999\n\n",
			nil, CloseFrameTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := New(Config{})
			c := newClient(t, b)
			if tc.connect {
				c.connect()
			}
			wakes := c.tr.wakes.Load()
			if err := c.feed(tc.wire); !isClosed(err) {
				t.Fatalf("Feed = %v, want ErrSessionClosed", err)
			}
			if c.tr.wakes.Load() == wakes {
				t.Fatal("ERROR queued without a Wake")
			}
			f := c.next()
			if f.Command != frames.CmdError || !c.closing {
				t.Fatalf("got %s closing=%v, want ERROR and closing", f.Command, c.closing)
			}
			got := headerLines(f)
			if tc.headers != nil {
				want := append(tc.headers, "content-length:"+strconv.Itoa(len(f.Body)))
				if !slices.Equal(got, want) {
					t.Fatalf("ERROR headers\n got %q\nwant %q", got, want)
				}
			}
			if hdr(f, "error-code") == "" || hdr(f, "message") == "" || len(f.Body) == 0 {
				t.Fatalf("ERROR lacks message, error-code or body: %q", got)
			}
			if r, closed := c.s.CloseReason(); !closed || r != tc.reason {
				t.Fatalf("CloseReason = %v, %v; want %v", r, closed, tc.reason)
			}
			for range 2 {
				if err := c.feed("SEND\ndestination:/queue/a\n\nafter\x00"); !isClosed(err) {
					t.Fatalf("Feed after ERROR = %v", err)
				}
			}
			if fs := c.poll(); len(fs) != 0 {
				t.Fatalf("output after ERROR: %v", commands(fs))
			}
			c.s.Release()
		})
	}
}

func TestDisconnectReceiptThenClose(t *testing.T) {
	b := New(Config{})
	c := newClient(t, b)
	c.connect()
	if err := c.send(frames.CmdDisconnect, "", "receipt:bye"); !isClosed(err) {
		t.Fatalf("Feed(DISCONNECT) = %v, want ErrSessionClosed", err)
	}
	f := c.next()
	if f.Command != frames.CmdReceipt || hdr(f, "receipt-id") != "bye" || !c.closing {
		t.Fatalf("got %s %q closing=%v", f.Command, headerLines(f), c.closing)
	}
	if r, _ := c.s.CloseReason(); r != CloseDisconnect {
		t.Fatalf("reason %v", r)
	}
	if err := c.feed("\n"); !isClosed(err) {
		t.Fatalf("Feed after DISCONNECT = %v", err)
	}
	c.s.Release()
	c.s.Release() // idempotent
	if n := b.sessionCount.Load(); n != 0 {
		t.Fatalf("sessionCount %d after Release", n)
	}
}

// Unacknowledged queue messages of a released session go to another
// consumer marked redelivered, with the same message-id.
func TestReleaseRequeuesUnacked(t *testing.T) {
	b := New(Config{})
	a := newClient(t, b)
	a.connect()
	a.mustSend(frames.CmdSubscribe, "", "destination:/queue/q", "id:a", "ack:client")
	pub := newClient(t, b)
	pub.connect()
	pub.mustSend(frames.CmdSend, "one", "destination:/queue/q")
	pub.mustSend(frames.CmdSend, "two", "destination:/queue/q")
	pub.mustSend(frames.CmdSend, "three", "destination:/queue/q")
	first := a.poll()
	if !slices.Equal(bodies(first), []string{"one", "two", "three"}) {
		t.Fatalf("got %v", bodies(first))
	}
	for _, f := range first {
		if _, ok := f.Header("redelivered"); ok {
			t.Fatalf("first delivery marked redelivered: %q", headerLines(f))
		}
	}
	a.mustSend(frames.CmdAck, "", "id:"+hdr(first[0], "ack")) // settles "one" only
	a.poll()

	c := newClient(t, b)
	c.connect()
	c.mustSend(frames.CmdSubscribe, "", "destination:/queue/q", "id:c", "ack:auto")
	if fs := c.poll(); len(fs) != 0 {
		t.Fatalf("second consumer got %v while the first holds everything unacked", bodies(fs))
	}
	a.s.Release()
	again := c.poll()
	if !slices.Equal(bodies(again), []string{"two", "three"}) {
		t.Fatalf("redelivered %v, want two, three in order", bodies(again))
	}
	for i, f := range again {
		if hdr(f, "redelivered") != "true" || hdr(f, "delivery-count") != "2" || hdr(f, "message-id") != hdr(first[i+1], "message-id") {
			t.Fatalf("redelivery %q", headerLines(f))
		}
	}
	if s := b.Stats(); s.Redelivered.Load() != 2 || s.Delivered.Load() != 5 {
		t.Fatalf("stats delivered %d redelivered %d", s.Delivered.Load(), s.Redelivered.Load())
	}
}

// NACK redelivers; past MaxRedeliveries the message moves to the DLQ with
// its reason.
func TestNackRedeliversThenDeadLetters(t *testing.T) {
	b := New(Config{MaxRedeliveries: 1})
	c := newClient(t, b)
	c.connect()
	c.mustSend(frames.CmdSubscribe, "", "destination:/queue/q", "id:s", "ack:client-individual")
	c.mustSend(frames.CmdSend, "x", "destination:/queue/q")
	m1 := c.next()
	c.mustSend(frames.CmdNack, "", "id:"+hdr(m1, "ack"))
	m2 := c.next()
	if hdr(m2, "redelivered") != "true" || hdr(m2, "delivery-count") != "2" {
		t.Fatalf("redelivery %q", headerLines(m2))
	}
	c.mustSend(frames.CmdNack, "", "id:"+hdr(m2, "ack"))
	if fs := c.poll(); len(fs) != 0 {
		t.Fatalf("delivered past MaxRedeliveries: %v", commands(fs))
	}
	c.mustSend(frames.CmdSubscribe, "", "destination:/queue/DLQ.q", "id:dlq")
	d := c.next()
	if string(d.Body) != "x" || hdr(d, "destination") != "/queue/DLQ.q" || hdr(d, "original-destination") != "/queue/q" ||
		hdr(d, "original-message-id") != hdr(m1, "message-id") || hdr(d, "dlq-reason") == "" {
		t.Fatalf("dead letter %q", headerLines(d))
	}
	if b.Stats().DeadLettered.Load() != 1 {
		t.Fatal("DeadLettered not counted")
	}
}

// prefetch-count bounds unacknowledged deliveries; an ACK frees credit.
func TestPrefetchCredit(t *testing.T) {
	b := New(Config{})
	c := newClient(t, b)
	c.connect()
	for i := range 5 {
		c.mustSend(frames.CmdSend, strconv.Itoa(i), "destination:/queue/q")
	}
	c.mustSend(frames.CmdSubscribe, "", "destination:/queue/q", "id:s", "ack:client", "prefetch-count:2")
	fs := c.poll()
	if !slices.Equal(bodies(fs), []string{"0", "1"}) {
		t.Fatalf("got %v, want 2 messages", bodies(fs))
	}
	c.mustSend(frames.CmdAck, "", "id:"+hdr(fs[1], "ack")) // cumulative: both
	if got := bodies(c.poll()); !slices.Equal(got, []string{"2", "3"}) {
		t.Fatalf("after ACK got %v", got)
	}
}

// A queue consumer whose outbox is full is skipped, not closed, and gets
// the rest once its writer has taken the backlog.
func TestQueueConsumerWaitsForOutboxRoom(t *testing.T) {
	size := testMessage("x", 1).size() // "/topic/t" is as long as "/queue/q"
	b := New(Config{MaxOutboxBytes: 3 * size})
	c := newClient(t, b)
	c.connect()
	for i := range 20 {
		c.mustSend(frames.CmdSend, strconv.Itoa(i%10), "destination:/queue/q")
	}
	c.mustSend(frames.CmdSubscribe, "", "destination:/queue/q", "id:s")
	var got []string
	for range 40 {
		fs := c.poll()
		if len(fs) > 3 {
			t.Fatalf("%d messages in one take: the limit was not applied", len(fs))
		}
		got = append(got, bodies(fs)...)
		if len(got) == 20 {
			break
		}
	}
	if len(got) != 20 || c.closing {
		t.Fatalf("got %d of 20 (closing %v)", len(got), c.closing)
	}
}

func TestTransactionCommitAndAbort(t *testing.T) {
	b := New(Config{})
	sub := newClient(t, b)
	sub.connect()
	sub.mustSend(frames.CmdSubscribe, "", "destination:/queue/q", "id:s")
	pub := newClient(t, b)
	pub.connect()
	pub.mustSend(frames.CmdBegin, "", "transaction:t1")
	pub.mustSend(frames.CmdSend, "a", "destination:/queue/q", "transaction:t1")
	pub.mustSend(frames.CmdSend, "b", "destination:/queue/q", "transaction:t1")
	if fs := sub.poll(); len(fs) != 0 {
		t.Fatalf("delivered before COMMIT: %v", bodies(fs))
	}
	pub.mustSend(frames.CmdCommit, "", "transaction:t1", "receipt:c")
	if got := bodies(sub.poll()); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("after COMMIT got %v", got)
	}
	if f := pub.next(); f.Command != frames.CmdReceipt || hdr(f, "receipt-id") != "c" {
		t.Fatalf("COMMIT answered %s", f.Command)
	}
	pub.mustSend(frames.CmdBegin, "", "transaction:t2")
	pub.mustSend(frames.CmdSend, "c", "destination:/queue/q", "transaction:t2")
	pub.mustSend(frames.CmdAbort, "", "transaction:t2")
	if fs := sub.poll(); len(fs) != 0 {
		t.Fatalf("aborted SEND delivered: %v", bodies(fs))
	}
	if err := pub.send(frames.CmdCommit, "", "transaction:t2"); !isClosed(err) {
		t.Fatalf("COMMIT after ABORT = %v, want an ERROR", err)
	}
}

// A slow topic subscriber is closed with slow-consumer and loses its
// backlog; a bystander on the same topic keeps receiving.
func TestSlowTopicSubscriberClosed(t *testing.T) {
	probe := testMessage("x", 100)
	b := New(Config{MaxOutboxBytes: 5 * (probe.size() + 64)})
	slow, fast := newClient(t, b), newClient(t, b)
	slow.connect()
	fast.connect()
	slow.mustSend(frames.CmdSubscribe, "", "destination:/topic/t", "id:s")
	fast.mustSend(frames.CmdSubscribe, "", "destination:/topic/t", "id:s")
	pub := newClient(t, b)
	pub.connect()
	body := string(make([]byte, 100))
	for range 20 {
		pub.mustSend(frames.CmdSend, body, "destination:/topic/t")
		if len(bodies(fast.poll())) != 1 {
			t.Fatal("bystander missed a message")
		}
	}
	f := slow.next()
	if f.Command != frames.CmdError || hdr(f, "error-code") != CodeSlowConsumer || hdr(f, "retryable") != "true" || !slow.closing {
		t.Fatalf("slow subscriber got %s %q", f.Command, headerLines(f))
	}
	if err := slow.feed("\n"); !isClosed(err) {
		t.Fatalf("Feed after slow-consumer close = %v", err)
	}
	if b.Stats().SlowConsumers.Load() != 1 {
		t.Fatal("SlowConsumers not counted")
	}
}

// The connect timeout counts from accept, also when the driver spent time
// on the connection before the session existed (a PROXY header); a later
// time is ignored.
func TestAcceptedAtMovesTheConnectDeadline(t *testing.T) {
	start := time.Unix(1_000_000, 0)
	b := New(Config{ConnectTimeout: 5 * time.Second, Now: func() time.Time { return start }})
	s := b.NewSession(&fakeTransport{}, "test")
	s.AcceptedAt(start.Add(-3 * time.Second))
	if got, want := s.ReadDeadline(start), start.Add(2*time.Second); !got.Equal(want) {
		t.Fatalf("connect deadline %v, want %v (5s from an accept 3s ago)", got, want)
	}
	s.AcceptedAt(start.Add(time.Second))
	if got, want := s.ReadDeadline(start), start.Add(2*time.Second); !got.Equal(want) {
		t.Fatalf("a later accept time moved the deadline to %v", got)
	}
}
