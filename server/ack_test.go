package server

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/go-stomp/stomp/v3"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/frames"
)

// What a consumer leaves unacknowledged when it disconnects is redelivered
// (redelivered:true, delivery-count:2) to the next consumer, in queue
// order; what it acknowledged is not. auto acknowledges on delivery,
// client acknowledges cumulatively, client-individual one message.
func TestAckModesRedeliveryAfterDisconnect(t *testing.T) {
	tests := []struct {
		name string
		mode stomp.AckMode
		ack  int // index of the message ACKed; -1: none
		want []string
	}{
		{"auto", stomp.AckAuto, -1, nil},
		{"client, ACK of the 3rd acks 1-3", stomp.AckClient, 2, []string{"m4", "m5"}},
		{"client, ACK of the last acks all", stomp.AckClient, 4, nil},
		{"client, no ACK", stomp.AckClient, -1, []string{"m1", "m2", "m3", "m4", "m5"}},
		{"client-individual, ACK of the 2nd only", stomp.AckClientIndividual, 1, []string{"m1", "m3", "m4", "m5"}},
		{"client-individual, ACK of the last only", stomp.AckClientIndividual, 4, []string{"m1", "m2", "m3", "m4"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, Config{})
			pub := dialGS(t, srv)
			for i := 1; i <= 5; i++ {
				pub.send("/queue/acks", fmt.Sprintf("m%d", i))
			}
			first := dialGS(t, srv)
			sub := first.subscribe("/queue/acks", tt.mode)
			msgs := make([]*stomp.Message, 5)
			for i := range msgs {
				msgs[i] = gsRecv(t, sub)
				mustBody(t, msgs[i], fmt.Sprintf("m%d", i+1), 1)
			}
			if tt.ack >= 0 {
				if err := first.Ack(msgs[tt.ack]); err != nil {
					t.Fatal(err)
				}
				first.barrier()
			}
			first.close()

			next := dialGS(t, srv)
			sub = next.subscribe("/queue/acks", stomp.AckAuto)
			pub.send("/queue/acks", "m6") // sentinel: nothing else may come before it
			for _, w := range tt.want {
				mustBody(t, gsRecv(t, sub), w, 2)
			}
			mustBody(t, gsRecv(t, sub), "m6", 1)
		})
	}
}

// NACK redelivers at once, with redelivered:true and a delivery count that
// grows with each NACK; in client mode a NACK is cumulative like an ACK.
func TestNackRedeliversImmediately(t *testing.T) {
	tests := []struct {
		name string
		mode stomp.AckMode
		nack int      // index of the message NACKed (of m1, m2)
		want []string // redelivered after each NACK
	}{
		{"client-individual", stomp.AckClientIndividual, 0, []string{"m1"}},
		{"client, cumulative", stomp.AckClient, 1, []string{"m1", "m2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, Config{})
			c := dialGS(t, srv)
			sub := c.subscribe("/queue/nack", tt.mode)
			pub := dialGS(t, srv)
			pub.send("/queue/nack", "m1")
			pub.send("/queue/nack", "m2")
			msgs := []*stomp.Message{gsRecv(t, sub), gsRecv(t, sub)}
			mustBody(t, msgs[0], "m1", 1)
			mustBody(t, msgs[1], "m2", 1)
			ids := map[string]string{"m1": msgs[0].Header.Get("message-id"), "m2": msgs[1].Header.Get("message-id")}
			nacked := msgs[tt.nack]
			for count := 2; count <= 3; count++ {
				if err := c.Nack(nacked); err != nil {
					t.Fatal(err)
				}
				for _, w := range tt.want {
					m := gsRecv(t, sub)
					mustBody(t, m, w, count)
					if got := m.Header.Get("message-id"); got != ids[w] {
						t.Errorf("redelivered %s has message-id %q, want the original %q", w, got, ids[w])
					}
					nacked = m
				}
			}
			pub.send("/queue/nack", "m3")
			mustBody(t, gsRecv(t, sub), "m3", 1)
		})
	}
}

