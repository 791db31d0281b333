package server

import (
	"bytes"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	"github.com/gobwas/ws/wsutil"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/frames"
)

// Topic history and resume (docs/compliance.md, "Topic history and
// resume"), over TCP and WebSocket.

// historyConfig keeps the last size messages of /topic/hist.*.
func historyConfig(size int, maxAge time.Duration) Config {
	return Config{Broker: broker.Config{TopicHistory: []broker.HistoryRule{{Pattern: "/topic/hist.#", Size: size, MaxAge: maxAge}}}}
}

// wsClientStream carries a STOMP byte stream over a client WebSocket: Write
// sends one text message, Read returns the data of the server's messages.
type wsClientStream struct {
	net.Conn
	pending []byte
}

func (w *wsClientStream) Read(p []byte) (int, error) {
	for len(w.pending) == 0 {
		data, _, err := wsutil.ReadServerData(w.Conn)
		if err != nil {
			return 0, err
		}
		w.pending = data
	}
	n := copy(p, w.pending)
	w.pending = w.pending[n:]
	return n, nil
}

func (w *wsClientStream) Write(p []byte) (int, error) {
	if err := wsutil.WriteClientText(w.Conn, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// historyTransports dial a raw client over TCP or over WebSocket to a
// server started with cfg.
var historyTransports = []struct {
	name  string
	start func(t *testing.T, cfg Config) func() *rawClient
}{
	{"tcp", func(t *testing.T, cfg Config) func() *rawClient {
		srv := startServer(t, cfg)
		return func() *rawClient { return dialRaw(t, srv.addr) }
	}},
	{"ws", func(t *testing.T, cfg Config) func() *rawClient {
		_, url := startWebServer(t, cfg)
		return func() *rawClient {
			conn, _ := dialWS(t, url, "v12.stomp")
			return newRawClient(t, &wsClientStream{Conn: conn})
		}
	}},
}

// publishN sends bodies prefix0..prefix(n-1) to dest and waits for the
// last receipt.
func publishN(c *rawClient, dest, prefix string, n int) {
	c.t.Helper()
	var b strings.Builder
	for i := range n {
		b.WriteString(frame("SEND", prefix+strconv.Itoa(i), "destination:"+dest))
	}
	b.WriteString(frame("SEND", "", "destination:/topic/sentinel", "receipt:pub"))
	c.send(b.String())
	rawUntilReceipt(c, "pub")
}

// subscribeReceipt subscribes with extra headers and returns the RECEIPT
// (and fails on anything before it).
func subscribeReceipt(c *rawClient, id, dest string, headers ...string) *frames.Frame {
	c.t.Helper()
	c.send(frame("SUBSCRIBE", "", append([]string{"id:" + id, "destination:" + dest, "receipt:sub-" + id}, headers...)...))
	f := c.next(gsWait)
	if f.Command != frames.CmdReceipt || header(f, "receipt-id") != "sub-"+id {
		c.t.Fatalf("got %s (%s: %s), want RECEIPT sub-%s", f.Command, header(f, "error-code"), f.Body, id)
	}
	return f
}

// expectMessages reads n MESSAGEs and checks bodies and offsets.
func expectMessages(c *rawClient, epoch string, bodies []string, firstSeq int, replayed bool) {
	c.t.Helper()
	for i, body := range bodies {
		f := c.next(gsWait)
		if f.Command != frames.CmdMessage {
			c.t.Fatalf("message %d: got %s (%s: %s)", i, f.Command, header(f, "error-code"), f.Body)
		}
		want := epoch + "-" + strconv.Itoa(firstSeq+i)
		if string(f.Body) != body || header(f, "offset") != want {
			c.t.Fatalf("message %d: body %q offset %q, want %q at %s", i, f.Body, header(f, "offset"), body, want)
		}
		if got := header(f, "replayed") == "true"; got != replayed {
			c.t.Fatalf("message %d (%s): replayed %v, want %v", i, body, got, replayed)
		}
	}
}

func epochOf(t testing.TB, offset string) string {
	t.Helper()
	epoch, _, ok := strings.Cut(offset, "-")
	if !ok || epoch == "" {
		t.Fatalf("offset %q is not <epoch>-<seq>", offset)
	}
	return epoch
}

// TestHistoryOffsetsReplayAndResume: every MESSAGE on a history topic
// carries offset:<epoch>-<seq>, seq 1, 2, ...; history:n replays the last
// n, resume-after everything after an offset, with replayed:true, then
// the live stream; the RECEIPT says recovered and the newest offset.
func TestHistoryOffsetsReplayAndResume(t *testing.T) {
	for _, tr := range historyTransports {
		t.Run(tr.name, func(t *testing.T) {
			dial := tr.start(t, historyConfig(100, 0))
			live := dial()
			live.connect()
			r := subscribeReceipt(live, "live", "/topic/hist.a")
			if header(r, "recovered") != "" || !strings.HasSuffix(header(r, "offset"), "-0") {
				t.Fatalf("RECEIPT of a plain SUBSCRIBE before any message: recovered %q offset %q, want none and <epoch>-0",
					header(r, "recovered"), header(r, "offset"))
			}
			epoch := epochOf(t, header(r, "offset"))
			pub := dial()
			pub.connect()
			publishN(pub, "/topic/hist.a", "m", 5)
			expectMessages(live, epoch, []string{"m0", "m1", "m2", "m3", "m4"}, 1, false)

			c := dial()
			c.connect()
			r = subscribeReceipt(c, "h", "/topic/hist.a", "history:3")
			if header(r, "recovered") != "true" || header(r, "offset") != epoch+"-5" {
				t.Fatalf("history:3 RECEIPT: recovered %q offset %q, want true and %s-5", header(r, "recovered"), header(r, "offset"), epoch)
			}
			expectMessages(c, epoch, []string{"m2", "m3", "m4"}, 3, true)
			r = subscribeReceipt(c, "r", "/topic/hist.a", "resume-after:"+epoch+"-1")
			if header(r, "recovered") != "true" || header(r, "offset") != epoch+"-5" {
				t.Fatalf("resume-after RECEIPT: recovered %q offset %q", header(r, "recovered"), header(r, "offset"))
			}
			expectMessages(c, epoch, []string{"m1", "m2", "m3", "m4"}, 2, true)
			publishN(pub, "/topic/hist.a", "n", 1)
			// The live message reaches both subscriptions of c, not replayed.
			expectMessages(c, epoch, []string{"n0"}, 6, false)
			expectMessages(c, epoch, []string{"n0"}, 6, false)

			// history:10 when 6 were ever published: all of them, recovered.
			r = subscribeReceipt(c, "all", "/topic/hist.a", "history:10")
			if header(r, "recovered") != "true" {
				t.Fatalf("history:10 of 6: recovered %q, want true", header(r, "recovered"))
			}
			expectMessages(c, epoch, []string{"m0", "m1", "m2", "m3", "m4", "n0"}, 1, true)
			// resume-after the newest offset: nothing to replay.
			r = subscribeReceipt(c, "none", "/topic/hist.a", "resume-after:"+epoch+"-6")
			if header(r, "recovered") != "true" || header(r, "offset") != epoch+"-6" {
				t.Fatalf("resume-after newest: recovered %q offset %q", header(r, "recovered"), header(r, "offset"))
			}
			// A topic without a rule gets no offset.
			subscribeReceipt(c, "plain", "/topic/other")
			publishN(pub, "/topic/other", "o", 1)
			f := c.next(gsWait)
			if f.Command != frames.CmdMessage || header(f, "offset") != "" || string(f.Body) != "o0" {
				t.Fatalf("topic without history: %s %q offset %q", f.Command, f.Body, header(f, "offset"))
			}
		})
	}
}

// TestHistoryNotRecovered: recovered:false, delivery from the oldest
// retained message, for an offset older than the ring (size), from
// another epoch, or aged out (max_age, with the broker's clock).
func TestHistoryNotRecovered(t *testing.T) {
	// The broker's clock runs skew ahead of the real one (connect
	// timeouts and heart-beats keep working).
	var mu sync.Mutex
	var skew time.Duration
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return time.Now().Add(skew)
	}
	advance := func(d time.Duration) {
		mu.Lock()
		skew += d
		mu.Unlock()
	}
	for _, tr := range historyTransports {
		t.Run(tr.name, func(t *testing.T) {
			cfg := historyConfig(3, time.Minute)
			cfg.Broker.Now = clock
			dial := tr.start(t, cfg)
			c := dial()
			c.connect()
			pub := dial()
			pub.connect()
			epoch := epochOf(t, header(subscribeReceipt(c, "probe", "/topic/hist.b"), "offset"))
			publishN(pub, "/topic/hist.b", "m", 5) // retained: m2, m3, m4 (seq 3-5)
			expectMessages(c, epoch, []string{"m0", "m1", "m2", "m3", "m4"}, 1, false)

			for _, tc := range []struct{ name, header string }{
				{"evicted", "resume-after:" + epoch + "-1"},
				{"other-epoch", "resume-after:0123abcd-4"},
				{"unknown-seq", "resume-after:" + epoch + "-99"},
				{"history-more-than-retained", "history:4"},
			} {
				r := subscribeReceipt(c, tc.name, "/topic/hist.b", tc.header)
				if header(r, "recovered") != "false" || header(r, "offset") != epoch+"-5" {
					t.Fatalf("%s: recovered %q offset %q, want false and %s-5", tc.name, header(r, "recovered"), header(r, "offset"), epoch)
				}
				expectMessages(c, epoch, []string{"m2", "m3", "m4"}, 3, true)
			}
			// Exactly at the oldest retained: recovered.
			r := subscribeReceipt(c, "edge", "/topic/hist.b", "resume-after:"+epoch+"-2")
			if header(r, "recovered") != "true" {
				t.Fatalf("resume-after the one before the oldest retained: recovered %q, want true", header(r, "recovered"))
			}
			expectMessages(c, epoch, []string{"m2", "m3", "m4"}, 3, true)

			// Two minutes later everything is older than max_age.
			advance(2 * time.Minute)
			r = subscribeReceipt(c, "aged", "/topic/hist.b", "resume-after:"+epoch+"-3")
			if header(r, "recovered") != "false" || header(r, "offset") != epoch+"-5" {
				t.Fatalf("aged out: recovered %q offset %q, want false", header(r, "recovered"), header(r, "offset"))
			}
			r = subscribeReceipt(c, "aged-newest", "/topic/hist.b", "resume-after:"+epoch+"-5")
			if header(r, "recovered") != "true" {
				t.Fatalf("nothing missed since the newest: recovered %q, want true", header(r, "recovered"))
			}
			// A topic without history: subscribed live, recovered:false, no offset.
			r = subscribeReceipt(c, "nohist", "/topic/other", "resume-after:"+epoch+"-5")
			if header(r, "recovered") != "false" || header(r, "offset") != "" {
				t.Fatalf("topic without history: recovered %q offset %q", header(r, "recovered"), header(r, "offset"))
			}
			// The next live message has no replayed header and the next seq.
			publishN(pub, "/topic/hist.b", "x", 1)
			for range 8 { // every subscription to hist.b above is live now
				f := c.next(gsWait)
				if header(f, "offset") != epoch+"-6" || header(f, "replayed") != "" {
					t.Fatalf("live after replay: offset %q replayed %q", header(f, "offset"), header(f, "replayed"))
				}
			}
		})
	}
}

// TestHistoryBadRequests: malformed tokens, both headers at once, and
// history on a wildcard get ERROR invalid-header (not retryable).
func TestHistoryBadRequests(t *testing.T) {
	cases := []struct{ name, dest, headers string }{
		{"not-a-token", "/topic/hist.c", "resume-after:abc"},
		{"upper-epoch", "/topic/hist.c", "resume-after:ABC-1"},
		{"negative-seq", "/topic/hist.c", "resume-after:ab--1"},
		{"seq-overflow", "/topic/hist.c", "resume-after:ab-99999999999999999999"},
		{"empty", "/topic/hist.c", "resume-after:"},
		{"history-negative", "/topic/hist.c", "history:-1"},
		{"history-word", "/topic/hist.c", "history:all"},
		{"history-huge", "/topic/hist.c", "history:1000001"},
		{"both", "/topic/hist.c", "history:1\nresume-after:ab-1"},
		{"wildcard", "/topic/hist.*", "history:1"},
	}
	for _, tr := range historyTransports {
		t.Run(tr.name, func(t *testing.T) {
			dial := tr.start(t, historyConfig(10, 0))
			for _, tc := range cases {
				c := dial()
				c.connect()
				c.send(frame("SUBSCRIBE", "", "id:1", "destination:"+tc.dest, "receipt:r", tc.headers))
				f := c.next(gsWait)
				if f.Command != frames.CmdError || header(f, "error-code") != broker.CodeInvalidHeader ||
					header(f, "retryable") != "false" || header(f, "receipt-id") != "r" {
					t.Fatalf("%s: %s error-code %q retryable %q receipt-id %q (%s), want ERROR invalid-header",
						tc.name, f.Command, header(f, "error-code"), header(f, "retryable"), header(f, "receipt-id"), f.Body)
				}
				c.expectClosed(gsWait)
			}
		})
	}
}

// TestHistoryOffsetNotSpoofed: a SEND's own offset and replayed headers
// are dropped; the broker's offset is the only one.
func TestHistoryOffsetNotSpoofed(t *testing.T) {
	srv := startServer(t, historyConfig(10, 0))
	c := dialRaw(t, srv.addr)
	c.connect()
	subscribeReceipt(c, "s", "/topic/hist.d")
	c.send(frame("SEND", "x", "destination:/topic/hist.d", "offset:ffff-42", "replayed:true"))
	f := c.next(gsWait)
	offsets := 0
	for _, h := range f.Headers {
		if bytes.Equal(h.Key, []byte("offset")) {
			offsets++
		}
	}
	if offsets != 1 || strings.HasPrefix(header(f, "offset"), "ffff-") || header(f, "replayed") != "" {
		t.Fatalf("MESSAGE headers %q: want exactly one broker offset and no replayed header", f.Headers)
	}
}

// TestHistoryResumeSeamUnderConcurrentPublishers: while two go-stomp
// producers publish, a client subscribes with resume-after an early
// offset: it gets every later message exactly once, in offset order, the
// replayed ones first, with no gap or duplicate at the seam between the
// replay and the live stream.
func TestHistoryResumeSeamUnderConcurrentPublishers(t *testing.T) {
	const perProducer = 500
	srv := startServer(t, historyConfig(10_000, 0))
	first := dialGS(t, srv)
	sub := first.subscribe("/topic/hist.seam", stomp.AckAuto)
	first.send("/topic/hist.seam", "start")
	m := gsRecv(t, sub)
	start := m.Header.Get("offset")
	epoch := epochOf(t, start)
	if start != epoch+"-1" {
		t.Fatalf("first offset %q, want <epoch>-1", start)
	}
	var wg sync.WaitGroup
	for p := range 2 {
		prod := dialGS(t, srv)
		wg.Go(func() {
			for i := range perProducer {
				if err := prod.Send("/topic/hist.seam", "text/plain", []byte(strconv.Itoa(p)+"-"+strconv.Itoa(i)), nil...); err != nil {
					t.Errorf("send: %v", err)
					return
				}
			}
		})
	}
	c := dialRaw(t, srv.addr)
	c.connect()
	time.Sleep(time.Millisecond) // let the producers get going; correctness does not depend on it
	r := subscribeReceipt(c, "resume", "/topic/hist.seam", "resume-after:"+start)
	if header(r, "recovered") != "true" {
		t.Fatalf("recovered %q, want true", header(r, "recovered"))
	}
	wg.Wait()
	total := 1 + 2*perProducer
	replaying := true
	replayed := 0
	for seq := 2; seq <= total; seq++ {
		f := c.next(gsWait)
		if f.Command != frames.CmdMessage || header(f, "offset") != epoch+"-"+strconv.Itoa(seq) {
			t.Fatalf("got %s offset %q, want %s-%d (no gap, no duplicate)", f.Command, header(f, "offset"), epoch, seq)
		}
		isReplay := header(f, "replayed") == "true"
		if isReplay && !replaying {
			t.Fatalf("offset %d replayed after a live one", seq)
		}
		if isReplay {
			replayed++
		}
		replaying = isReplay
	}
	// Nothing after the last: a sentinel on another topic comes next.
	c.send(frame("SEND", "", "destination:/topic/other", "receipt:end"))
	rawUntilReceipt(c, "end")
	t.Logf("%d of %d messages replayed, the rest live", replayed, total-1)
}

// TestHistoryResumeTenThousand: a resume of 10,000 small messages works
// with the default limits (no slow-consumer), in order.
func TestHistoryResumeTenThousand(t *testing.T) {
	const n = 10_000
	for _, tr := range historyTransports {
		t.Run(tr.name, func(t *testing.T) {
			dial := tr.start(t, historyConfig(n, 0))
			pub := dial()
			pub.connect()
			c := dial()
			c.connect()
			epoch := epochOf(t, header(subscribeReceipt(c, "probe", "/topic/hist.big"), "offset"))
			c.send(frame("UNSUBSCRIBE", "", "id:probe", "receipt:u"))
			rawUntilReceipt(c, "u")
			body := strings.Repeat("x", 100)
			for range n / 1000 {
				var b strings.Builder
				for range 1000 {
					b.WriteString(frame("SEND", body, "destination:/topic/hist.big"))
				}
				pub.send(b.String())
			}
			pub.send(frame("SEND", "", "destination:/topic/other", "receipt:pub"))
			rawUntilReceipt(pub, "pub")
			r := subscribeReceipt(c, "all", "/topic/hist.big", "resume-after:"+epoch+"-0")
			if header(r, "recovered") != "true" || header(r, "offset") != epoch+"-"+strconv.Itoa(n) {
				t.Fatalf("recovered %q offset %q", header(r, "recovered"), header(r, "offset"))
			}
			for seq := 1; seq <= n; seq++ {
				f := c.next(gsWait)
				if f.Command != frames.CmdMessage || header(f, "offset") != epoch+"-"+strconv.Itoa(seq) {
					t.Fatalf("got %s (%s) offset %q, want %d", f.Command, header(f, "error-code"), header(f, "offset"), seq)
				}
			}
		})
	}
}

// TestHistoryReplayBoundedByOutbox: a replay larger than half the
// subscriber's outbox is cut to the newest messages that fit: the RECEIPT
// says recovered:false and the subscriber is not closed as slow.
func TestHistoryReplayBoundedByOutbox(t *testing.T) {
	cfg := historyConfig(1000, 0)
	cfg.Broker.MaxOutboxBytes = 64 << 10
	srv := startServer(t, cfg)
	pub := dialRaw(t, srv.addr)
	pub.connect()
	publishN(pub, "/topic/hist.cap", strings.Repeat("y", 1000)+"-", 200) // ~260 KB retained
	c := dialRaw(t, srv.addr)
	c.connect()
	r := subscribeReceipt(c, "cap", "/topic/hist.cap", "history:200")
	if header(r, "recovered") != "false" {
		t.Fatalf("recovered %q, want false: 200 KB do not fit half of a 64 KiB outbox", header(r, "recovered"))
	}
	epoch := epochOf(t, header(r, "offset"))
	var got []int
	for {
		f := c.next(gsWait)
		if f.Command != frames.CmdMessage {
			t.Fatalf("got %s (%s: %s)", f.Command, header(f, "error-code"), f.Body)
		}
		_, seq, _ := strings.Cut(header(f, "offset"), "-")
		n, _ := strconv.Atoi(seq)
		got = append(got, n)
		if n == 200 {
			break
		}
		if len(got) > 200 {
			t.Fatal("more than 200 messages")
		}
	}
	if len(got) == 0 || len(got) > 32 || got[0] != 200-len(got)+1 {
		t.Fatalf("replayed seqs %v of epoch %s: want the newest that fit in 32 KiB, contiguous up to 200", got, epoch)
	}
	// Still a live subscriber.
	publishN(pub, "/topic/hist.cap", "z", 1)
	if f := c.next(gsWait); header(f, "offset") != epoch+"-201" || header(f, "replayed") != "" {
		t.Fatalf("live after the capped replay: %s offset %q", f.Command, header(f, "offset"))
	}
}

// TestHistoryMetricsScraped: the history gauges reach /metrics, without
// topic names.
func TestHistoryMetricsScraped(t *testing.T) {
	srv := startServer(t, historyConfig(3, 0))
	admin := startAdmin(t, srv.Server)
	pub := dialRaw(t, srv.addr)
	pub.connect()
	publishN(pub, "/topic/hist.m1", "a", 5)
	publishN(pub, "/topic/hist.m2", "b", 1)
	body := scrapeUntil(t, admin, "stompbox_topic_history_messages", "4")
	checkSamples(t, body, map[string]string{"stompbox_topic_history_topics": "2"})
	if strings.Contains(body, "hist.m1") {
		t.Fatal("a topic name is in /metrics")
	}
}
