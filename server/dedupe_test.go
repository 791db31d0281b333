package server

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/frames"
)

// keyedSender sends SENDs with a receipt over one transport and returns
// the RECEIPT's receipt-id (or the ERROR).
type keyedSender func(t *testing.T, headers ...string) *frames.Frame

// TestIdempotentSend over TCP and WebSocket: a repeated idempotency-key is
// receipted but not delivered again, until the window (an injected clock)
// has passed; a key past max_id_length is refused with invalid-header.
func TestIdempotentSend(t *testing.T) {
	const window = time.Minute
	clock := newMsgClock()
	srv, url := startWebServer(t, Config{Broker: broker.Config{Now: clock.Now, DedupeWindow: window, MaxIDLength: 32}})
	transports := map[string]func(t *testing.T) keyedSender{
		"tcp": func(t *testing.T) keyedSender {
			c := dialRaw(t, srv.addr)
			c.connect()
			return func(t *testing.T, headers ...string) *frames.Frame {
				c.send(frame("SEND", "body", headers...))
				return c.next(5 * time.Second)
			}
		},
		"ws": func(t *testing.T) keyedSender {
			c := dialWSClient(t, url, nil, "v12.stomp")
			c.connect()
			return func(t *testing.T, headers ...string) *frames.Frame {
				c.text(frame("SEND", "body", headers...))
				f, _ := c.next()
				return f
			}
		},
	}
	for name, dial := range transports {
		t.Run(name, func(t *testing.T) {
			dest := "/queue/idem-" + name
			consumer := dialRaw(t, srv.addr)
			consumer.connect()
			consumer.send(frame("SUBSCRIBE", "", "id:0", "destination:"+dest, "receipt:sub"))
			if f := consumer.next(5 * time.Second); f.Command != frames.CmdReceipt {
				t.Fatalf("SUBSCRIBE: got %s", f.Command)
			}
			send := dial(t)
			resend := dial(t) // the same (anonymous) user on another connection
			steps := []struct {
				send    keyedSender
				key     string
				advance time.Duration
			}{
				{send, "k1", 0},
				{send, "k1", 0},
				{resend, "k1", 0},
				{send, "k2", 0},
				{resend, "k1", window + time.Millisecond},
			}
			for i, s := range steps {
				clock.advance(s.advance)
				r := "r" + string(rune('0'+i))
				if f := s.send(t, "destination:"+dest, "idempotency-key:"+s.key, "receipt:"+r, "step:"+r); f.Command != frames.CmdReceipt || header(f, "receipt-id") != r {
					t.Fatalf("step %d: got %s %v, want RECEIPT %s", i, f.Command, f.Headers, r)
				}
			}
			var got []string
			for range 3 {
				got = append(got, header(consumer.next(5*time.Second), "step"))
			}
			if !slices.Equal(got, []string{"r0", "r3", "r4"}) {
				t.Fatalf("delivered %v, want r0 r3 r4 (r1, r2 duplicates)", got)
			}
			select {
			case ev := <-consumer.events:
				if ev.frame != nil {
					t.Fatalf("a duplicate was delivered: %s %v", ev.frame.Command, ev.frame.Headers)
				}
			case <-time.After(100 * time.Millisecond):
			}

			f := send(t, "destination:"+dest, "idempotency-key:"+strings.Repeat("k", 33), "receipt:long")
			checkERROR(t, f, errorWant{message: "invalid idempotency-key header", code: "invalid-header", receipt: "long"})
		})
	}
	if got := gathered(t, srv, "stompbox_duplicates_dropped_total"); got != 2*float64(len(transports)) {
		t.Errorf("stompbox_duplicates_dropped_total = %v, want %d (two per transport)", got, 2*len(transports))
	}
}

// The server's sweeper forgets the keys of a user who stopped sending once
// the window has passed: stompbox_dedupe_keys falls back to 0 without
// another SEND.
func TestDedupeKeysSwept(t *testing.T) {
	srv := startServer(t, Config{Broker: broker.Config{DedupeWindow: 100 * time.Millisecond}})
	c := dialRaw(t, srv.addr)
	c.connect()
	for _, k := range []string{"a", "b", "c"} {
		c.send(frame("SEND", "x", "destination:/queue/swept", "idempotency-key:"+k, "receipt:"+k))
		if f := c.next(5 * time.Second); f.Command != frames.CmdReceipt {
			t.Fatalf("got %s, want RECEIPT", f.Command)
		}
	}
	if got := gathered(t, srv, "stompbox_dedupe_keys"); got != 3 {
		if !slices.Contains([]float64{0, 1, 2}, got) {
			t.Fatalf("stompbox_dedupe_keys = %v right after three keys, want 3 (fewer if swept already)", got)
		}
		t.Logf("stompbox_dedupe_keys = %v: a sweep ran already", got)
	}
	for range 100 { // the sweep runs every 100ms here: bounded at 5s
		if gathered(t, srv, "stompbox_dedupe_keys") == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("stompbox_dedupe_keys = %v after 5s, want 0: the sweep did not forget them", gathered(t, srv, "stompbox_dedupe_keys"))
}
