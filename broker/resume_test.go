package broker

import (
	"encoding/base64"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stompbox/stompbox/frames"
)

// drop is what the driver does when the network fails: Abort, then
// Release from the read loop.
func (c *client) drop() {
	c.s.Abort(ClosePeer)
	c.s.Release()
}

// resumeOn connects c presenting token and returns CONNECTED and the
// frames that followed it in the same output (a resume's backlog).
func (c *client) resumeOn(token string, headers ...string) (*frames.Frame, []*frames.Frame) {
	c.t.Helper()
	headers = append([]string{"resume-token:" + token}, headers...)
	if !hasKey(headers, "accept-version") {
		headers = append([]string{"accept-version:1.2"}, headers...)
	}
	c.mustSend(frames.CmdConnect, "", headers...)
	fs := c.poll()
	if len(fs) == 0 || fs[0].Command != frames.CmdConnected {
		c.t.Fatalf("got %v, want CONNECTED first", commands(fs))
	}
	if hdr(fs[0], "version") == "1.1" {
		c.version = frames.V11
		c.parser.SetVersion(c.version)
	}
	return fs[0], fs[1:]
}

// parkedSubscriber connects anonymously to b, subscribes with the given
// SUBSCRIBE headers and drops: its session is parked; it returns the
// resume token.
func parkedSubscriber(t *testing.T, b *Broker, subscribe ...string) string {
	t.Helper()
	a := newClient(t, b)
	tok := hdr(a.connect(), "resume-token")
	a.mustSend(frames.CmdSubscribe, "", subscribe...)
	a.drop()
	return tok
}

// mustResume resumes tok on a new client of b, requiring resumed:true;
// it returns the client and the frames after CONNECTED.
func mustResume(t *testing.T, b *Broker, tok string, headers ...string) (*client, []*frames.Frame) {
	t.Helper()
	r := newClient(t, b)
	f, fs := r.resumeOn(tok, headers...)
	if hdr(f, "resumed") != "true" {
		t.Fatalf("CONNECTED %v, want resumed:true", headerLines(f))
	}
	return r, fs
}

func TestResumeTokenShape(t *testing.T) {
	b := New(Config{})
	seen := map[string]bool{}
	for range 100 {
		c := newClient(t, b)
		tok := hdr(c.connect(), "resume-token")
		raw, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil || len(raw) < 16+8 {
			t.Fatalf("token %q: %v, %d bytes; want base64url of >= 24 bytes", tok, err, len(raw))
		}
		if seen[tok] {
			t.Fatalf("token %q issued twice", tok)
		}
		seen[tok] = true
		c.s.Release()
	}
}

// TestResumeKeepsUnsentAtDrop: deliveries still queued for the connection
// when it dropped were never written: after the resume they arrive as
// first deliveries, in order, and nothing is sent twice.
func TestResumeKeepsUnsentAtDrop(t *testing.T) {
	b := New(Config{})
	a := newClient(t, b)
	tok := hdr(a.connect(), "resume-token")
	a.mustSend(frames.CmdSubscribe, "", "destination:/topic/t", "id:s")
	pub := newClient(t, b)
	pub.connect()
	pub.mustSend(frames.CmdSend, "written", "destination:/topic/t")
	if got := bodies(a.poll()); !slicesEqual(got, "written") {
		t.Fatalf("got %v", got)
	}
	pub.mustSend(frames.CmdSend, "queued", "destination:/topic/t")
	a.drop()
	pub.mustSend(frames.CmdSend, "parked", "destination:/topic/t")
	if n := b.ParkedSessions(); n != 1 {
		t.Fatalf("%d parked, want 1", n)
	}
	r := newClient(t, b)
	f, fs := r.resumeOn(tok)
	if hdr(f, "resumed") != "true" {
		t.Fatalf("CONNECTED %v", headerLines(f))
	}
	if got := bodies(fs); !slicesEqual(got, "queued", "parked") {
		t.Fatalf("after resume %v, want queued, parked", got)
	}
	for _, m := range fs {
		if hdr(m, "redelivered") != "" || hdr(m, "subscription") != "s" {
			t.Fatalf("MESSAGE %v", headerLines(m))
		}
	}
	if n := b.ParkedSessions(); n != 0 {
		t.Fatalf("%d parked after the resume, want 0", n)
	}
}

