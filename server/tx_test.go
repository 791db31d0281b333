package server

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/frames"
)

// SENDs inside BEGIN..COMMIT are delivered all at COMMIT, in order, and
// not before; ABORT and a disconnect with the transaction open deliver
// none. To topics and queues alike.
func TestTransactionSendsTakeEffectAtCommit(t *testing.T) {
	ends := []struct {
		name string
		end  func(t *testing.T, pub *gsConn, tx *stomp.Transaction)
		want []string
	}{
		{"commit", func(t *testing.T, _ *gsConn, tx *stomp.Transaction) {
			if err := tx.CommitWithReceipt(); err != nil {
				t.Fatal(err)
			}
		}, []string{"outside", "t1", "t2", "t3", "after"}},
		{"abort", func(t *testing.T, _ *gsConn, tx *stomp.Transaction) {
			if err := tx.AbortWithReceipt(); err != nil {
				t.Fatal(err)
			}
		}, []string{"outside", "after"}},
		{"disconnect", func(_ *testing.T, pub *gsConn, _ *stomp.Transaction) { pub.close() },
			[]string{"outside", "after"}},
	}
	for _, dest := range []string{"/queue/tx", "/topic/tx"} {
		for _, e := range ends {
			t.Run(dest+"/"+e.name, func(t *testing.T) {
				srv := startServer(t, Config{})
				sub := dialGS(t, srv).subscribe(dest, stomp.AckAuto)
				pub := dialGS(t, srv)
				tx, err := pub.BeginWithError()
				if err != nil {
					t.Fatal(err)
				}
				for _, body := range []string{"t1", "t2", "t3"} {
					if err := tx.Send(dest, "text/plain", []byte(body), stomp.SendOpt.Receipt); err != nil {
						t.Fatal(err)
					}
				}
				// Sent after the transaction's SENDs were accepted; had any
				// of them been delivered, it would arrive first.
				pub.send(dest, "outside")
				if got := string(gsRecv(t, sub).Body); got != "outside" {
					t.Fatalf("first message %q before the transaction ended, want outside", got)
				}
				e.end(t, pub, tx)
				dialGS(t, srv).send(dest, "after")
				got := append([]string{"outside"}, gsBodies(t, sub, len(e.want)-1)...)
				if !slices.Equal(got, e.want) {
					t.Errorf("subscriber got %q, want %q", got, e.want)
				}
			})
		}
	}
}

// An ACK inside a transaction takes effect at COMMIT: until then the
// message still holds the consumer's only credit, and after ABORT, or a
// disconnect with the transaction open, it is redelivered.
func TestTransactionAckTakesEffectAtCommit(t *testing.T) {
	tests := []struct {
		end         string // "COMMIT", "ABORT" or "" (disconnect with the transaction open)
		wantOnEnd   []string
		redelivered []string // to the next consumer, in order, redelivered:true
		fresh       []string // then first deliveries
	}{
		{"COMMIT", []string{"MESSAGE m2"}, []string{"m2"}, nil},
		{"ABORT", nil, []string{"m1"}, []string{"m2"}},
		{"", nil, []string{"m1"}, []string{"m2"}},
	}
	for _, tt := range tests {
		t.Run("end="+tt.end, func(t *testing.T) {
			srv := startServer(t, Config{})
			c := dialRaw(t, srv.addr)
			c.connect()
			c.send(frame("SUBSCRIBE", "", "id:s", "destination:/queue/txack", "ack:client-individual",
				"prefetch-count:1", "receipt:sub"))
			rawUntilReceipt(c, "sub")
			pub := dialGS(t, srv)
			pub.send("/queue/txack", "m1")
			pub.send("/queue/txack", "m2")
			m1 := rawExpectCmd(c, frames.CmdMessage)
			if string(m1.Body) != "m1" {
				t.Fatalf("got %q, want m1", m1.Body)
			}
			c.send(frame("BEGIN", "", "transaction:tx", "receipt:begin"))
			rawUntilReceipt(c, "begin")
			c.send(frame("ACK", "", "id:"+header(m1, "ack"), "transaction:tx", "receipt:ack"))
			if got := rawBodies(rawUntilReceipt(c, "ack")); len(got) != 0 {
				t.Fatalf("got %q after an ACK inside a transaction: it freed credit before COMMIT", got)
			}
			if tt.end != "" {
				c.send(frame(tt.end, "", "transaction:tx", "receipt:end"))
				got := rawBodies(rawUntilReceipt(c, "end"))
				if len(got) < len(tt.wantOnEnd) { // a delivery may follow the receipt
					got = append(got, rawBodies([]*frames.Frame{rawExpectCmd(c, frames.CmdMessage)})...)
				}
				if !slices.Equal(got, tt.wantOnEnd) {
					t.Fatalf("after %s got %q, want %q", tt.end, got, tt.wantOnEnd)
				}
			}
			rawDisconnect(c)

			sub := dialGS(t, srv).subscribe("/queue/txack", stomp.AckAuto)
			pub.send("/queue/txack", "sentinel")
			for _, w := range tt.redelivered {
				mustBody(t, gsRecv(t, sub), w, 2)
			}
			for _, w := range append(tt.fresh, "sentinel") {
				mustBody(t, gsRecv(t, sub), w, 1)
			}
		})
	}
}

