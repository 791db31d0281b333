package server

import (
	"errors"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/frames"
)

// pingServer is a web server pinging every ping and expecting a client
// that says heart-beat:<cx>,0 to beat within 2cx (the default tolerance).
func pingServer(t *testing.T, ping time.Duration) (*testServer, string) {
	return startWebServer(t, Config{
		WebSocketPingInterval: ping,
		Broker:                broker.Config{HeartBeat: frames.HeartBeat{Receive: 50 * time.Millisecond}},
	})
}

// every runs f every d until the returned stop is called (which waits for
// it) or f fails.
func every(d time.Duration, f func() error) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(d)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
				if f() != nil {
					return
				}
			}
		}
	}()
	return func() {
		close(quit)
		<-done
	}
}

// pingsWithin reads every frame the server sends during window (it must
// not close) and returns how many were pings and how many data messages.
func (c *wsClient) pingsWithin(window time.Duration) (pings, data int) {
	c.t.Helper()
	end := time.Now().Add(window)
	for time.Now().Before(end) {
		_ = c.conn.SetReadDeadline(end)
		f, err := ws.ReadFrame(c.br)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			c.t.Fatalf("reading: %v", err)
		}
		switch {
		case f.Header.OpCode == ws.OpPing:
			if len(f.Payload) != 0 {
				c.t.Errorf("ping payload %q, want none", f.Payload)
			}
			pings++
		case f.Header.OpCode.IsData():
			data++
		default:
			c.t.Fatalf("got %v %q during the window", f.Header.OpCode, f.Payload)
		}
	}
	return pings, data
}

