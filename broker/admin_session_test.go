package broker

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stompbox/stompbox/frames"
)

func TestCloseByOperatorError(t *testing.T) {
	long := strings.Repeat("é", 150) // 300 bytes: cut to 200 on a character boundary
	tests := []struct {
		name, reason, accept, wire, message string
	}{
		{"plain", "maintenance", "1.2", "message:closed by an operator\\c maintenance\n", "closed by an operator: maintenance"},
		{"escaped 1.2", "a:b\nc", "1.2", "message:closed by an operator\\c a\\cb c\n", "closed by an operator: a:b c"},
		{"1.0 unescaped", "a:b\r\nc", "1.0", "message:closed by an operator: a:b  c\n", "closed by an operator: a:b  c"},
		{"truncated", long, "1.2", "message:closed by an operator\\c " + strings.Repeat("é", 100) + "\n",
			"closed by an operator: " + strings.Repeat("é", 100)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := New(Config{})
			c := newClient(t, b)
			c.connect("accept-version:" + tt.accept)
			c.s.CloseByOperator(tt.reason)
			out, closing := c.s.AppendOutput(nil)
			if !closing {
				t.Fatal("the session is not closing")
			}
			wire := string(out)
			for _, want := range []string{"ERROR\n", tt.wire, "error-code:closed-by-operator\n", "retryable:true\n"} {
				if !strings.Contains(wire, want) {
					t.Fatalf("ERROR frame %q lacks %q", wire, want)
				}
			}
			c.got = c.got[:0]
			if err := c.parser.Parse(out, c); err != nil || len(c.got) != 1 {
				t.Fatalf("ERROR does not parse: %v %q", err, out)
			}
			if got := hdr(c.got[0], "message"); got != tt.message {
				t.Fatalf("message header %q, want %q", got, tt.message)
			}
			if r, ok := c.s.CloseReason(); !ok || r != CloseOperator || r.String() != "operator" {
				t.Fatalf("close reason %v %v", r, ok)
			}
			if c.tr.pokes.Load() == 0 {
				t.Fatal("the read loop was not poked")
			}
			c.s.CloseByOperator("again") // a closed session is left as is
			if out, _ := c.s.AppendOutput(nil); len(out) != 0 {
				t.Fatalf("second close wrote %q", out)
			}
		})
	}
}

func TestCloseByOperatorReturnsDeliveries(t *testing.T) {
	b := New(Config{})
	c := newClient(t, b)
	c.connect()
	c.mustSend(frames.CmdSubscribe, "", "destination:/queue/w", "id:s")
	c.poll()
	p := newClient(t, b)
	p.connect()
	p.mustSend(frames.CmdSend, "m", "destination:/queue/w")
	c.s.CloseByOperator("bye") // the MESSAGE was never written: back to the queue
	c.s.Release()
	if d := destinationsByName(b)["/ /queue/w"]; d.Messages != 1 || d.Consumers != 0 {
		t.Fatalf("after the close the queue is %+v, want the message back", d)
	}
}

func TestSessionInfo(t *testing.T) {
	now := adminT0
	b := New(Config{Now: adminClock(&now)})
	c := newClient(t, b)
	if info := c.s.Info(); info.ID == "" || info.User != "" || !info.Connected.IsZero() || info.Subscriptions != nil {
		t.Fatalf("before CONNECT: %+v", info)
	}
	c.connect("client-id:app")
	c.mustSend(frames.CmdSubscribe, "", "destination:/queue/q", "id:a", "ack:client")
	c.mustSend(frames.CmdSubscribe, "", "destination:/topic/t", "id:d", "durable-subscription-name:n", "ack:client-individual")
	c.mustSend(frames.CmdSubscribe, "", "destination:/topic/x", "id:x")
	c.mustSend(frames.CmdUnsubscribe, "", "id:x")
	c.mustSend(frames.CmdSend, "1", "destination:/queue/q")
	c.mustSend(frames.CmdSend, "2", "destination:/topic/t", "receipt:r")
	info := c.s.Info()
	if info.OutboxBytes == 0 || info.HeldBytes < info.OutboxBytes {
		t.Fatalf("with output queued: outbox %d held %d", info.OutboxBytes, info.HeldBytes)
	}
	fs := c.poll()
	if len(fs) != 3 {
		t.Fatalf("got %v", commands(fs))
	}
	info = c.s.Info()
	slices.SortFunc(info.Subscriptions, func(x, y SubscriptionInfo) int { return strings.Compare(x.ID, y.ID) })
	want := SessionInfo{ID: c.s.ID(), User: "anonymous", VHost: "/", Version: "1.2", Connected: adminT0,
		Subscriptions: []SubscriptionInfo{
			{ID: "a", Destination: "/queue/q", Ack: "client", Unacked: 1},
			{ID: "d", Destination: "/topic/t", Ack: "client-individual", Unacked: 1, Durable: "n"},
		},
		FramesIn: 7, FramesOut: 4, Unacked: 2}
	if fmt.Sprint(info) != fmt.Sprint(want) {
		t.Fatalf("Info = %+v\nwant %+v", info, want)
	}
}

// TestSessionInfoConcurrent reads every admin snapshot from another
// goroutine while the session's read loop and writer work (run with -race).
func TestSessionInfoConcurrent(t *testing.T) {
	b := New(Config{MaxQueueMessages: 50})
	c := newClient(t, b)
	c.connect("client-id:app")
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	reads := 0
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			info := c.s.Info()
			_ = b.Destinations(nil)
			_ = b.Durables(nil)
			_, _ = b.PeekQueue("/", "/queue/q", 5, 16)
			if info.User != "anonymous" {
				panic("user " + info.User)
			}
			reads++
			time.Sleep(time.Microsecond)
		}
	}()
	for i := range 300 {
		id := fmt.Sprint("s", i%7)
		c.mustSend(frames.CmdSubscribe, "", "destination:/queue/q", "id:"+id, "ack:client")
		c.mustSend(frames.CmdSend, "m", "destination:/queue/q")
		c.mustSend(frames.CmdSend, "t", "destination:/topic/t")
		for _, f := range c.poll() {
			if f.Command == frames.CmdMessage {
				c.mustSend(frames.CmdAck, "", "id:"+hdr(f, "ack"))
			}
		}
		c.mustSend(frames.CmdUnsubscribe, "", "id:"+id)
		if i%50 == 0 {
			if _, err := b.PurgeQueue("/", "/queue/q"); err != nil && !strings.Contains(err.Error(), "no such") {
				t.Error(err)
			}
		}
	}
	close(done)
	wg.Wait()
	if reads == 0 {
		t.Fatal("no concurrent reads happened")
	}
	if info := c.s.Info(); info.FramesIn < 1500 || len(info.Subscriptions) != 0 {
		t.Fatalf("after the traffic: frames in %d, subscriptions %v", info.FramesIn, info.Subscriptions)
	}
}