// Every frame that asks gets a RECEIPT with its receipt-id, after the
// frame took effect (so what it caused comes first); DISCONNECT's RECEIPT
// is the last frame before the server closes the connection.
func TestReceiptForEveryFrame(t *testing.T) {
	srv := startServer(t, Config{})
	c := dialRaw(t, srv.addr)
	c.connect()
	var last *frames.Frame // the latest MESSAGE, for ACK and NACK
	ackOf := func() string { return "id:" + header(last, "ack") }
	steps := []struct {
		command string
		headers func() []string
		body    string
		before  []string // frames the step causes ahead of its RECEIPT
	}{
		{"SUBSCRIBE", func() []string {
			return []string{"id:s1", "destination:/queue/rcpt", "ack:client-individual"}
		}, "", nil},
		{"SEND", func() []string { return []string{"destination:/queue/rcpt"} }, "one", []string{"MESSAGE one"}},
		{"NACK", func() []string { return []string{ackOf()} }, "", []string{"MESSAGE one"}},
		{"ACK", func() []string { return []string{ackOf()} }, "", nil},
		{"BEGIN", func() []string { return []string{"transaction:t1"} }, "", nil},
		{"SEND", func() []string { return []string{"destination:/queue/rcpt", "transaction:t1"} }, "two", nil},
		{"COMMIT", func() []string { return []string{"transaction:t1"} }, "", []string{"MESSAGE two"}},
		{"BEGIN", func() []string { return []string{"transaction:t2"} }, "", nil},
		{"ACK", func() []string { return []string{ackOf(), "transaction:t2"} }, "", nil},
		{"ABORT", func() []string { return []string{"transaction:t2"} }, "", nil},
		{"UNSUBSCRIBE", func() []string { return []string{"id:s1"} }, "", nil},
		{"DISCONNECT", func() []string { return nil }, "", nil},
	}
	for i, st := range steps {
		id := "r-" + string(rune('a'+i)) + "-" + st.command
		c.send(frame(st.command, st.body, append(st.headers(), "receipt:"+id)...))
		before := rawUntilReceipt(c, id)
		if got := rawBodies(before); !slices.Equal(got, st.before) {
			t.Fatalf("step %d %s: frames before its RECEIPT %q, want %q", i, st.command, got, st.before)
		}
		if len(before) > 0 {
			last = before[len(before)-1]
		}
	}
	c.expectClosed(gsWait)
}

// COMMIT is atomic: when a transactional ACK's delivery was settled
// otherwise before COMMIT, the COMMIT either succeeds as a whole or fails
// as a whole; it never delivers the transaction's SEND and then fails.
func TestTransactionCommitIsAtomic(t *testing.T) {
	tests := []struct {
		name   string
		mode   string
		settle func(c *rawClient, m1, m2 *frames.Frame) // ends with receipt "settled"
	}{
		{"UNSUBSCRIBE requeued it", "client-individual", func(c *rawClient, _, _ *frames.Frame) {
			c.send(frame("UNSUBSCRIBE", "", "id:s", "receipt:settled"))
		}},
		{"a cumulative ACK outside covered it", "client", func(c *rawClient, _, m2 *frames.Frame) {
			c.send(frame("ACK", "", "id:"+header(m2, "ack"), "receipt:settled"))
		}},
		{"another transaction acknowledged it", "client-individual", func(c *rawClient, m1, _ *frames.Frame) {
			c.send(frame("BEGIN", "", "transaction:t2"))
			c.send(frame("ACK", "", "id:"+header(m1, "ack"), "transaction:t2"))
			c.send(frame("COMMIT", "", "transaction:t2", "receipt:settled"))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, Config{})
			side := dialGS(t, srv).subscribe("/queue/side", stomp.AckAuto)
			c := dialRaw(t, srv.addr)
			c.connect()
			c.send(frame("SUBSCRIBE", "", "id:s", "destination:/queue/atomic", "ack:"+tt.mode, "receipt:sub"))
			rawUntilReceipt(c, "sub")
			pub := dialGS(t, srv)
			pub.send("/queue/atomic", "m1")
			pub.send("/queue/atomic", "m2")
			m1 := rawExpectCmd(c, frames.CmdMessage)
			m2 := rawExpectCmd(c, frames.CmdMessage)

			c.send(frame("BEGIN", "", "transaction:t"))
			c.send(frame("SEND", "tx-side", "destination:/queue/side", "transaction:t"))
			c.send(frame("ACK", "", "id:"+header(m1, "ack"), "transaction:t", "receipt:in-tx"))
			rawUntilReceipt(c, "in-tx")
			tt.settle(c, m1, m2)
			rawUntilReceipt(c, "settled")
			c.send(frame("COMMIT", "", "transaction:t", "receipt:commit"))
			f := c.next(gsWait)
			committed := f.Command == frames.CmdReceipt && header(f, "receipt-id") == "commit"
			if !committed && f.Command != frames.CmdError {
				t.Fatalf("COMMIT answered %s, want RECEIPT or ERROR", f.Command)
			}

			pub.send("/queue/side", "sentinel")
			first := string(gsRecv(t, side).Body)
			switch {
			case committed && first != "tx-side":
				t.Errorf("COMMIT succeeded but its SEND was not delivered (first on /queue/side: %q)", first)
			case !committed && first != "sentinel":
				t.Errorf("COMMIT failed with ERROR %s (%s) but its SEND was delivered: half a transaction took effect",
					header(f, "error-code"), f.Body)
			}
		})
	}
}