// TestResumeDiscardsTransactions: a transaction open at the drop is
// aborted (STOMP: a disconnect discards it), also for the resumed session.
func TestResumeDiscardsTransactions(t *testing.T) {
	b := New(Config{})
	a := newClient(t, b)
	tok := hdr(a.connect(), "resume-token")
	a.mustSend(frames.CmdBegin, "", "transaction:tx")
	a.mustSend(frames.CmdSend, "in tx", "destination:/queue/q", "transaction:tx")
	a.drop()
	r := newClient(t, b)
	r.resumeOn(tok)
	err := r.send(frames.CmdCommit, "", "transaction:tx")
	if !isClosed(err) {
		t.Fatalf("COMMIT of a transaction open at the drop: %v, want ERROR", err)
	}
	if f := r.next(); hdr(f, "error-code") != CodeUnknownTransaction {
		t.Fatalf("got %v, want unknown-transaction", headerLines(f))
	}
	c := newClient(t, b)
	c.connect()
	c.mustSend(frames.CmdSubscribe, "", "destination:/queue/q", "id:q")
	if got := c.poll(); len(got) != 0 {
		t.Fatalf("the discarded SEND was delivered: %v", bodies(got))
	}
}

// TestResumeOtherVersionRefused: subscription headers were escaped for
// the version the session negotiated, so a CONNECT negotiating another
// one gets a fresh session, and the parked one is released.
func TestResumeOtherVersionRefused(t *testing.T) {
	b := New(Config{})
	tok := parkedSubscriber(t, b, "destination:/topic/t", "id:s")
	r := newClient(t, b)
	if f, _ := r.resumeOn(tok, "accept-version:1.1"); hdr(f, "resumed") != "false" || hdr(f, "version") != "1.1" {
		t.Fatalf("CONNECTED %v, want 1.1 and resumed:false", headerLines(f))
	}
	if n := b.ParkedSessions(); n != 0 {
		t.Fatalf("%d parked, want 0: the refused session is released", n)
	}
}

// TestResumeQueuesSkipParked: a parked consumer takes no queue messages
// (another consumer gets them); once resumed it is served again.
func TestResumeQueuesSkipParked(t *testing.T) {
	b := New(Config{})
	tok := parkedSubscriber(t, b, "destination:/queue/q", "id:q")
	pub := newClient(t, b)
	pub.connect()
	pub.mustSend(frames.CmdSend, "while parked", "destination:/queue/q")
	r := newClient(t, b)
	if _, fs := r.resumeOn(tok); !slicesEqual(bodies(fs), "while parked") {
		got := bodies(fs)
		t.Fatalf("after resume %v, want the queued message", got)
	}
	other := newClient(t, b)
	other.connect()
	other.mustSend(frames.CmdSubscribe, "", "destination:/queue/q", "id:o")
	r.drop() // parked again: the next message goes to the other consumer
	pub.mustSend(frames.CmdSend, "to the live one", "destination:/queue/q")
	if got := bodies(other.poll()); !slicesEqual(got, "to the live one") {
		t.Fatalf("live consumer got %v", got)
	}
}

// TestReleaseParkedRequeues: shutdown (ReleaseParked) gives back what a
// parked session held: its unacknowledged queue message goes to another
// consumer, redelivered, and nothing parks any more afterwards.
func TestReleaseParkedRequeues(t *testing.T) {
	b := New(Config{})
	a := newClient(t, b)
	a.connect()
	a.mustSend(frames.CmdSubscribe, "", "destination:/queue/q", "id:q", "ack:client")
	pub := newClient(t, b)
	pub.connect()
	pub.mustSend(frames.CmdSend, "held", "destination:/queue/q")
	if got := bodies(a.poll()); !slicesEqual(got, "held") {
		t.Fatalf("got %v", got)
	}
	a.drop()
	other := newClient(t, b)
	other.connect()
	other.mustSend(frames.CmdSubscribe, "", "destination:/queue/q", "id:o")
	if got := other.poll(); len(got) != 0 {
		t.Fatalf("the parked session's unacked message went to another consumer: %v", bodies(got))
	}
	b.ReleaseParked()
	fs := other.poll()
	if got := bodies(fs); !slicesEqual(got, "held") || hdr(fs[0], "redelivered") != "true" {
		t.Fatalf("after ReleaseParked %v, want held redelivered", got)
	}
	late := newClient(t, b)
	late.connect()
	late.drop()
	if n := b.ParkedSessions(); n != 0 {
		t.Fatalf("%d parked after ReleaseParked, want 0", n)
	}
}