// After max-redeliveries redeliveries the message moves to
// /queue/DLQ.<name> with its body and headers, and why and from where.
func TestMaxRedeliveriesMoveToDeadLetterQueue(t *testing.T) {
	tests := []struct {
		name   string
		nack   bool // NACK each delivery; else disconnect holding it
		reason string
	}{
		{"NACK", true, "rejected (NACK) after max redeliveries"},
		{"disconnect", false, "consumer gone after max redeliveries"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, Config{Broker: broker.Config{MaxRedeliveries: 2}})
			dlq := dialGS(t, srv).subscribe("/queue/DLQ.jobs", stomp.AckAuto)
			pub := dialGS(t, srv)
			body := []byte("{\"job\":1}\x00tail")
			if err := pub.Send("/queue/jobs", "application/json", body,
				stomp.SendOpt.Header("x-trace", "p-1"), stomp.SendOpt.Receipt); err != nil {
				t.Fatal(err)
			}

			var id string
			var nacker *gsConn
			var sub *stomp.Subscription
			for count := 1; count <= 3; count++ { // 1 delivery + 2 redeliveries
				if !tt.nack || nacker == nil {
					nacker = dialGS(t, srv)
					sub = nacker.subscribe("/queue/jobs", stomp.AckClientIndividual)
				}
				m := gsRecv(t, sub)
				if !bytes.Equal(m.Body, body) {
					t.Fatalf("delivery %d: body %q, want %q", count, m.Body, body)
				}
				if got := m.Header.Get("delivery-count"); count > 1 && got != fmt.Sprint(count) {
					t.Errorf("delivery %d: delivery-count %q", count, got)
				}
				if count == 1 {
					id = m.Header.Get("message-id")
				}
				if tt.nack {
					if err := nacker.Nack(m); err != nil {
						t.Fatal(err)
					}
				} else {
					nacker.close()
				}
			}
			nacker.close()

			d := gsRecv(t, dlq)
			want := map[string]string{
				"destination":             "/queue/DLQ.jobs",
				"dlq-reason":              tt.reason,
				"original-destination":    "/queue/jobs",
				"original-message-id":     id,
				"original-delivery-count": "3",
				"x-trace":                 "p-1",
				"content-type":            "application/json",
			}
			for k, v := range want {
				if got := d.Header.Get(k); got != v {
					t.Errorf("DLQ message header %s = %q, want %q", k, got, v)
				}
			}
			if got := d.Header.Get("message-id"); got == "" || got == id {
				t.Errorf("DLQ message-id %q: want a new id, not the original %q", got, id)
			}
			if !bytes.Equal(d.Body, body) {
				t.Errorf("DLQ body %q, want %q", d.Body, body)
			}
			if got := srv.Broker().Stats().DeadLettered.Load(); got != 1 {
				t.Errorf("Stats.DeadLettered = %d, want 1", got)
			}

			// The message left /queue/jobs: a new consumer's first message
			// is the one sent after.
			sub = dialGS(t, srv).subscribe("/queue/jobs", stomp.AckAuto)
			pub.send("/queue/jobs", "next")
			mustBody(t, gsRecv(t, sub), "next", 1)
		})
	}
}

// The unacknowledged messages of a consumer that disconnects go to another
// live consumer of the queue, in order, marked redelivered.
func TestUnackedRequeuedToLiveConsumer(t *testing.T) {
	srv := startServer(t, Config{})
	a := dialGS(t, srv)
	asub := a.subscribe("/queue/handoff", stomp.AckClientIndividual)
	pub := dialGS(t, srv)
	pub.send("/queue/handoff", "m1")
	pub.send("/queue/handoff", "m2")
	mustBody(t, gsRecv(t, asub), "m1", 1)
	mustBody(t, gsRecv(t, asub), "m2", 1)

	b := dialGS(t, srv)
	bsub := b.subscribe("/queue/handoff", stomp.AckClientIndividual)
	a.close()
	mustBody(t, gsRecv(t, bsub), "m1", 2)
	mustBody(t, gsRecv(t, bsub), "m2", 2)
}

// STOMP 1.1 acknowledges with subscription + message-id, STOMP 1.0 with
// message-id alone; the acknowledged message is not redelivered, the
// other one is.
func TestAckByMessageIDInOlderVersions(t *testing.T) {
	tests := []struct {
		version string
		mode    string
		ack     func(sub, msgID string) []string // ACK headers
	}{
		{"1.1", "client-individual", func(sub, id string) []string { return []string{"subscription:" + sub, "message-id:" + id} }},
		{"1.0", "client", func(_, id string) []string { return []string{"message-id:" + id} }},
	}
	for _, tt := range tests {
		t.Run(tt.version, func(t *testing.T) {
			srv := startServer(t, Config{})
			c := dialRaw(t, srv.addr)
			c.send(frame("CONNECT", "", "accept-version:"+tt.version, "host:test"))
			connected := rawExpectCmd(c, frames.CmdConnected)
			if got := header(connected, "version"); got != tt.version {
				t.Fatalf("CONNECTED version %q, want %s", got, tt.version)
			}
			c.send(frame("SUBSCRIBE", "", "id:s1", "destination:/queue/old", "ack:"+tt.mode, "receipt:sub"))
			rawUntilReceipt(c, "sub")
			pub := dialGS(t, srv)
			pub.send("/queue/old", "m1")
			pub.send("/queue/old", "m2")
			m1 := rawExpectCmd(c, frames.CmdMessage)
			m2 := rawExpectCmd(c, frames.CmdMessage)
			if string(m1.Body) != "m1" || string(m2.Body) != "m2" || header(m1, "subscription") != "s1" {
				t.Fatalf("got %q (subscription %q), %q; want m1 (s1), m2", m1.Body, header(m1, "subscription"), m2.Body)
			}
			c.send(frame("ACK", "", append(tt.ack("s1", header(m1, "message-id")), "receipt:ack")...))
			if got := rawBodies(rawUntilReceipt(c, "ack")); len(got) != 0 {
				t.Fatalf("frames before the ACK's receipt: %q", got)
			}
			rawDisconnect(c)

			sub := dialGS(t, srv).subscribe("/queue/old", stomp.AckAuto)
			pub.send("/queue/old", "m3")
			mustBody(t, gsRecv(t, sub), "m2", 2) // m1 was acknowledged, not redelivered
			mustBody(t, gsRecv(t, sub), "m3", 1)
		})
	}
}
