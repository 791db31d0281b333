package server

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	"github.com/gobwas/ws"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/frames"
)

// Session recovery over real sockets (docs/compliance.md, "Session
// recovery"): every test runs over native STOMP (TCP) and WebSocket.

// stompConn is one client connection of either transport.
type stompConn interface {
	send(wire string)
	next() *frames.Frame // the next frame, heart-beats skipped; fails after 5s
	drop()               // close the socket without DISCONNECT
	expectGone()         // the server closes the connection (WS: with close code 1008)
}

type tcpConn struct{ c *rawClient }

func (t tcpConn) send(wire string)    { t.c.send(wire) }
func (t tcpConn) next() *frames.Frame { return t.c.next(5 * time.Second) }
func (t tcpConn) drop()               { _ = t.c.conn.Close() }
func (t tcpConn) expectGone()         { t.c.expectClosed(5 * time.Second) }

type wsConn struct{ c *wsClient }

func (w wsConn) send(wire string)    { w.c.text(wire) }
func (w wsConn) next() *frames.Frame { f, _ := w.c.next(); return f }
func (w wsConn) drop()               { _ = w.c.conn.Close() }
func (w wsConn) expectGone()         { w.c.expectClose(ws.StatusPolicyViolation) }

// resumeTransport dials a connection of each transport to srv.
type resumeTransport struct {
	name string
	dial func(t *testing.T) stompConn
}

func resumeTransports(t *testing.T, cfg Config) (*testServer, []resumeTransport) {
	srv, url := startWebServer(t, cfg)
	return srv, []resumeTransport{
		{"tcp", func(t *testing.T) stompConn { return tcpConn{dialRaw(t, srv.addr)} }},
		{"ws", func(t *testing.T) stompConn { return wsConn{dialWSClient(t, url, nil, "v12.stomp")} }},
	}
}

// connectOn sends CONNECT (1.2, host test) with extra header lines and
// requires CONNECTED. The extra lines come first: a repeated header's
// first value wins.
func connectOn(t *testing.T, c stompConn, headers ...string) *frames.Frame {
	t.Helper()
	c.send(frame("CONNECT", "", append(append([]string(nil), headers...), "accept-version:1.2", "host:test")...))
	f := c.next()
	if f.Command != frames.CmdConnected {
		t.Fatalf("got %s %v, want CONNECTED", f.Command, f.Headers)
	}
	return f
}

// expectFrame requires the next frame to be cmd (and, for MESSAGE, body).
func expectFrame(t *testing.T, c stompConn, cmd frames.Command, body string) *frames.Frame {
	t.Helper()
	f := c.next()
	if f.Command != cmd || (cmd == frames.CmdMessage && string(f.Body) != body) {
		t.Fatalf("got %s %q %v, want %s %q", f.Command, f.Body, f.Headers, cmd, body)
	}
	return f
}

// waitParked polls until n sessions are parked.
func waitParked(t *testing.T, srv *testServer, n int) {
	t.Helper()
	for range 500 {
		if srv.Broker().ParkedSessions() == n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%d sessions parked, want %d", srv.Broker().ParkedSessions(), n)
}

// publish sends bodies to dest with go-stomp, each with a receipt, as
// alice on virtual host test (any user, when auth is not configured).
func publish(t *testing.T, addr, dest string, bodies ...string) {
	t.Helper()
	publishOn(t, addr, "test", dest, bodies...)
}

// publishOn is publish on virtual host host.
func publishOn(t *testing.T, addr, host, dest string, bodies ...string) {
	t.Helper()
	p, err := stomp.Dial("tcp", addr, stomp.ConnOpt.Login("alice", "a-secret"), stomp.ConnOpt.Host(host))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Disconnect() }()
	for _, b := range bodies {
		if err := p.Send(dest, "text/plain", []byte(b), stomp.SendOpt.Receipt); err != nil {
			t.Fatalf("send %s: %v", b, err)
		}
	}
}

