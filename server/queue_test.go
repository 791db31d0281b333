package server

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	stompframe "github.com/go-stomp/stomp/v3/frame"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/frames"
)

// Messages sent while a queue has no consumer wait, and reach the first
// consumer in order, as first deliveries.
func TestQueueMessagesWaitForConsumer(t *testing.T) {
	srv := startServer(t, Config{})
	pub := dialGS(t, srv)
	want := make([]string, 10)
	for i := range want {
		want[i] = "w" + strconv.Itoa(i)
		pub.send("/queue/wait", want[i])
	}
	sub := dialGS(t, srv).subscribe("/queue/wait", stomp.AckAuto)
	for i, w := range want {
		m := gsRecv(t, sub)
		if string(m.Body) != w || m.Destination != "/queue/wait" {
			t.Fatalf("message %d: %s %q, want /queue/wait %q", i, m.Destination, m.Body, w)
		}
		if _, ok := m.Header.Contains("redelivered"); ok {
			t.Errorf("message %d marked redelivered on its first delivery", i)
		}
	}
}

// Competing consumers: each message goes to exactly one consumer, none is
// lost, each consumer sees every producer's messages in order, and
// consumers that all have credit share them round-robin.
func TestQueueCompetingConsumersExactlyOnce(t *testing.T) {
	tests := []struct {
		name      string
		mode      stomp.AckMode
		prefetch  string // prefetch-count header; "" for none
		producers int
		perProd   int
		spread    bool // all consumers always have credit: round-robin is exact
	}{
		{"auto, one producer", stomp.AckAuto, "", 1, 99, true},
		{"client-individual, prefetch-count:2, concurrent producers", stomp.AckClientIndividual, "2", 3, 100, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, Config{})
			const consumers = 3
			n := tt.producers * tt.perProd
			conns := make([]*gsConn, consumers)
			subs := make([]*stomp.Subscription, consumers)
			for i := range subs {
				conns[i] = dialGS(t, srv)
				var opts []func(*stompframe.Frame) error
				if tt.prefetch != "" {
					opts = append(opts, stomp.SubscribeOpt.Header("prefetch-count", tt.prefetch))
				}
				subs[i] = conns[i].subscribe("/queue/work", tt.mode, opts...)
			}

			type arrival struct{ consumer, producer, seq int }
			got := make(chan arrival)
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for i, sub := range subs {
				wg.Go(func() {
					for {
						select {
						case m, ok := <-sub.C:
							if !ok || m.Err != nil {
								return // the test goroutine times out and reports
							}
							var a arrival
							fmt.Sscanf(string(m.Body), "%d-%d", &a.producer, &a.seq)
							a.consumer = i
							if m.ShouldAck() {
								if err := conns[i].Ack(m); err != nil {
									t.Errorf("consumer %d: ACK: %v", i, err)
								}
							}
							select {
							case got <- a:
							case <-stop:
								return
							}
						case <-stop:
							return
						}
					}
				})
			}
			defer wg.Wait()
			defer close(stop)

			var pwg sync.WaitGroup
			for p := range tt.producers {
				pub := dialGS(t, srv)
				pwg.Go(func() {
					for i := range tt.perProd {
						if err := pub.Send("/queue/work", "text/plain", fmt.Appendf(nil, "%d-%d", p, i), stomp.SendOpt.Receipt); err != nil {
							t.Errorf("producer %d: %v", p, err)
							return
						}
					}
				})
			}
			seen := map[[2]int]int{}
			perConsumer := make([][]arrival, consumers)
			deadline := time.After(2 * gsWait)
			received := 0
		collect:
			for ; received < n; received++ {
				select {
				case a := <-got:
					seen[[2]int{a.producer, a.seq}]++
					perConsumer[a.consumer] = append(perConsumer[a.consumer], a)
				case <-deadline:
					break collect
				}
			}
			pwg.Wait() // producers end within their receipt timeout
			if received != n {
				t.Fatalf("received %d messages within %v, want %d", received, 2*gsWait, n)
			}
			for key, count := range seen {
				if count != 1 {
					t.Errorf("message %v delivered %d times, want exactly once", key, count)
				}
			}
			if len(seen) != n {
				t.Errorf("%d distinct messages delivered, want %d", len(seen), n)
			}
			stats := srv.Broker().Stats()
			if d, r := stats.Delivered.Load(), stats.Redelivered.Load(); d != uint64(n) || r != 0 {
				t.Errorf("Stats.Delivered = %d, Redelivered = %d; want %d, 0", d, r, n)
			}
			for i, as := range perConsumer {
				if tt.spread && (len(as) < n/consumers-1 || len(as) > n/consumers+1) {
					t.Errorf("consumer %d got %d messages, want %d±1 (round-robin)", i, len(as), n/consumers)
				}
				last := map[int]int{}
				for _, a := range as {
					if prev, ok := last[a.producer]; ok && a.seq < prev {
						t.Errorf("consumer %d got producer %d's message %d after %d", i, a.producer, a.seq, prev)
					}
					last[a.producer] = a.seq
				}
			}
		})
	}
}

