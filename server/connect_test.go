package server

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/frames"
)

// STOMP 1.2, Protocol Negotiation: the server answers with the highest
// version both sides support; no accept-version means 1.0. CONNECT and
// STOMP are equivalent.
func TestConnectVersionNegotiation(t *testing.T) {
	srv := startServer(t, Config{})
	tests := []struct {
		accept string // "" = no accept-version header
		want   string
	}{
		{"accept-version:1.0", "1.0"},
		{"accept-version:1.1", "1.1"},
		{"accept-version:1.2", "1.2"},
		{"accept-version:1.0,1.1,2.0", "1.1"},
		{"accept-version:2.0,1.2,1.0", "1.2"},
		{"", "1.0"},
	}
	for _, command := range []string{"CONNECT", "STOMP"} {
		for _, tt := range tests {
			t.Run(command+"/"+tt.accept, func(t *testing.T) {
				c := dialRaw(t, srv.addr)
				headers := []string{"host:test"}
				if tt.accept != "" {
					headers = append(headers, tt.accept)
				}
				c.send(frame(command, "", headers...))
				f := c.next(5 * time.Second)
				if f.Command != frames.CmdConnected {
					t.Fatalf("got %s (%s), want CONNECTED", f.Command, header(f, "message"))
				}
				if got := header(f, "version"); got != tt.want {
					t.Errorf("version = %q, want %q", got, tt.want)
				}
				if header(f, "session") == "" {
					t.Error("CONNECTED without a session header")
				}
				if got := header(f, "server"); got != broker.DefaultServerName {
					t.Errorf("server = %q, want %q", got, broker.DefaultServerName)
				}
				// CONNECTED carries the negotiated intervals: this client
				// asked for no heart-beats, so none either way.
				if got := header(f, "heart-beat"); got != "0,0" {
					t.Errorf("heart-beat = %q, want 0,0", got)
				}
				// The session is live: a receipt comes back.
				c.send(frame("SEND", "x", "destination:/queue/negotiated", "receipt:r1"))
				if r := c.next(5 * time.Second); r.Command != frames.CmdReceipt || header(r, "receipt-id") != "r1" {
					t.Fatalf("got %s %v, want RECEIPT r1", r.Command, r.Headers)
				}
			})
		}
	}
}

// Each connection gets its own session id; the server header is
// "stompbox/<version>" as configured.
func TestConnectSessionAndServer(t *testing.T) {
	srv := startServer(t, Config{Broker: broker.Config{ServerName: "stompbox/1.2.3"}})
	seen := make(map[string]bool)
	for range 5 {
		f := dialRaw(t, srv.addr).connect()
		id := header(f, "session")
		if id == "" || seen[id] {
			t.Fatalf("session %q: empty or reused (seen %v)", id, seen)
		}
		seen[id] = true
		if got := header(f, "server"); got != "stompbox/1.2.3" {
			t.Errorf("server = %q, want stompbox/1.2.3", got)
		}
	}
}