// TestResumeRestoresSession: a dropped session resumed within the grace
// keeps its subscriptions (same ids), gets what arrived for them while it
// was away (in order), and its unacknowledged message again (same ack
// id, redelivered:true), still ackable. SUBSCRIBE repeating an adopted
// subscription is a no-op; an ACK of an id settled before is one too.
func TestResumeRestoresSession(t *testing.T) {
	srv, transports := resumeTransports(t, Config{})
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			topic, queue := "/topic/resume."+tr.name, "/queue/resume."+tr.name
			a := tr.dial(t)
			f := connectOn(t, a)
			token := header(f, "resume-token")
			if len(token) < 22 || header(f, "resumed") != "false" || header(f, "resume-grace") != "120000" {
				t.Fatalf("CONNECTED %v: want a resume-token, resumed:false, resume-grace:120000", f.Headers)
			}
			a.send(frame("SUBSCRIBE", "", "id:t", "destination:"+topic, "receipt:r1"))
			expectFrame(t, a, frames.CmdReceipt, "")
			a.send(frame("SUBSCRIBE", "", "id:q", "destination:"+queue, "ack:client-individual", "receipt:r2"))
			expectFrame(t, a, frames.CmdReceipt, "")
			publish(t, srv.addr, queue, "work")
			work := expectFrame(t, a, frames.CmdMessage, "work")
			publish(t, srv.addr, topic, "before")
			expectFrame(t, a, frames.CmdMessage, "before")

			a.drop()
			waitParked(t, srv, 1)
			publish(t, srv.addr, topic, "m1", "m2", "m3")

			b := tr.dial(t)
			f = connectOn(t, b, "resume-token:"+token)
			if header(f, "resumed") != "true" || header(f, "resume-token") == "" || header(f, "resume-token") == token {
				t.Fatalf("CONNECTED %v: want resumed:true and a fresh token", f.Headers)
			}
			again := expectFrame(t, b, frames.CmdMessage, "work")
			if header(again, "ack") != header(work, "ack") || header(again, "redelivered") != "true" || header(again, "subscription") != "q" {
				t.Fatalf("unacked message again %v, want ack %s, redelivered:true, subscription q", again.Headers, header(work, "ack"))
			}
			for _, want := range []string{"m1", "m2", "m3"} {
				if m := expectFrame(t, b, frames.CmdMessage, want); header(m, "subscription") != "t" {
					t.Fatalf("%s on subscription %q, want t", want, header(m, "subscription"))
				}
			}
			// stomp.js subscribes again in onConnect: a no-op.
			b.send(frame("SUBSCRIBE", "", "id:t", "destination:"+topic, "receipt:r3"))
			if r := expectFrame(t, b, frames.CmdReceipt, ""); header(r, "receipt-id") != "r3" {
				t.Fatalf("RECEIPT %v", r.Headers)
			}
			b.send(frame("ACK", "", "id:"+header(work, "ack"), "receipt:r4"))
			expectFrame(t, b, frames.CmdReceipt, "")
			// Settled already: the client cannot tell, so no ERROR.
			b.send(frame("ACK", "", "id:"+header(work, "ack"), "receipt:r5"))
			expectFrame(t, b, frames.CmdReceipt, "")
			publish(t, srv.addr, topic, "after")
			expectFrame(t, b, frames.CmdMessage, "after") // once: the repeated SUBSCRIBE added nothing
			b.send(frame("SUBSCRIBE", "", "id:t", "destination:/topic/other", "receipt:r6"))
			if e := expectFrame(t, b, frames.CmdError, ""); header(e, "error-code") != broker.CodeDuplicateSubscription {
				t.Fatalf("same id, other destination: %v, want duplicate-subscription", e.Headers)
			}
		})
	}
}

