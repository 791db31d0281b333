package server

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/frames"
)

// shortAuth accepts everyone, as a principal whose credentials expire
// after its lifetime.
type shortAuth struct{ lifetime time.Duration }

func (a shortAuth) Authenticate(_ context.Context, c broker.Credentials) (*broker.Principal, error) {
	return &broker.Principal{Name: c.Login, Expires: time.Now().Add(a.lifetime)}, nil
}

var tokenExpired = errorWant{message: "token expired", code: broker.CodeTokenExpired, retryable: true}

// A session is closed when its credentials expire: ERROR token-expired,
// then the connection ends; over WebSocket with close code 1008.
func TestSessionClosedAtTokenExpiry(t *testing.T) {
	const lifetime = 300 * time.Millisecond
	srv, url := startWebServer(t, Config{Broker: broker.Config{Authenticator: shortAuth{lifetime}}})
	t.Run("tcp", func(t *testing.T) {
		c := dialRaw(t, srv.addr)
		start := time.Now()
		c.connect("login:alice", "passcode:token")
		f := c.next(5 * time.Second)
		checkERROR(t, f, tokenExpired)
		if waited := time.Since(start); waited < lifetime-50*time.Millisecond {
			t.Errorf("closed after %v, before the token expired (%v)", waited, lifetime)
		}
		c.expectClosed(5 * time.Second)
	})
	t.Run("websocket", func(t *testing.T) {
		c := dialWSClient(t, url, nil, "v12.stomp")
		c.connect("login:alice", "passcode:token")
		f, _ := c.next()
		checkERROR(t, f, tokenExpired)
		c.expectClose(ws.StatusPolicyViolation)
	})
}

// grantsByUser lets each user subscribe to the destinations it lists; the
// test changes the lists, as a reloaded rules file would.
type grantsByUser struct {
	mu     sync.Mutex
	grants map[string]map[string]bool
}

func (g *grantsByUser) AllowHost(*broker.Principal, string) bool { return true }

func (g *grantsByUser) Allow(p *broker.Principal, _ string, a broker.Action, dest string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return a == broker.ActionPublish || g.grants[p.Name][dest]
}

func (g *grantsByUser) revoke(user, dest string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.grants[user], dest)
}

// Server.Reauthorize holds open sessions to changed rights: a user whose
// subscription is no longer allowed gets ERROR forbidden and is closed;
// another user's session goes on.
func TestServerReauthorize(t *testing.T) {
	authz := &grantsByUser{grants: map[string]map[string]bool{
		"alice": {"/queue/a": true}, "bob": {"/queue/b": true},
	}}
	srv := startServer(t, Config{Broker: broker.Config{Authorizer: authz}})
	alice, bob := dialRaw(t, srv.addr), dialRaw(t, srv.addr)
	alice.connect("login:alice")
	bob.connect("login:bob")
	alice.send(frame("SUBSCRIBE", "", "id:1", "destination:/queue/a", "receipt:s"))
	bob.send(frame("SUBSCRIBE", "", "id:1", "destination:/queue/b", "receipt:s"))
	for _, c := range []*rawClient{alice, bob} {
		if f := c.next(5 * time.Second); f.Command != frames.CmdReceipt {
			t.Fatalf("SUBSCRIBE: got %s %q", f.Command, f.Body)
		}
	}

	if n := srv.Reauthorize(); n != 2 {
		t.Errorf("Reauthorize asked %d sessions, want 2", n)
	}
	authz.revoke("alice", "/queue/a")
	if n := srv.Reauthorize(); n != 2 {
		t.Errorf("Reauthorize asked %d sessions, want 2", n)
	}
	f := alice.next(5 * time.Second)
	checkERROR(t, f, errorWant{message: "forbidden", code: broker.CodeForbidden})
	alice.expectClosed(5 * time.Second)

	bob.send(frame("SEND", "still here", "destination:/queue/b"))
	if f := bob.next(5 * time.Second); f.Command != frames.CmdMessage || string(f.Body) != "still here" {
		t.Fatalf("bob after the re-authorization: %s %q", f.Command, f.Body)
	}
}

// A re-authorization (SIGHUP) does not touch connections that have not
// CONNECTed: a TLS handshake in progress must not be interrupted (crypto/tls
// keeps the interruption's error for good, and the read loop would spin on
// it until the connect timeout).
func TestReauthorizeSparesTLSHandshakes(t *testing.T) {
	tc := writeTestCert(t, t.TempDir(), 1)
	cert, err := LoadCertificate(tc.certFile, tc.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	stompAddr, _, srv := startTLSServer(t, cert, Config{})
	raw, err := net.DialTimeout("tcp", stompAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	// Re-authorize repeatedly while the server's read loop waits for the
	// ClientHello (from the moment the connection is registered on).
	asked := 0
	for range 40 {
		asked += srv.Reauthorize()
		time.Sleep(5 * time.Millisecond)
	}
	if asked == 0 {
		t.Fatal("the connection was never registered")
	}
	tlsConn := tls.Client(raw, &tls.Config{RootCAs: tc.pool, ServerName: "127.0.0.1"})
	_ = tlsConn.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tlsConn.Handshake(); err != nil {
		t.Fatalf("TLS handshake after a re-authorization: %v", err)
	}
	c := newRawClient(t, tlsConn)
	if f := c.connect(); f.Command != frames.CmdConnected {
		t.Fatalf("CONNECT over TLS after a re-authorization: %s %q", f.Command, f.Body)
	}
}
