package server

import (
	"slices"
	"testing"

	"github.com/go-stomp/stomp/v3"
	stompframe "github.com/go-stomp/stomp/v3/frame"

	"github.com/stompbox/stompbox/frames"
)

// durableName is the SUBSCRIBE option of a durable subscription.
func durableName(name string) func(*stompframe.Frame) error {
	return stomp.SubscribeOpt.Header("durable-subscription-name", name)
}

// A durable topic subscription keeps what is published while its client
// is away and delivers it in order when the same client-id subscribes
// again with the same name; what the client left unacknowledged comes
// first, marked redelivered.
func TestDurableSubscriptionKeepsMessagesWhileAway(t *testing.T) {
	tests := []struct {
		name        string
		dest        string // subscribed
		publish     string // published to
		mode        stomp.AckMode
		redelivered []string
	}{
		{"topic, auto", "/topic/news", "/topic/news", stomp.AckAuto, nil},
		{"wildcard, auto", "/topic/news.#", "/topic/news.eu", stomp.AckAuto, nil},
		{"topic, unacked at disconnect", "/topic/news", "/topic/news", stomp.AckClientIndividual, []string{"live"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, Config{})
			clientID := stomp.ConnOpt.Header("client-id", "app-1")
			pub := dialGS(t, srv)
			bystander := dialGS(t, srv).subscribe(tt.dest, stomp.AckAuto) // not durable

			first := dialGS(t, srv, clientID)
			sub := first.subscribe(tt.dest, tt.mode, durableName("feed"))
			pub.send(tt.publish, "live")
			if m := gsRecv(t, sub); string(m.Body) != "live" || m.Destination != tt.publish {
				t.Fatalf("got %s %q, want %s live", m.Destination, m.Body, tt.publish)
			}
			first.close()

			away := []string{"a1", "a2", "a3"}
			for _, body := range away {
				pub.send(tt.publish, body)
			}
			if got := gsBodies(t, bystander, 4); !slices.Equal(got, append([]string{"live"}, away...)) {
				t.Errorf("bystander got %q", got)
			}

			again := dialGS(t, srv, clientID)
			sub = again.subscribe(tt.dest, stomp.AckAuto, durableName("feed"))
			for _, w := range tt.redelivered {
				mustBody(t, gsRecv(t, sub), w, 2)
			}
			for _, w := range away {
				m := gsRecv(t, sub)
				mustBody(t, m, w, 1)
				if m.Destination != tt.publish {
					t.Errorf("backlog message destination %q, want %q", m.Destination, tt.publish)
				}
			}
			pub.send(tt.publish, "back")
			mustBody(t, gsRecv(t, sub), "back", 1)
		})
	}
}

// One durable subscription has one consumer at a time: another connection
// with the same client-id and name gets ERROR subscription-in-use; other
// names and other client-ids are independent; once the first detaches,
// the name can be taken.
func TestDurableSubscriptionInUse(t *testing.T) {
	srv := startServer(t, Config{})
	first := dialGS(t, srv, stomp.ConnOpt.Header("client-id", "app-1"))
	first.subscribe("/topic/inuse", stomp.AckAuto, durableName("d"))

	attach := func(clientID, name string) *rawClient {
		c := dialRaw(t, srv.addr)
		c.connect("client-id:" + clientID)
		c.send(frame("SUBSCRIBE", "", "id:1", "destination:/topic/inuse",
			"durable-subscription-name:"+name, "receipt:sub"))
		return c
	}
	second := attach("app-1", "d")
	e := rawExpectCmd(second, frames.CmdError)
	if header(e, "error-code") != "subscription-in-use" || header(e, "receipt-id") != "sub" || header(e, "retryable") != "true" {
		t.Errorf("ERROR error-code %q receipt-id %q retryable %q, want subscription-in-use, sub, true",
			header(e, "error-code"), header(e, "receipt-id"), header(e, "retryable"))
	}
	second.expectClosed(gsWait)

	rawUntilReceipt(attach("app-1", "other-name"), "sub")
	rawUntilReceipt(attach("app-2", "d"), "sub")

	first.close()
	rawUntilReceipt(attach("app-1", "d"), "sub")
}

// UNSUBSCRIBE with remove-durable:true deletes the durable subscription
// and its backlog (acknowledged or not); a plain UNSUBSCRIBE keeps both.
func TestDurableUnsubscribeRemoveDurable(t *testing.T) {
	tests := []struct {
		remove bool
		want   []string // after subscribing again and one more publish
	}{
		{true, []string{"MESSAGE m3"}},
		{false, []string{"MESSAGE m1", "MESSAGE m2", "MESSAGE m3"}},
	}
	for _, tt := range tests {
		name := "keep"
		if tt.remove {
			name = "remove-durable"
		}
		t.Run(name, func(t *testing.T) {
			srv := startServer(t, Config{})
			c := dialRaw(t, srv.addr)
			c.connect("client-id:app-r")
			c.send(frame("SUBSCRIBE", "", "id:1", "destination:/topic/rd", "durable-subscription-name:d",
				"ack:client-individual", "prefetch-count:1", "receipt:s1"))
			rawUntilReceipt(c, "s1")
			pub := dialGS(t, srv)
			pub.send("/topic/rd", "m1") // delivered, left unacknowledged
			pub.send("/topic/rd", "m2") // waits: no credit
			if m := rawExpectCmd(c, frames.CmdMessage); string(m.Body) != "m1" {
				t.Fatalf("got %q, want m1", m.Body)
			}
			unsub := []string{"id:1", "receipt:u1"}
			if tt.remove {
				unsub = append(unsub, "remove-durable:true")
			}
			c.send(frame("UNSUBSCRIBE", "", unsub...))
			rawUntilReceipt(c, "u1")

			c.send(frame("SUBSCRIBE", "", "id:2", "destination:/topic/rd", "durable-subscription-name:d", "receipt:s2"))
			rawUntilReceipt(c, "s2") // the backlog, if any, follows the receipt
			pub.send("/topic/rd", "m3")
			var got []string
			for range tt.want {
				got = append(got, rawBodies([]*frames.Frame{rawExpectCmd(c, frames.CmdMessage)})...)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("after subscribing again got %q, want %q", got, tt.want)
			}
		})
	}
}

// A durable subscription needs a client-id on CONNECT to be found again.
func TestDurableSubscriptionWithoutClientID(t *testing.T) {
	srv := startServer(t, Config{})
	c := dialRaw(t, srv.addr)
	c.connect()
	c.send(frame("SUBSCRIBE", "", "id:1", "destination:/topic/x", "durable-subscription-name:d", "receipt:r"))
	e := rawExpectCmd(c, frames.CmdError)
	if header(e, "error-code") != "missing-header" || header(e, "receipt-id") != "r" {
		t.Errorf("ERROR error-code %q receipt-id %q, want missing-header, r", header(e, "error-code"), header(e, "receipt-id"))
	}
	c.expectClosed(gsWait)
}
