package server

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/frames"
)

// RFC 6455, 5.5.1: the client's close frame is answered with a close frame
// and the connection ends. The broker session is released like any other
// disconnect: an unacknowledged queue message goes to another consumer
// (here a native STOMP one) with redelivered:true. Session recovery is off:
// with it a closed connection's session is parked for a resume, keeping
// its unacknowledged messages (TestResume*).
func TestWebSocketCloseHandshake(t *testing.T) {
	srv, url := startWebServer(t, Config{Broker: broker.Config{ResumeGrace: -1}})
	a := dialWSClient(t, url, nil, "v12.stomp")
	a.connect()
	a.text(frame("SUBSCRIBE", "", "id:1", "destination:/queue/handoff", "ack:client-individual", "receipt:sub"))
	if f, _ := a.next(); f.Command != frames.CmdReceipt {
		t.Fatalf("got %s, want RECEIPT", f.Command)
	}
	a.text(frame("SEND", "work", "destination:/queue/handoff"))
	m, _ := a.next()
	if m.Command != frames.CmdMessage || string(m.Body) != "work" {
		t.Fatalf("got %s %q", m.Command, m.Body)
	}
	b := dialRaw(t, srv.addr)
	b.connect()
	b.send(frame("SUBSCRIBE", "", "id:b", "destination:/queue/handoff", "ack:auto"))

	a.send(ws.OpClose, true, ws.NewCloseFrameBody(ws.StatusNormalClosure, "done"))
	a.expectClose(ws.StatusNormalClosure)

	f := b.next(5 * time.Second)
	if f.Command != frames.CmdMessage || string(f.Body) != "work" {
		t.Fatalf("other consumer got %s %q, want the unacked MESSAGE", f.Command, f.Body)
	}
	if header(f, "redelivered") != "true" || header(f, "message-id") != header(m, "message-id") {
		t.Errorf("redelivery headers %v, want redelivered:true and message-id %s", f.Headers, header(m, "message-id"))
	}
}

// Server heart-beats over WebSocket are text messages holding one EOL.
func TestWebSocketHeartbeatsSent(t *testing.T) {
	_, url := startWebServer(t, Config{Broker: broker.Config{
		HeartBeat: frames.HeartBeat{Send: 50 * time.Millisecond, Receive: -1},
	}})
	c := dialWSClient(t, url, nil, "v12.stomp")
	f := c.connect("heart-beat:0,50")
	if got := header(f, "heart-beat"); got != "50,0" {
		t.Fatalf("CONNECTED heart-beat %q, want 50,0", got)
	}
	for range 3 {
		op, payload := c.message()
		if op != ws.OpText || string(payload) != "\n" {
			t.Fatalf("got %v %q, want a text heart-beat \"\\n\"", op, payload)
		}
	}
}

// A client that stops beating gets ERROR heartbeat-timeout and close 1008;
// before that, its "\n" messages keep it alive.
func TestWebSocketHeartbeatTimeout(t *testing.T) {
	_, url := startWebServer(t, Config{Broker: broker.Config{
		HeartBeat: frames.HeartBeat{Send: -1, Receive: 100 * time.Millisecond},
	}})
	c := dialWSClient(t, url, nil, "v12.stomp")
	if got := header(c.connect("heart-beat:100,0"), "heart-beat"); got != "0,100" {
		t.Fatalf("CONNECTED heart-beat %q, want 0,100", got)
	}
	c.text(frame("SUBSCRIBE", "", "id:1", "destination:/queue/hb"))
	// Beat for twice the allowed silence, then check the session is alive.
	tick := time.NewTicker(50 * time.Millisecond)
	for range 8 {
		<-tick.C
		c.text("\n")
	}
	tick.Stop()
	start := time.Now() // the client's last byte leaves after this
	c.text(frame("SEND", "alive", "destination:/queue/hb"))
	if f, _ := c.next(); f.Command != frames.CmdMessage || string(f.Body) != "alive" {
		t.Fatalf("got %s %q while beating", f.Command, f.Body)
	}
	f, _ := c.next()
	checkERROR(t, f, errorWant{message: "heart-beat timeout", code: "heartbeat-timeout", retryable: true})
	if waited := time.Since(start); waited < 190*time.Millisecond {
		t.Errorf("closed after %v of silence, the tolerance allows 200ms", waited)
	}
	c.expectClose(ws.StatusPolicyViolation)
}