// prefetch-count:1 with client-individual acks: a consumer holding an
// unacknowledged message gets no second one until it ACKs; the next
// message goes to a consumer with credit instead.
func TestQueuePrefetchHoldsBackUntilAck(t *testing.T) {
	srv := startServer(t, Config{})
	a := dialRaw(t, srv.addr)
	a.connect()
	a.send(frame("SUBSCRIBE", "", "id:a", "destination:/queue/pf", "ack:client-individual",
		"prefetch-count:1", "receipt:sub-a"))
	rawUntilReceipt(a, "sub-a")
	pub := dialGS(t, srv)
	pub.send("/queue/pf", "m1")
	m1 := rawExpectCmd(a, frames.CmdMessage)
	if string(m1.Body) != "m1" {
		t.Fatalf("A got %q, want m1", m1.Body)
	}

	b := dialGS(t, srv)
	bsub := b.subscribe("/queue/pf", stomp.AckClientIndividual, stomp.SubscribeOpt.Header("prefetch-count", "1"))
	pub.send("/queue/pf", "m2")
	pub.send("/queue/pf", "m3") // nobody has credit now: it waits
	if got := string(gsRecv(t, bsub).Body); got != "m2" {
		t.Fatalf("B got %q, want m2 (A holds m1 unacknowledged)", got)
	}
	// Had m2 or m3 gone to A, it would have been queued to A before the
	// producer's receipts, so before this probe's receipt.
	a.send(frame("BEGIN", "", "transaction:probe", "receipt:probe"))
	if got := rawBodies(rawUntilReceipt(a, "probe")); len(got) != 0 {
		t.Fatalf("A got %q while holding an unacknowledged message with prefetch-count:1", got)
	}

	a.send(frame("ACK", "", "id:"+header(m1, "ack"), "receipt:ack-1"))
	frs := rawUntilReceipt(a, "ack-1")
	if len(frs) == 0 { // the freed credit may be used just after the receipt
		frs = append(frs, rawExpectCmd(a, frames.CmdMessage))
	}
	if got := rawBodies(frs); !slices.Equal(got, []string{"MESSAGE m3"}) {
		t.Fatalf("after its ACK, A got %q, want [MESSAGE m3]", got)
	}
}

// /temp-queue/ request/reply: the request's reply-to is rewritten to a
// /reply-queue/ address that others can SEND to but not SUBSCRIBE to, and
// another connection's /temp-queue/ of the same name is its own.
func TestTempQueueRequestReply(t *testing.T) {
	srv := startServer(t, Config{})
	a := dialGS(t, srv)
	replies := a.subscribe("/temp-queue/replies", stomp.AckAuto)
	other := dialRaw(t, srv.addr) // has a /temp-queue/replies of its own
	other.connect()
	other.send(frame("SUBSCRIBE", "", "id:o", "destination:/temp-queue/replies", "receipt:o"))
	rawUntilReceipt(other, "o")
	b := dialGS(t, srv)
	requests := b.subscribe("/queue/req", stomp.AckAuto)

	a.send("/queue/req", "ping", stomp.SendOpt.Header("reply-to", "/temp-queue/replies"),
		stomp.SendOpt.Header("correlation-id", "c-1"))
	req := gsRecv(t, requests)
	replyTo := req.Header.Get("reply-to")
	if !replyAddress.MatchString(replyTo) || strings.Contains(replyTo, a.Session()) {
		t.Fatalf("request reply-to %q, want /reply-queue/<32 hex digits>/replies, without the session id %q", replyTo, a.Session())
	}
	b.send(replyTo, "pong", stomp.SendOpt.Header("correlation-id", req.Header.Get("correlation-id")))
	rep := gsRecv(t, replies)
	if string(rep.Body) != "pong" || rep.Header.Get("correlation-id") != "c-1" || rep.Header.Get("subscription") != replies.Id() {
		t.Fatalf("reply %q correlation-id %q subscription %q, want pong c-1 %s",
			rep.Body, rep.Header.Get("correlation-id"), rep.Header.Get("subscription"), replies.Id())
	}

	// The other connection's temporary queue did not get the reply: its
	// first MESSAGE is the one it sends itself.
	other.send(frame("SEND", "own", "destination:/temp-queue/replies", "receipt:own"))
	if got := rawBodies(rawUntilReceipt(other, "own")); !slices.Equal(got, []string{"MESSAGE own"}) {
		t.Fatalf("other connection's temp queue got %q, want only its own message", got)
	}

	thief := dialRaw(t, srv.addr)
	thief.connect()
	thief.send(frame("SUBSCRIBE", "", "id:steal", "destination:"+replyTo, "receipt:steal"))
	e := rawExpectCmd(thief, frames.CmdError)
	if header(e, "error-code") != "forbidden" || header(e, "receipt-id") != "steal" {
		t.Errorf("ERROR error-code %q receipt-id %q, want forbidden, steal", header(e, "error-code"), header(e, "receipt-id"))
	}
	thief.expectClosed(gsWait)
}