// The server pings at the configured interval, whether STOMP traffic
// flows or not (the ping has its own timer, not the heart-beat's idle
// one), and counts the pings.
func TestWebSocketPingInterval(t *testing.T) {
	const ping, window = 50 * time.Millisecond, time.Second
	srv, url := pingServer(t, ping)
	for _, traffic := range []bool{false, true} {
		name := map[bool]string{false: "idle", true: "busy"}[traffic]
		t.Run(name, func(t *testing.T) {
			timingAttempts(t, 3, func(t *testing.T) string {
				c := dialWSClient(t, url, nil, "v12.stomp")
				c.connect("heart-beat:0,0")
				stop := func() {}
				if traffic {
					c.text(frame("SUBSCRIBE", "", "id:0", "destination:/topic/ping"))
					pub := dialRaw(t, srv.addr)
					pub.connect()
					// A message every 5ms, so the writer never idles for a ping's length.
					stop = every(5*time.Millisecond, func() error {
						_, err := pub.conn.Write([]byte(frame("SEND", "x", "destination:/topic/ping")))
						return err
					})
				}
				before := srv.metrics.pingsSent.Load()
				pings, data := c.pingsWithin(window)
				stop()
				if traffic && data < 50 {
					t.Fatalf("only %d messages during the window, want a steady flow", data)
				}
				if sent := srv.metrics.pingsSent.Load() - before; sent < uint64(pings) {
					t.Errorf("pings counted %d, want at least the %d received", sent, pings)
				}
				want := int(window / ping) // 20
				if pings < want/2 || pings > want+2 {
					return "pings in " + window.String() + ": " + itoa(pings) + ", want about " + itoa(want)
				}
				return ""
			})
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// A client that answers pings but sends no STOMP heart-beat stays
// connected for many heart-beat timeouts: the server pings at least twice
// per timeout (here every 50ms: half of 2 x 50ms, well under the configured
// 25s), and a pong is liveness. A client that answers nothing is closed
// with heartbeat-timeout.
func TestWebSocketPongIsLiveness(t *testing.T) {
	srv, url := pingServer(t, 25*time.Second)

	t.Run("answers pongs", func(t *testing.T) {
		c := dialWSClient(t, url, nil, "v12.stomp")
		c.connect("heart-beat:50,0") // a 100ms heart-beat timeout
		pongsBefore := srv.metrics.pongsReceived.Load()
		end := time.Now().Add(time.Second) // ten timeouts
		pings := 0
		for time.Now().Before(end) {
			_ = c.conn.SetReadDeadline(end)
			f, err := ws.ReadFrame(c.br)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if err != nil {
				t.Fatalf("connection lost while answering pings: %v", err)
			}
			if f.Header.OpCode.IsData() {
				t.Fatalf("got %q, want only pings", f.Payload)
			}
			if f.Header.OpCode == ws.OpPing {
				pings++
				c.send(ws.OpPong, true, f.Payload)
			}
		}
		if pings < 5 {
			t.Fatalf("%d pings in a second with a 100ms timeout, want at least 5", pings)
		}
		// Still connected and working.
		c.text(frame("SEND", "x", "destination:/queue/alive", "receipt:r1"))
		if f, _ := c.next(); f.Command != frames.CmdReceipt {
			t.Fatalf("got %s %v, want RECEIPT", f.Command, f.Headers)
		}
		if got := srv.metrics.pongsReceived.Load() - pongsBefore; got < uint64(pings)-1 {
			t.Errorf("pongs counted %d, want about %d", got, pings)
		}
		if got := gathered(t, srv, "stompbox_websocket_pongs_received_total"); got < float64(pings-1) {
			t.Errorf("stompbox_websocket_pongs_received_total = %v, want at least %d", got, pings-1)
		}
		if got := gathered(t, srv, "stompbox_websocket_pings_sent_total"); got < float64(pings) {
			t.Errorf("stompbox_websocket_pings_sent_total = %v, want at least %d", got, pings)
		}
	})

	t.Run("answers nothing", func(t *testing.T) {
		c := dialWSClient(t, url, nil, "v12.stomp")
		c.connect("heart-beat:50,0")
		start := time.Now()
		f, _ := c.next() // readFrame skips the pings without answering
		checkERROR(t, f, errorWant{message: "heart-beat timeout", code: "heartbeat-timeout", retryable: true})
		c.expectClose(ws.StatusPolicyViolation)
		if c.pings == 0 {
			t.Error("no pings before the timeout")
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("closed after %v, want about 100ms", d)
		}
	})
}

// TCP connections get no pings (the option is WebSocket's) and keep their
// heart-beat timeout.
func TestTCPNotPinged(t *testing.T) {
	srv := startServer(t, Config{
		WebSocketPingInterval: 10 * time.Millisecond,
		Broker:                broker.Config{HeartBeat: frames.HeartBeat{Receive: 50 * time.Millisecond}},
	})
	quiet := dialRaw(t, srv.addr)
	quiet.connect("heart-beat:0,0")
	select {
	case ev := <-quiet.events:
		t.Fatalf("a silent TCP connection got %+v, want nothing", ev)
	case <-time.After(300 * time.Millisecond):
	}
	quiet.send(frame("SEND", "x", "destination:/queue/tcp", "receipt:r"))
	if f := quiet.next(5 * time.Second); f.Command != frames.CmdReceipt {
		t.Fatalf("got %s, want RECEIPT", f.Command)
	}

	silent := dialRaw(t, srv.addr)
	silent.connect("heart-beat:50,0")
	f := silent.next(5 * time.Second)
	if header(f, "error-code") != "heartbeat-timeout" {
		t.Fatalf("got %s %v, want ERROR heartbeat-timeout", f.Command, f.Headers)
	}
	if srv.metrics.pingsSent.Load() != 0 {
		t.Errorf("%d pings sent on TCP connections", srv.metrics.pingsSent.Load())
	}
}

// gathered returns the value of a counter or gauge from the server's
// registry (what /metrics serves): the one series of an unlabelled
// metric, or with label (a name and a value) the series carrying it; 0
// when that series does not exist yet.
func gathered(t *testing.T, srv *testServer, name string, label ...string) float64 {
	t.Helper()
	mfs, err := srv.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if len(label) == 2 && !hasLabel(m.GetLabel(), label[0], label[1]) {
				continue
			}
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	if len(label) == 0 {
		t.Fatalf("%s not exported", name)
	}
	return 0
}

// hasLabel reports whether pairs (a series' labels) has name=value.
func hasLabel[P interface {
	GetName() string
	GetValue() string
}](pairs []P, name, value string) bool {
	for _, lp := range pairs {
		if lp.GetName() == name && lp.GetValue() == value {
			return true
		}
	}
	return false
}

// A client that heart-beats on time is not pinged: the ping interval
// counts from the last byte heard, and is 3/5 of the heart-beat timeout
// (here 60ms of 100ms) while the client beats every 15ms
// (TestWebSocketPingInterval: a silent one is pinged).
func TestWebSocketPunctualClientNotPinged(t *testing.T) {
	_, url := pingServer(t, 25*time.Second)
	timingAttempts(t, 3, func(t *testing.T) string {
		c := dialWSClient(t, url, nil, "v12.stomp")
		c.connect("heart-beat:50,0") // a 100ms heart-beat timeout: pinged after 60ms of silence
		stop := every(15*time.Millisecond, func() error {
			return ws.WriteFrame(c.conn, ws.MaskFrameInPlace(ws.NewTextFrame([]byte("\n"))))
		})
		pings, _ := c.pingsWithin(600 * time.Millisecond)
		stop()
		if pings > 1 {
			return "a client heart-beating every 15ms got " + itoa(pings) + " pings in 600ms, want none"
		}
		return ""
	})
}