// The go-stomp client sees the same negotiation.
func TestConnectGoStomp(t *testing.T) {
	srv := startServer(t, Config{})
	a, err := stomp.Dial("tcp", srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	b, err := stomp.Dial("tcp", srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*stomp.Conn{a, b} {
		if c.Version() != stomp.V12 {
			t.Errorf("version %s, want 1.2", c.Version())
		}
		if !strings.HasPrefix(c.Server(), "stompbox/") {
			t.Errorf("server %q, want stompbox/...", c.Server())
		}
	}
	if a.Session() == "" || a.Session() == b.Session() {
		t.Errorf("sessions %q and %q: want distinct and non-empty", a.Session(), b.Session())
	}
	for _, c := range []*stomp.Conn{a, b} {
		if err := c.Disconnect(); err != nil {
			t.Error(err)
		}
	}
}

// STOMP 1.2: "If the server does not support any of the protocol versions,
// it MUST respond with an ERROR frame similar to the following: ERROR
// version:1.2,2.1 ... Supported protocol versions are 1.2 2.1".
func TestConnectUnsupportedVersion(t *testing.T) {
	srv := startServer(t, Config{})
	for _, accept := range []string{"2.0", "0.9,3.0", ""} {
		t.Run(accept, func(t *testing.T) {
			c := dialRaw(t, srv.addr)
			c.send(frame("CONNECT", "", "accept-version:"+accept, "host:test", "receipt:r-connect"))
			f := c.expectERROR(errorWant{message: "unsupported protocol version", code: "unsupported-version", receipt: "r-connect"})
			if got := header(f, "version"); got != "1.0,1.1,1.2" {
				t.Errorf("version = %q, want 1.0,1.1,1.2", got)
			}
			if !strings.Contains(string(f.Body), "1.0,1.1,1.2") {
				t.Errorf("body %q does not list the supported versions", f.Body)
			}
		})
	}
}

// Frames out of place: a second CONNECT, anything before CONNECT, and a
// server frame sent by the client are protocol errors.
func TestConnectStateErrors(t *testing.T) {
	srv := startServer(t, Config{})
	tests := []struct {
		name      string
		connected bool
		bad       string
		message   string
	}{
		{"second CONNECT", true, frame("CONNECT", "", "accept-version:1.2", "host:test", "receipt:r"), "already connected"},
		{"second STOMP", true, frame("STOMP", "", "accept-version:1.2", "host:test", "receipt:r"), "already connected"},
		{"SEND before CONNECT", false, frame("SEND", "x", "destination:/queue/a", "receipt:r"), "not connected"},
		{"SUBSCRIBE before CONNECT", false, frame("SUBSCRIBE", "", "id:1", "destination:/queue/a", "receipt:r"), "not connected"},
		{"DISCONNECT before CONNECT", false, frame("DISCONNECT", "", "receipt:r"), "not connected"},
		{"MESSAGE from client", true, frame("MESSAGE", "x", "destination:/queue/a", "message-id:1", "subscription:1", "receipt:r"), "server frame from client"},
		{"RECEIPT from client", true, frame("RECEIPT", "", "receipt-id:1", "receipt:r"), "server frame from client"},
		{"CONNECTED from client", true, frame("CONNECTED", "", "version:1.2", "receipt:r"), "server frame from client"},
		{"ERROR from client", true, frame("ERROR", "oops", "message:oops", "receipt:r"), "server frame from client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialRaw(t, srv.addr)
			if tt.connected {
				c.connect()
			}
			c.send(tt.bad)
			c.expectERROR(errorWant{message: tt.message, code: "protocol-error", receipt: "r"})
		})
	}
}

// A client that connects and says nothing is told so and closed once the
// connect timeout has passed, counted from accept: heart-beat EOLs before
// CONNECT do not extend it.
func TestConnectTimeout(t *testing.T) {
	const timeout = 200 * time.Millisecond
	srv := startServer(t, Config{Broker: broker.Config{ConnectTimeout: timeout}})
	for _, trickle := range []bool{false, true} {
		name := "silent"
		if trickle {
			name = "only EOLs"
		}
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			c := dialRaw(t, srv.addr)
			if trickle {
				stop := beatEvery(c.conn, timeout/8)
				defer stop()
			}
			f := c.next(5 * time.Second)
			elapsed := time.Since(start)
			checkERROR(t, f, errorWant{message: "no CONNECT in time", code: "connect-timeout", retryable: true})
			if elapsed < timeout-20*time.Millisecond || elapsed > timeout+time.Second {
				t.Errorf("ERROR after %v, want about %v", elapsed, timeout)
			}
			c.expectClosed(5 * time.Second)
		})
	}
}

// STOMP 1.2, DISCONNECT: the server sends the RECEIPT and then closes; what
// the client sent after DISCONNECT is ignored.
func TestDisconnectReceiptThenClose(t *testing.T) {
	// A long linger proves the close is the server's orderly half-close,
	// not a read deadline running out.
	srv := startServer(t, Config{Linger: 10 * time.Second})
	c := dialRaw(t, srv.addr)
	c.connect()
	start := time.Now()
	c.send(frame("DISCONNECT", "", "receipt:bye") + frame("SEND", "late", "destination:/queue/late", "receipt:late"))
	f := c.next(5 * time.Second)
	if f.Command != frames.CmdReceipt || header(f, "receipt-id") != "bye" {
		t.Fatalf("got %s %v, want RECEIPT bye", f.Command, f.Headers)
	}
	c.expectClosed(5 * time.Second) // fails on the RECEIPT for "late"
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("closed %v after DISCONNECT", d)
	}
	// The write side is shut, so writing still works until the server's
	// linger ends, but nothing comes back; the queue never got "late".
	other := dialRaw(t, srv.addr)
	other.connect()
	other.send(frame("SEND", "marker", "destination:/queue/late", "receipt:m"))
	other.next(5 * time.Second)
	other.send(frame("SUBSCRIBE", "", "id:1", "destination:/queue/late"))
	if m := other.next(5 * time.Second); string(m.Body) != "marker" {
		t.Fatalf("first message on /queue/late is %q, want marker", m.Body)
	}
}

// beatEvery writes a heart-beat EOL to nc every interval until stop is
// called; stop waits for the writer to finish. Write errors (the server
// closed) end it early.
func beatEvery(nc net.Conn, interval time.Duration) (stop func()) {
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				if _, err := nc.Write([]byte{'\n'}); err != nil {
					return
				}
			}
		}
	}()
	return func() {
		close(done)
		<-exited
	}
}