// TestResumeGraceTimer: a parked session nobody resumes is released when
// the grace passes, and its token is gone.
func TestResumeGraceTimer(t *testing.T) {
	reg := prometheus.NewRegistry()
	b := New(Config{ResumeGrace: 20 * time.Millisecond, Registerer: reg})
	a := newClient(t, b)
	tok := hdr(a.connect(), "resume-token")
	a.drop()
	for i := 0; b.ParkedSessions() != 0; i++ {
		if i == 500 {
			t.Fatal("still parked after 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	r := newClient(t, b)
	if f, _ := r.resumeOn(tok); hdr(f, "resumed") != "false" {
		t.Fatalf("CONNECTED %v, want resumed:false", headerLines(f))
	}
	if got := counterValue(t, reg, "stompbox_sessions_parked_released_total", "grace"); got != 1 {
		t.Fatalf("released{grace} = %v, want 1", got)
	}
	if got := counterValue(t, reg, "stompbox_session_resumes_total", "unknown"); got != 1 {
		t.Fatalf("resumes{unknown} = %v, want 1", got)
	}
	if got := counterValue(t, reg, "stompbox_session_resumes_total", "resumed"); got != 0 {
		t.Fatalf("resumes{resumed} = %v, want 0", got)
	}
}

// counterValue returns the value of one labelled series of a counter.
func counterValue(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == label {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no %s{%s}", name, label)
	return 0
}

// TestResumeUnderConcurrentPublishers: publishers keep publishing while
// the connection drops, parks and is resumed; what the old and the new
// connection received together is every message exactly once, in order
// per publisher. Run with -race: publishers read sub.session while the
// resume re-points it.
func TestResumeUnderConcurrentPublishers(t *testing.T) {
	b := New(Config{})
	a := newClient(t, b)
	tok := hdr(a.connect(), "resume-token")
	a.mustSend(frames.CmdSubscribe, "", "destination:/topic/t", "id:s")
	a.mustSend(frames.CmdSubscribe, "", "destination:/topic/u", "id:u", "ack:client-individual")
	const publishers, each = 4, 300
	var wg sync.WaitGroup
	for p := range publishers {
		pub := newClient(t, b)
		pub.connect()
		dest := "/topic/t"
		if p%2 == 1 {
			dest = "/topic/u"
		}
		wg.Go(func() {
			for i := range each {
				if err := pub.send(frames.CmdSend, strconv.Itoa(p)+"."+strconv.Itoa(i), "destination:"+dest); err != nil {
					t.Errorf("SEND: %v", err)
					return
				}
			}
		})
	}
	var got []*frames.Frame
	for i := 0; len(got) < 50 && i < 5000; i++ { // drop mid-stream
		got = append(got, a.poll()...)
		time.Sleep(100 * time.Microsecond)
	}
	a.drop()
	r := newClient(t, b)
	f, backlog := r.resumeOn(tok)
	if hdr(f, "resumed") != "true" {
		t.Fatalf("CONNECTED %v", headerLines(f))
	}
	got = append(got, backlog...)
	wg.Wait()
	got = append(got, r.poll()...)
	next := make([]int, publishers)
	acked := map[string]bool{}
	for _, m := range got {
		p, i, _ := strings.Cut(string(m.Body), ".")
		pn, _ := strconv.Atoi(p)
		n, _ := strconv.Atoi(i)
		if hdr(m, "redelivered") == "true" && n < next[pn] {
			continue // a client-individual message sent again after the resume
		}
		if n != next[pn] {
			t.Fatalf("publisher %d: got %d, want %d", pn, n, next[pn])
		}
		next[pn]++
		if id := hdr(m, "ack"); id != "" {
			acked[id] = true
		}
	}
	for p, n := range next {
		if n != each {
			t.Fatalf("publisher %d: %d messages, want %d", p, n, each)
		}
	}
	for id := range acked { // every unacked message is still ackable
		r.mustSend(frames.CmdAck, "", "id:"+id)
	}
}

// FuzzConnectResumeToken: whatever a CONNECT presents as resume-token,
// the session connects (resumed:false unless it is the parked session's
// token) and never panics or errors.
func FuzzConnectResumeToken(f *testing.F) {
	f.Add("")
	f.Add("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Add("not a token")
	f.Add(strings.Repeat("_", 32))
	f.Add("valid")
	f.Fuzz(func(t *testing.T, token string) {
		if strings.ContainsFunc(token, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }) {
			return // control characters: ERROR invalid-header, whatever the header
		}
		b := New(Config{ResumeGrace: time.Minute})
		a := newClient(t, b)
		real := hdr(a.connect(), "resume-token")
		a.mustSend(frames.CmdSubscribe, "", "destination:/topic/t", "id:s")
		a.drop()
		if token == "valid" {
			token = real
		}
		r := newClient(t, b)
		f, _ := r.resumeOn(token)
		if want := strconv.FormatBool(token == real); hdr(f, "resumed") != want {
			t.Fatalf("token %q: resumed:%s, want %s", token, hdr(f, "resumed"), want)
		}
		b.ReleaseParked()
	})
}

func slicesEqual(got []string, want ...string) bool {
	return slices.Equal(got, want)
}

// TestFreshConnectReleasesParkedClient: a client connecting afresh with
// the client-id of its parked session has started over: the parked
// session is released at once, so its durable subscription is free for
// the new connection (not subscription-in-use for the grace) and its
// unacknowledged queue message is redelivered. Another user's client-id
// releases nothing.
func TestFreshConnectReleasesParkedClient(t *testing.T) {
	b := New(Config{})
	a := newClient(t, b)
	a.connect("login:alice", "client-id:app")
	a.mustSend(frames.CmdSubscribe, "", "destination:/topic/feed", "id:d", "durable-subscription-name:feed")
	a.mustSend(frames.CmdSubscribe, "", "destination:/queue/work", "id:w", "ack:client-individual")
	pub := newClient(t, b)
	pub.connect()
	pub.mustSend(frames.CmdSend, "job", "destination:/queue/work")
	if got := bodies(a.poll()); !slicesEqual(got, "job") {
		t.Fatalf("consumer got %v, want the job", got)
	}
	a.drop()
	if n := b.ParkedSessions(); n != 1 {
		t.Fatalf("%d parked sessions, want 1", n)
	}

	mallory := newClient(t, b)
	mallory.connect("login:mallory", "client-id:app")
	if n := b.ParkedSessions(); n != 1 {
		t.Fatalf("another user's client-id released the parked session: %d parked, want 1", n)
	}

	r := newClient(t, b)
	r.connect("login:alice", "client-id:app")
	if n := b.ParkedSessions(); n != 0 {
		t.Fatalf("%d parked sessions after a fresh CONNECT with the same client-id, want 0", n)
	}
	r.mustSend(frames.CmdSubscribe, "", "destination:/topic/feed", "id:d2", "durable-subscription-name:feed", "receipt:r")
	if fs := r.poll(); len(fs) != 1 || fs[0].Command != frames.CmdReceipt {
		t.Fatalf("durable SUBSCRIBE got %v, want its RECEIPT", commands(fs))
	}
	r.mustSend(frames.CmdSubscribe, "", "destination:/queue/work", "id:w2")
	fs := r.poll()
	if !slicesEqual(bodies(fs), "job") || hdr(fs[0], "redelivered") != "true" {
		t.Fatalf("queue consumer got %v, want the job redelivered", bodies(fs))
	}
}