// A transactional SEND whose expires passes before COMMIT is dropped at
// COMMIT (counted), never delivered: to a queue and to a topic alike.
func TestTransactionSendExpiredAtCommit(t *testing.T) {
	for _, dest := range []string{"/queue/txexp", "/topic/txexp"} {
		t.Run(dest, func(t *testing.T) {
			clock := newMsgClock()
			srv := startServer(t, Config{Broker: broker.Config{Now: clock.Now}})
			sub := dialGS(t, srv).subscribe(dest, stomp.AckAuto)
			pub := dialGS(t, srv)
			tx, err := pub.BeginWithError()
			if err != nil {
				t.Fatal(err)
			}
			if err := tx.Send(dest, "text/plain", []byte("perishable"),
				stomp.SendOpt.Header("expires", clock.ms(time.Second)), stomp.SendOpt.Receipt); err != nil {
				t.Fatal(err)
			}
			clock.advance(2 * time.Second)
			if err := tx.CommitWithReceipt(); err != nil {
				t.Fatal(err)
			}
			pub.send(dest, "sentinel")
			if got := string(gsRecv(t, sub).Body); got != "sentinel" {
				t.Errorf("got %q, want sentinel: a message expired before COMMIT was delivered", got)
			}
			if got := srv.Broker().Stats().Expired.Load(); got != 1 {
				t.Errorf("Stats.Expired = %d, want 1", got)
			}
		})
	}
}

// DISCONNECT's RECEIPT comes after the DISCONNECT took effect: once the
// client has it, the connection's durable subscriptions are free to attach
// again, and its unacknowledged messages are back in their queue ahead of
// anything sent afterwards. The connection also holds many other
// subscriptions, so that releasing them takes long enough for a prompt
// reconnect to notice a RECEIPT sent before the release.
func TestDisconnectReceiptAfterRelease(t *testing.T) {
	var pad strings.Builder
	for i := range 1000 {
		pad.WriteString(frame("SUBSCRIBE", "", fmt.Sprintf("id:pad%d", i), fmt.Sprintf("destination:/queue/pad.%d", i)))
	}
	const attempts = 15
	t.Run("durable subscription free", func(t *testing.T) {
		srv := startServer(t, Config{})
		for i := range attempts {
			clientID := fmt.Sprintf("client-id:app-%d", i)
			c := dialRaw(t, srv.addr)
			c.connect(clientID)
			c.send(frame("SUBSCRIBE", "", "id:d", "destination:/topic/rel", "durable-subscription-name:d") +
				pad.String() + frame("DISCONNECT", "", "receipt:bye"))
			rawUntilReceipt(c, "bye")

			again := dialRaw(t, srv.addr)
			again.connect(clientID)
			again.send(frame("SUBSCRIBE", "", "id:d", "destination:/topic/rel", "durable-subscription-name:d", "receipt:again"))
			if f := again.next(gsWait); f.Command != frames.CmdReceipt {
				t.Fatalf("attempt %d: SUBSCRIBE after the DISCONNECT's RECEIPT got %s %s: %s",
					i, f.Command, header(f, "error-code"), f.Body)
			}
		}
	})
	t.Run("unacknowledged message requeued", func(t *testing.T) {
		srv := startServer(t, Config{})
		pub := dialGS(t, srv)
		for i := range attempts {
			q := fmt.Sprintf("/queue/rel.%d", i)
			pub.send(q, "held")
			c := dialRaw(t, srv.addr)
			c.connect()
			c.send(frame("SUBSCRIBE", "", "id:h", "destination:"+q, "ack:client-individual"))
			rawExpectCmd(c, frames.CmdMessage)
			c.send(pad.String() + frame("DISCONNECT", "", "receipt:bye"))
			rawUntilReceipt(c, "bye")

			next := dialRaw(t, srv.addr)
			next.connect()
			next.send(frame("SUBSCRIBE", "", "id:n", "destination:"+q, "receipt:n"))
			rawUntilReceipt(next, "n")
			pub.send(q, "later")
			if m := rawExpectCmd(next, frames.CmdMessage); string(m.Body) != "held" || header(m, "redelivered") != "true" {
				t.Fatalf("attempt %d: first message after the DISCONNECT's RECEIPT is %q (redelivered %q), want the requeued held",
					i, m.Body, header(m, "redelivered"))
			}
		}
	})
}
