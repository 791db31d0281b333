package broker

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stompbox/stompbox/frames"
)

// testClock is a settable Config.Now.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// expiringAuth accepts everyone as a principal expiring at expires.
type expiringAuth struct{ expires time.Time }

func (a expiringAuth) Authenticate(_ context.Context, c Credentials) (*Principal, error) {
	return &Principal{Name: c.Login, Expires: a.expires}, nil
}

// waitPokes waits (bounded) until the transport was poked at least n times.
func waitPokes(t *testing.T, tr *fakeTransport, n int64) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); tr.pokes.Load() < n; {
		if time.Now().After(deadline) {
			t.Fatalf("%d pokes after 5s, want %d", tr.pokes.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// A session whose principal expires is poked by its timer and, once
// Config.Now has reached the expiry, ends with ERROR token-expired
// (retryable); a poke before then (the wall clock went back) re-arms.
func TestSessionEndsAtTokenExpiry(t *testing.T) {
	start := time.Unix(1_800_000_000, 0)
	clk := &testClock{t: start}
	expires := start.Add(30 * time.Millisecond) // the timer waits this long for real
	b := New(Config{Now: clk.Now, Authenticator: expiringAuth{expires}})
	c := newClient(t, b)
	c.connect("login:alice", "passcode:token")

	waitPokes(t, c.tr, 1)
	if err := c.s.Poked(); err != nil { // Now has not reached the expiry
		t.Fatalf("Poked before the expiry by Config.Now: %v", err)
	}
	if fs := c.poll(); len(fs) != 0 {
		t.Fatalf("output before the expiry: %v", commands(fs))
	}
	waitPokes(t, c.tr, 2) // re-armed for what is left

	clk.set(expires)
	if err := c.s.Poked(); !isClosed(err) {
		t.Fatalf("Poked at the expiry = %v, want ErrSessionClosed", err)
	}
	e := c.next()
	if e.Command != frames.CmdError || hdr(e, "error-code") != CodeTokenExpired || hdr(e, "retryable") != "true" ||
		!strings.Contains(string(e.Body), "expired at 2027-01-15T08:00:00Z") {
		t.Fatalf("got %s %q %q, want ERROR token-expired, retryable", e.Command, headerLines(e), e.Body)
	}
	if r, _ := c.s.CloseReason(); r != CloseTokenExpired {
		t.Errorf("close reason %v, want token-expired", r)
	}
	if !c.closing {
		t.Error("the session is not closing")
	}
	c.s.Release()
	if got := b.closes[CloseTokenExpired].Load(); got != 1 {
		t.Errorf("token-expired closes counted %d, want 1", got)
	}
}

// The timer exists only for principals that expire, covers a principal
// from the WebSocket upgrade too, and is stopped by Release.
func TestExpiryTimerArmedAndStopped(t *testing.T) {
	far := time.Now().Add(time.Hour)
	t.Run("no expiry, no timer", func(t *testing.T) {
		c := newClient(t, New(Config{Authenticator: AllowAll{}}))
		c.connect("login:alice")
		if c.s.auth.expiry != nil {
			t.Fatal("a timer for a principal that never expires")
		}
		c.s.Release()
	})
	for _, tc := range []struct {
		name    string
		preauth bool
	}{{"CONNECT credentials", false}, {"upgrade token", true}} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, New(Config{Authenticator: expiringAuth{far}}))
			if tc.preauth {
				c.s.Preauthenticate(&Principal{Name: "bob", Expires: far})
				c.connect()
			} else {
				c.connect("login:alice", "passcode:x")
			}
			if c.s.auth.expiry == nil {
				t.Fatal("no expiry timer")
			}
			c.s.Release()
			if c.s.auth.expiry.Stop() {
				t.Error("Release left the expiry timer running")
			}
		})
	}
}

// rightsAuth is an Authenticator and PrincipalChecker whose answers the
// test changes, as a reload would.
type rightsAuth struct {
	mu      sync.Mutex
	removed map[string]bool
	roles   map[string][]string
}

func (a *rightsAuth) Authenticate(_ context.Context, c Credentials) (*Principal, error) {
	return &Principal{Name: c.Login, Roles: []string{"chat"}}, nil
}

func (a *rightsAuth) CheckPrincipal(p *Principal) (*Principal, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.removed[p.Name] {
		return nil, errors.New("the user no longer exists")
	}
	if r, ok := a.roles[p.Name]; ok && !slices.Equal(r, p.Roles) {
		np := *p
		np.Roles = r
		return &np, nil
	}
	return p, nil
}

// roleAuthorizer allows hosts and subscriptions by role: "chat" may
// subscribe to /topic/chat.* and /queue/inbox, "ops" to everything.
type roleAuthorizer struct {
	mu          sync.Mutex
	deniedHosts map[string]bool
	denied      map[string]bool // destinations denied to everyone
}