// The session's end maps to the close code ARCHITECTURE.md promises,
// after the ERROR or RECEIPT that explains it.
func TestWebSocketCloseCodes(t *testing.T) {
	_, url := startWebServer(t, Config{Broker: broker.Config{ConnectTimeout: 200 * time.Millisecond}})

	t.Run("frame before CONNECT: 1002", func(t *testing.T) {
		c := dialWSClient(t, url, nil, "v12.stomp")
		c.text(frame("SEND", "x", "destination:/queue/a"))
		f, _ := c.next()
		if f.Command != frames.CmdError || header(f, "error-code") != "protocol-error" {
			t.Fatalf("got %s %v, want ERROR protocol-error", f.Command, f.Headers)
		}
		c.expectClose(ws.StatusProtocolError)
	})
	t.Run("DISCONNECT: RECEIPT then 1000", func(t *testing.T) {
		c := dialWSClient(t, url, nil, "v12.stomp")
		c.connect()
		c.text(frame("DISCONNECT", "", "receipt:bye"))
		f, _ := c.next()
		if f.Command != frames.CmdReceipt || header(f, "receipt-id") != "bye" {
			t.Fatalf("got %s %v, want RECEIPT bye", f.Command, f.Headers)
		}
		c.expectClose(ws.StatusNormalClosure)
	})
	t.Run("no CONNECT in time: 1008", func(t *testing.T) {
		c := dialWSClient(t, url, nil, "v12.stomp")
		f, _ := c.next()
		checkERROR(t, f, errorWant{message: "no CONNECT in time", code: "connect-timeout", retryable: true})
		c.expectClose(ws.StatusPolicyViolation)
	})
	t.Run("unknown command: 1002", func(t *testing.T) {
		c := dialWSClient(t, url, nil, "v12.stomp")
		c.connect()
		c.text(frame("PUBLISH", "x", "destination:/queue/a"))
		f, _ := c.next()
		checkERROR(t, f, errorWant{message: "unknown command", code: "unknown-command"})
		c.expectClose(ws.StatusProtocolError)
	})
}

// Shutdown: every WebSocket client gets ERROR server-shutdown, then close
// 1012 ("service restart"), and Shutdown returns once they are gone.
func TestWebSocketShutdown(t *testing.T) {
	srv, url := startWebServer(t, Config{Linger: 200 * time.Millisecond})
	var clients []*wsClient
	for range 3 {
		c := dialWSClient(t, url, nil, "v12.stomp")
		c.connect()
		clients = append(clients, c)
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- srv.Shutdown(ctx)
	}()
	for _, c := range clients {
		f, _ := c.next()
		checkERROR(t, f, serverShutdown)
		c.expectClose(statusServiceRestart)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	// New upgrades are refused: the listener is closed.
	conn, err := net.DialTimeout("tcp", hostOf(url), time.Second)
	if err == nil {
		_ = conn.Close()
		t.Error("the HTTP listener still accepts after Shutdown")
	}
}

// The reader's own writes (a pong, the close echo) must not depend on
// when the writer last wrote: a client idle for longer than WriteTimeout
// (that negotiated no heart-beats) still gets its pong and a proper close
// handshake, and is not told it missed heart-beats.
func TestWebSocketControlAfterIdle(t *testing.T) {
	const writeTimeout = 200 * time.Millisecond
	_, url := startWebServer(t, Config{WriteTimeout: writeTimeout})
	t.Run("ping", func(t *testing.T) {
		c := dialWSClient(t, url, nil, "v12.stomp")
		c.connect()                    // the server's last write: CONNECTED
		<-time.After(2 * writeTimeout) // the scenario: an idle client, no server writes
		c.send(ws.OpPing, true, []byte("still there?"))
		if f := c.readFrame(); f.Header.OpCode != ws.OpPong || string(f.Payload) != "still there?" {
			t.Fatalf("got %v %q, want the pong", f.Header.OpCode, f.Payload)
		}
	})
	t.Run("close", func(t *testing.T) {
		c := dialWSClient(t, url, nil, "v12.stomp")
		c.connect()
		<-time.After(2 * writeTimeout)
		c.send(ws.OpClose, true, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
		c.expectClose(ws.StatusNormalClosure)
	})
}

// An operator's close (the admin API) reaches a browser as the ERROR that
// says why, then WebSocket close 1008: not a network failure.
func TestWebSocketClosedByOperator(t *testing.T) {
	srv, url := startWebServer(t, Config{Broker: broker.Config{ResumeGrace: -1}})
	c := dialWSClient(t, url, nil, "v12.stomp")
	c.connect()
	srv.mu.Lock()
	var sessions []*broker.Session
	for cn := range srv.conns {
		sessions = append(sessions, cn.base().session)
	}
	srv.mu.Unlock()
	if len(sessions) != 1 {
		t.Fatalf("%d connections, want 1", len(sessions))
	}
	sessions[0].CloseByOperator("maintenance window")
	f, _ := c.next()
	if f.Command != frames.CmdError || header(f, "error-code") != broker.CodeClosedByOperator ||
		header(f, "message") != "closed by an operator: maintenance window" {
		t.Fatalf("got %s %v, want ERROR closed-by-operator with the reason", f.Command, f.Headers)
	}
	c.expectClose(ws.StatusPolicyViolation)
}