// msgClock is a settable clock for broker.Config.Now.
type msgClock struct{ ns atomic.Int64 }

func newMsgClock() *msgClock {
	c := &msgClock{}
	c.ns.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *msgClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *msgClock) advance(d time.Duration) { c.ns.Add(int64(d)) }
func (c *msgClock) ms(d time.Duration) string {
	return strconv.FormatInt(c.Now().Add(d).UnixMilli(), 10)
}

// An expired message is never delivered: sent already expired (topic or
// queue), or expiring in a queue while no consumer is attached. One that
// has not expired is delivered with its expires header.
func TestExpiredMessagesAreNotDelivered(t *testing.T) {
	tests := []struct {
		name        string
		dest        string
		expiresIn   time.Duration // relative to the clock when sent
		fixed       string        // if set, the expires header as is
		advance     time.Duration // clock moves on before the consumer subscribes
		subscribe   bool          // consumer subscribed before the SEND
		wantExpired uint64
	}{
		{"topic, in the past", "/topic/exp", -time.Millisecond, "", 0, true, 1},
		{"queue, in the past", "/queue/exp", -time.Second, "", 0, true, 1},
		{"queue, due now", "/queue/exp", 0, "", 0, true, 1},
		{"queue, passes while waiting", "/queue/exp", 500 * time.Millisecond, "", time.Second, false, 1},
		{"queue, still valid", "/queue/exp", time.Hour, "", time.Minute, false, 0},
		{"topic, still valid", "/topic/exp", time.Hour, "", 0, true, 0},
		{"queue, 0 is never", "/queue/exp", 0, "0", 100 * 365 * 24 * time.Hour, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newMsgClock()
			srv := startServer(t, Config{Broker: broker.Config{Now: clock.Now}})
			cons := dialGS(t, srv)
			var sub *stomp.Subscription
			if tt.subscribe {
				sub = cons.subscribe(tt.dest, stomp.AckAuto)
			}
			pub := dialGS(t, srv)
			expires := clock.ms(tt.expiresIn)
			if tt.fixed != "" {
				expires = tt.fixed
			}
			pub.send(tt.dest, "perishable", stomp.SendOpt.Header("expires", expires))
			clock.advance(tt.advance)
			if !tt.subscribe {
				sub = cons.subscribe(tt.dest, stomp.AckAuto)
			}
			pub.send(tt.dest, "sentinel")

			m := gsRecv(t, sub)
			if tt.wantExpired == 0 {
				if string(m.Body) != "perishable" || m.Header.Get("expires") != expires {
					t.Fatalf("got %q expires %q, want perishable expires %s", m.Body, m.Header.Get("expires"), expires)
				}
				m = gsRecv(t, sub)
			}
			if string(m.Body) != "sentinel" {
				t.Fatalf("got %q, want sentinel: the expired message was delivered", m.Body)
			}
			if got := srv.Broker().Stats().Expired.Load(); got != tt.wantExpired {
				t.Errorf("Stats.Expired = %d, want %d", got, tt.wantExpired)
			}
		})
	}
}

// mustBody fails unless m has body want and the redelivery headers of its
// delivery: count 1 means a first delivery (no redelivered header).
func mustBody(t testing.TB, m *stomp.Message, want string, count int) {
	t.Helper()
	red, hasRed := m.Header.Contains("redelivered")
	dc, hasDC := m.Header.Contains("delivery-count")
	switch {
	case string(m.Body) != want:
		t.Errorf("body %q, want %q", m.Body, want)
	case count == 1 && (hasRed || hasDC):
		t.Errorf("%s: redelivered=%q delivery-count=%q on a first delivery", want, red, dc)
	case count > 1 && (red != "true" || dc != fmt.Sprint(count)):
		t.Errorf("%s: redelivered=%q delivery-count=%q, want true, %d", want, red, dc, count)
	}
}