func (a *roleAuthorizer) AllowHost(_ *Principal, vhost string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return !a.deniedHosts[vhost]
}

func (a *roleAuthorizer) Allow(p *Principal, _ string, _ Action, dest string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.denied[dest] {
		return false
	}
	return slices.Contains(p.Roles, "ops") ||
		slices.Contains(p.Roles, "chat") && (strings.HasPrefix(dest, "/topic/chat.") || dest == "/queue/inbox")
}

// After RequestReauthorize the read loop (Poked) checks the principal, the
// virtual host and every subscription again; what is no longer allowed
// ends the session with ERROR forbidden (not retryable).
func TestReauthorize(t *testing.T) {
	tests := []struct {
		name       string
		change     func(*rightsAuth, *roleAuthorizer)
		plainAuth  bool   // the Authenticator is no PrincipalChecker
		wantDetail string // "" : the session stays
	}{
		{"nothing changed", func(*rightsAuth, *roleAuthorizer) {}, false, ""},
		{"a subscription's right removed", func(_ *rightsAuth, z *roleAuthorizer) { z.denied["/queue/inbox"] = true },
			false, `may not subscribe "/queue/inbox"`},
		{"a wildcard subscription's right removed", func(_ *rightsAuth, z *roleAuthorizer) { z.denied["/topic/chat.*"] = true },
			false, `may not subscribe "/topic/chat.*"`},
		{"publish rights are not subscriptions", func(_ *rightsAuth, z *roleAuthorizer) { z.denied["/queue/other"] = true }, false, ""},
		{"virtual host removed", func(_ *rightsAuth, z *roleAuthorizer) { z.deniedHosts["/"] = true },
			false, `may no longer use virtual host "/"`},
		{"user removed", func(a *rightsAuth, _ *roleAuthorizer) { a.removed["alice"] = true },
			false, "no longer allowed to connect: the user no longer exists"},
		{"user removed, but the Authenticator cannot say", func(a *rightsAuth, _ *roleAuthorizer) { a.removed["alice"] = true },
			true, ""},
		{"roles changed: the new roles are used", func(a *rightsAuth, z *roleAuthorizer) {
			a.roles["alice"] = []string{"ops"}
			z.denied["/topic/chat.*"] = false
		}, false, ""},
		{"roles lost", func(a *rightsAuth, _ *roleAuthorizer) { a.roles["alice"] = nil }, false, "may not subscribe"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			auth := &rightsAuth{removed: map[string]bool{}, roles: map[string][]string{}}
			authz := &roleAuthorizer{deniedHosts: map[string]bool{}, denied: map[string]bool{}}
			cfg := Config{Authenticator: auth, Authorizer: authz}
			if tt.plainAuth {
				cfg.Authenticator = struct{ Authenticator }{auth} // hides CheckPrincipal
			}
			b := New(cfg)
			c := newClient(t, b)
			c.connect("login:alice")
			c.mustSend(frames.CmdSubscribe, "", "destination:/queue/inbox", "id:in")
			c.mustSend(frames.CmdSubscribe, "", "destination:/topic/chat.*", "id:chat")
			c.mustSend(frames.CmdSubscribe, "", "destination:/temp-queue/replies", "id:tmp")
			if fs := c.poll(); len(fs) != 0 {
				t.Fatalf("subscribing: %v", commands(fs))
			}

			tt.change(auth, authz)
			// A poke for something else does not re-check.
			if err := c.s.Poked(); err != nil {
				t.Fatalf("Poked without a request: %v", err)
			}
			c.s.RequestReauthorize()
			if c.tr.pokes.Load() != 1 {
				t.Fatalf("RequestReauthorize poked %d times, want 1", c.tr.pokes.Load())
			}
			err := c.s.Poked()
			if tt.wantDetail == "" {
				if err != nil {
					t.Fatalf("Poked = %v, want the session to stay", err)
				}
				if fs := c.poll(); len(fs) != 0 {
					t.Fatalf("output: %v", commands(fs))
				}
				c.mustSend(frames.CmdSend, "x", "destination:/queue/inbox", "receipt:r") // still working
				if fs := c.poll(); len(fs) != 2 || fs[0].Command != frames.CmdMessage || fs[1].Command != frames.CmdReceipt {
					t.Fatalf("after re-authorization: %v, want MESSAGE and RECEIPT", commands(fs))
				}
				return
			}
			if !isClosed(err) {
				t.Fatalf("Poked = %v, want ErrSessionClosed", err)
			}
			expectError(t, c, CodeForbidden, false)
			if r, _ := c.s.CloseReason(); r != ClosePolicy {
				t.Errorf("close reason %v, want policy", r)
			}
		})
	}
}