// TestResumeRefused: every token that cannot be resumed gets
// resumed:false and a fresh session, never an ERROR: unknown, expired,
// another user's, another virtual host's, used already, a session that
// said DISCONNECT, and one that overflowed its outbox while parked.
func TestResumeRefused(t *testing.T) {
	cfg := Config{Broker: broker.Config{ResumeGrace: 300 * time.Millisecond, VirtualHosts: []string{"test", "other"},
		Authenticator: twoUsers{}, MaxOutboxBytes: 16 << 10, MaxConnectionBytes: 32 << 10}}
	srv, transports := resumeTransports(t, cfg)
	alice := []string{"login:alice", "passcode:a-secret"}
	bob := []string{"login:bob", "passcode:b-secret"}
	// parked connects as alice, subscribes to dest and drops; it returns
	// the token.
	parked := func(t *testing.T, tr resumeTransport, dest string, headers ...string) string {
		a := tr.dial(t)
		token := header(connectOn(t, a, append(alice, headers...)...), "resume-token")
		a.send(frame("SUBSCRIBE", "", "id:t", "destination:"+dest, "receipt:r"))
		expectFrame(t, a, frames.CmdReceipt, "")
		a.drop()
		waitParked(t, srv, 1)
		return token
	}
	cases := []struct {
		name string
		// setup returns the token to present and the CONNECT headers.
		setup func(t *testing.T, tr resumeTransport, dest string) (string, []string)
	}{
		{"unknown token", func(t *testing.T, tr resumeTransport, dest string) (string, []string) {
			parked(t, tr, dest)
			return "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", alice
		}},
		{"malformed token", func(t *testing.T, tr resumeTransport, dest string) (string, []string) {
			parked(t, tr, dest)
			return "not a token", alice
		}},
		{"expired", func(t *testing.T, tr resumeTransport, dest string) (string, []string) {
			token := parked(t, tr, dest)
			waitParked(t, srv, 0) // the 300ms grace passed
			return token, alice
		}},
		{"another user", func(t *testing.T, tr resumeTransport, dest string) (string, []string) {
			return parked(t, tr, dest), bob
		}},
		{"another virtual host", func(t *testing.T, tr resumeTransport, dest string) (string, []string) {
			return parked(t, tr, dest), append([]string{"host:other"}, alice...)
		}},
		{"used already", func(t *testing.T, tr resumeTransport, dest string) (string, []string) {
			token := parked(t, tr, dest)
			b := tr.dial(t)
			if f := connectOn(t, b, append(alice, "resume-token:"+token)...); header(f, "resumed") != "true" {
				t.Fatalf("first resume: %v", f.Headers)
			}
			b.send(frame("DISCONNECT", "", "receipt:bye"))
			expectFrame(t, b, frames.CmdReceipt, "")
			return token, alice
		}},
		{"disconnected", func(t *testing.T, tr resumeTransport, dest string) (string, []string) {
			a := tr.dial(t)
			token := header(connectOn(t, a, alice...), "resume-token")
			a.send(frame("SUBSCRIBE", "", "id:t", "destination:"+dest))
			a.send(frame("DISCONNECT", "", "receipt:bye"))
			expectFrame(t, a, frames.CmdReceipt, "")
			return token, alice
		}},
		{"overflowed while parked", func(t *testing.T, tr resumeTransport, dest string) (string, []string) {
			token := parked(t, tr, dest)
			big := string(make([]byte, 4<<10))
			bodies := make([]string, 8) // 32 KiB for a 16 KiB outbox
			for i := range bodies {
				bodies[i] = big
			}
			overflowed := func() float64 {
				return gathered(t, srv, "stompbox_sessions_parked_released_total", "reason", "overflow")
			}
			before := overflowed()
			publish(t, srv.addr, dest, bodies...)
			waitParked(t, srv, 0)
			// Released for its overflow, not by its grace running out.
			if got := overflowed(); got != before+1 {
				t.Fatalf("released for overflow %v times, want %v", got, before+1)
			}
			return token, alice
		}},
	}
	for _, tr := range transports {
		for i, tc := range cases {
			t.Run(tr.name+"/"+tc.name, func(t *testing.T) {
				dest := "/topic/refused." + tr.name + "." + strconv.Itoa(i)
				token, headers := tc.setup(t, tr, dest)
				b := tr.dial(t)
				f := connectOn(t, b, append(headers, "resume-token:"+token)...)
				if header(f, "resumed") != "false" || header(f, "resume-token") == "" || header(f, "resume-token") == token {
					t.Fatalf("CONNECTED %v: want resumed:false and a fresh token", f.Headers)
				}
				// A fresh session: id t is free, and nothing old arrives.
				b.send(frame("SUBSCRIBE", "", "id:t", "destination:"+dest+".fresh", "receipt:r"))
				expectFrame(t, b, frames.CmdReceipt, "")
				host := "test"
				if tc.name == "another virtual host" {
					host = "other"
				}
				publishOn(t, srv.addr, host, dest+".fresh", "fresh")
				expectFrame(t, b, frames.CmdMessage, "fresh")
				b.send(frame("DISCONNECT", "", "receipt:bye"))
				expectFrame(t, b, frames.CmdReceipt, "")
				// Leave no parked session to the next case.
				srvReleaseParked(t, srv)
			})
		}
	}
}

// srvReleaseParked waits for the refused cases' parked session (another
// user's, another host's) to expire, so the next case starts clean.
func srvReleaseParked(t *testing.T, srv *testServer) {
	t.Helper()
	waitParked(t, srv, 0)
}

// TestResumeTakesOverHalfOpen: the old connection is still open (the
// server has not noticed it is gone) when the new CONNECT presents its
// token: the old one gets ERROR session-taken-over and is closed, the new
// one gets the session.
func TestResumeTakesOverHalfOpen(t *testing.T) {
	srv, transports := resumeTransports(t, Config{})
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			topic := "/topic/takeover." + tr.name
			parkedBefore := srv.Broker().ParkedSessions() // earlier subtests' connections
			a := tr.dial(t)
			token := header(connectOn(t, a), "resume-token")
			a.send(frame("SUBSCRIBE", "", "id:t", "destination:"+topic, "receipt:r"))
			expectFrame(t, a, frames.CmdReceipt, "")

			b := tr.dial(t)
			if f := connectOn(t, b, "resume-token:"+token); header(f, "resumed") != "true" {
				t.Fatalf("CONNECTED %v, want resumed:true", f.Headers)
			}
			e := expectFrame(t, a, frames.CmdError, "")
			if header(e, "error-code") != broker.CodeSessionTakenOver || header(e, "retryable") != "false" {
				t.Fatalf("old connection got %v, want ERROR session-taken-over, not retryable", e.Headers)
			}
			a.expectGone()
			publish(t, srv.addr, topic, "new")
			expectFrame(t, b, frames.CmdMessage, "new")
			b.send(frame("DISCONNECT", "", "receipt:bye"))
			expectFrame(t, b, frames.CmdReceipt, "")
			if n := srv.Broker().ParkedSessions(); n != parkedBefore {
				t.Fatalf("%d parked, want %d: the taken-over session is not parked", n, parkedBefore)
			}
		})
	}
}

// TestResumeAfterHeartbeatTimeout: a client gone silent (a background
// tab, a network that drops packets) is closed with heartbeat-timeout,
// but its session is parked and resumable.
func TestResumeAfterHeartbeatTimeout(t *testing.T) {
	srv, transports := resumeTransports(t, Config{Broker: broker.Config{
		HeartBeat: frames.HeartBeat{Send: time.Second, Receive: 100 * time.Millisecond}, HeartbeatTolerance: 1}})
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			topic := "/topic/silent." + tr.name
			a := tr.dial(t)
			token := header(connectOn(t, a, "heart-beat:100,0"), "resume-token")
			a.send(frame("SUBSCRIBE", "", "id:t", "destination:"+topic, "receipt:r"))
			expectFrame(t, a, frames.CmdReceipt, "")
			if e := expectFrame(t, a, frames.CmdError, ""); header(e, "error-code") != broker.CodeHeartbeatTimeout {
				t.Fatalf("got %v, want heartbeat-timeout", e.Headers)
			}
			waitParked(t, srv, 1)
			publish(t, srv.addr, topic, "while silent")
			b := tr.dial(t)
			if f := connectOn(t, b, "resume-token:"+token); header(f, "resumed") != "true" {
				t.Fatalf("CONNECTED %v, want resumed:true", f.Headers)
			}
			expectFrame(t, b, frames.CmdMessage, "while silent")
			b.send(frame("DISCONNECT", "", "receipt:bye"))
			expectFrame(t, b, frames.CmdReceipt, "")
		})
	}
}

// TestShutdownReleasesParked: shutting down releases parked sessions
// (what they held goes back: broker's TestReleaseParkedRequeues).
func TestShutdownReleasesParked(t *testing.T) {
	srv := startServer(t, Config{})
	a := tcpConn{dialRaw(t, srv.addr)}
	connectOn(t, a)
	a.send(frame("SUBSCRIBE", "", "id:q", "destination:/queue/parked", "ack:client", "receipt:r"))
	expectFrame(t, a, frames.CmdReceipt, "")
	publish(t, srv.addr, "/queue/parked", "held")
	expectFrame(t, a, frames.CmdMessage, "held")
	a.drop()
	waitParked(t, srv, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if n := srv.Broker().ParkedSessions(); n != 0 {
		t.Fatalf("%d sessions parked after shutdown, want 0", n)
	}
}

// TestConnectedLimits: CONNECTED tells the client the limits it must keep
// to and how long a dropped session stays resumable.
func TestConnectedLimits(t *testing.T) {
	tests := []struct {
		name  string
		grace time.Duration
		want  string
	}{{"default grace", 0, "120000"}, {"5s grace", 5 * time.Second, "5000"}, {"recovery off", -1, "0"}}
	for _, tc := range tests {
		_, transports := resumeTransports(t, Config{Broker: broker.Config{
			Frame: frames.Limits{MaxBody: 1 << 20, MaxHeaderBytes: 8 << 10}, MaxSubscriptions: 7, ResumeGrace: tc.grace}})
		for _, tr := range transports {
			t.Run(tc.name+"/"+tr.name, func(t *testing.T) {
				f := connectOn(t, tr.dial(t))
				for k, v := range map[string]string{"max-body": "1048576", "max-header-bytes": "8192",
					"max-subscriptions": "7", "resume-grace": tc.want} {
					if got := header(f, k); got != v {
						t.Errorf("%s:%s, want %s", k, got, v)
					}
				}
				if _, ok := f.Header("resume-token"); ok == (tc.grace < 0) {
					t.Errorf("resume-token present %v with grace %v", ok, tc.grace)
				}
			})
		}
	}
}

// twoUsers authenticates alice and bob by passcode.
type twoUsers struct{}

func (twoUsers) Authenticate(_ context.Context, c broker.Credentials) (*broker.Principal, error) {
	if (c.Login == "alice" && c.Passcode == "a-secret") || (c.Login == "bob" && c.Passcode == "b-secret") {
		return &broker.Principal{Name: c.Login}, nil
	}
	return nil, errors.New("unknown user or wrong passcode")
}
