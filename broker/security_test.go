package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stompbox/stompbox/frames"
)

// tableAuth accepts login "alice"/"secret" (roles from the table) and
// fails with ErrAuthUnavailable for login "down".
type tableAuth struct{}

func (tableAuth) Authenticate(_ context.Context, c Credentials) (*Principal, error) {
	switch {
	case c.Login == "alice" && c.Passcode == "secret":
		return &Principal{Name: "alice", Roles: []string{"chat"}}, nil
	case c.Login == "down":
		return nil, fmt.Errorf("key server unreachable: %w", ErrAuthUnavailable)
	}
	return nil, errors.New("invalid login or passcode")
}

// prefixAuthorizer allows what starts with one of its prefixes, per action,
// and the virtual hosts it lists.
type prefixAuthorizer struct {
	publish, subscribe []string
	hosts              []string
}

func (a prefixAuthorizer) AllowHost(_ *Principal, vhost string) bool {
	return a.hosts == nil || slices.Contains(a.hosts, vhost)
}

func (a prefixAuthorizer) Allow(_ *Principal, _ string, act Action, dest string) bool {
	list := a.publish
	if act == ActionSubscribe {
		list = a.subscribe
	}
	for _, p := range list {
		if strings.HasPrefix(dest, p) {
			return true
		}
	}
	return false
}

func expectError(t *testing.T, c *client, code string, retryable bool) {
	t.Helper()
	fs := c.poll()
	if len(fs) == 0 || fs[len(fs)-1].Command != frames.CmdError {
		t.Fatalf("got %v, want an ERROR %s", commands(fs), code)
	}
	e := fs[len(fs)-1]
	if hdr(e, "error-code") != code || hdr(e, "retryable") != fmt.Sprint(retryable) {
		t.Fatalf("ERROR %s retryable %s (%s), want %s retryable %v", hdr(e, "error-code"), hdr(e, "retryable"), e.Body, code, retryable)
	}
}

func TestAuthorizationRefusesWithForbidden(t *testing.T) {
	b := New(Config{Authorizer: prefixAuthorizer{publish: []string{"/topic/chat."}, subscribe: []string{"/topic/chat.", "/queue/mine"}}})
	tests := []struct {
		name  string
		cmd   frames.Command
		hdrs  []string
		allow bool
	}{
		{"publish allowed", frames.CmdSend, []string{"destination:/topic/chat.room1"}, true},
		{"publish forbidden", frames.CmdSend, []string{"destination:/topic/news"}, false},
		{"publish to a queue forbidden", frames.CmdSend, []string{"destination:/queue/mine"}, false},
		{"subscribe allowed", frames.CmdSubscribe, []string{"destination:/topic/chat.room1", "id:1"}, true},
		{"subscribe pattern allowed", frames.CmdSubscribe, []string{"destination:/topic/chat.#", "id:1"}, true},
		{"subscribe forbidden", frames.CmdSubscribe, []string{"destination:/queue/other", "id:1"}, false},
		{"temporary queue is the client's own", frames.CmdSubscribe, []string{"destination:/temp-queue/r", "id:1"}, true},
		{"transactional send forbidden at SEND", frames.CmdSend, []string{"destination:/topic/news", "transaction:t"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, b)
			c.connect()
			if slices.Contains(tt.hdrs, "transaction:t") {
				c.mustSend(frames.CmdBegin, "", "transaction:t")
			}
			err := c.send(tt.cmd, "x", append(tt.hdrs, "receipt:r")...)
			if tt.allow {
				if err != nil {
					t.Fatal(err)
				}
				if f := c.next(); f.Command != frames.CmdReceipt {
					t.Fatalf("got %s %s, want RECEIPT", f.Command, f.Body)
				}
				return
			}
			if !isClosed(err) {
				t.Fatalf("forbidden frame left the session open (%v)", err)
			}
			expectError(t, c, CodeForbidden, false)
		})
	}
}

func TestVirtualHostsIsolate(t *testing.T) {
	b := New(Config{VirtualHosts: []string{"tenant-a", "tenant-b"}})
	a, bb, root := newClient(t, b), newClient(t, b), newClient(t, b)
	a.connect("host:tenant-a")
	bb.connect("host:tenant-b")
	root.connect() // no host header: the default virtual host
	for _, c := range []*client{a, bb, root} {
		c.mustSend(frames.CmdSubscribe, "", "destination:/topic/x", "id:t")
		c.mustSend(frames.CmdSubscribe, "", "destination:/queue/jobs", "id:q")
	}
	a.mustSend(frames.CmdSend, "for a", "destination:/topic/x")
	a.mustSend(frames.CmdSend, "job a", "destination:/queue/jobs")
	if got := bodies(a.poll()); !slices.Equal(got, []string{"for a", "job a"}) {
		t.Fatalf("tenant-a got %v", got)
	}
	if got := bodies(bb.poll()); len(got) != 0 {
		t.Fatalf("tenant-b got %v from tenant-a", got)
	}
	if got := bodies(root.poll()); len(got) != 0 {
		t.Fatalf("the default virtual host got %v from tenant-a", got)
	}
	if n := len(b.spaces["tenant-a"].queues); n != 1 || len(b.spaces["tenant-b"].queues) != 1 {
		t.Fatalf("queues: tenant-a %d, tenant-b %d; want one /queue/jobs each", n, len(b.spaces["tenant-b"].queues))
	}

	unknown := newClient(t, b)
	if err := unknown.send(frames.CmdConnect, "", "accept-version:1.2", "host:tenant-c"); !isClosed(err) {
		t.Fatalf("CONNECT to an unknown host: %v", err)
	}
	expectError(t, unknown, CodeUnknownHost, false)
}

func TestWithoutVirtualHostsEveryHostIsDefault(t *testing.T) {
	b := New(Config{})
	x, y := newClient(t, b), newClient(t, b)
	x.connect("host:localhost")
	y.connect("host:broker.example.com")
	y.mustSend(frames.CmdSubscribe, "", "destination:/topic/x", "id:1")
	x.mustSend(frames.CmdSend, "hi", "destination:/topic/x")
	if got := bodies(y.poll()); !slices.Equal(got, []string{"hi"}) {
		t.Fatalf("got %v", got)
	}
}

func TestVirtualHostRefusedByAuthorizer(t *testing.T) {
	b := New(Config{VirtualHosts: []string{"a"}, Authorizer: prefixAuthorizer{hosts: []string{"/"}, publish: []string{"/"}, subscribe: []string{"/"}}})
	c := newClient(t, b)
	if err := c.send(frames.CmdConnect, "", "accept-version:1.2", "host:a"); !isClosed(err) {
		t.Fatalf("CONNECT: %v", err)
	}
	expectError(t, c, CodeForbidden, false)
}

func TestVirtualHostJournalRecovery(t *testing.T) {
	j := &memJournal{}
	b := New(Config{Journal: j, VirtualHosts: []string{"tenant a"}})
	a, root := newClient(t, b), newClient(t, b)
	a.connect("host:tenant a")
	root.connect()
	a.mustSend(frames.CmdSend, "in a", "destination:/queue/work", "persistent:true")
	root.mustSend(frames.CmdSend, "in root", "destination:/queue/work", "persistent:true")
	var names []string
	for _, r := range j.all() {
		names = append(names, r.Queue)
	}
	if want := []string{"/vhost/tenant%20a/queue/work", "/queue/work"}; !slices.Equal(names, want) {
		t.Fatalf("journal queue names %q, want %q (the default vhost keeps the old names)", names, want)
	}

	// Without that virtual host configured its messages are skipped, not
	// put anywhere else (client ack, so it stays in the journal).
	b3 := New(Config{Journal: j})
	if err := b3.Recover(); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, b3)
	c.connect()
	c.mustSend(frames.CmdSubscribe, "", "destination:/queue/work", "id:w", "ack:client")
	if got := bodies(c.poll()); !slices.Equal(got, []string{"in root"}) {
		t.Fatalf("default vhost after dropping tenant a: %v", got)
	}

	b2 := New(Config{Journal: j, VirtualHosts: []string{"tenant a"}})
	if err := b2.Recover(); err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]string{"tenant a": "in a", "/": "in root"} {
		c := newClient(t, b2)
		c.connect("host:" + host)
		c.mustSend(frames.CmdSubscribe, "", "destination:/queue/work", "id:w")
		if got := bodies(c.poll()); !slices.Equal(got, []string{want}) {
			t.Fatalf("vhost %q recovered %v, want [%s]", host, got, want)
		}
	}
}

func TestAuthenticationFailures(t *testing.T) {
	b := New(Config{Authenticator: tableAuth{}, AuthFailureDelay: 50 * time.Millisecond})
	ok := newClient(t, b)
	ok.connect("login:alice", "passcode:secret")

	bad := newClient(t, b)
	start := time.Now()
	if err := bad.send(frames.CmdConnect, "", "accept-version:1.2", "login:alice", "passcode:guess"); !isClosed(err) {
		t.Fatalf("bad passcode: %v", err)
	}
	if waited := time.Since(start); waited < 50*time.Millisecond {
		t.Fatalf("a refused login was answered after %v, before AuthFailureDelay", waited)
	}
	fs := bad.poll()
	e := fs[len(fs)-1]
	if hdr(e, "error-code") != CodeAuthFailed || hdr(e, "retryable") != "false" || strings.Contains(string(e.Body), "guess") {
		t.Fatalf("ERROR %v %q", headerLines(e), e.Body)
	}

	down := newClient(t, b)
	if err := down.send(frames.CmdConnect, "", "accept-version:1.2", "login:down", "passcode:x"); !isClosed(err) {
		t.Fatal(err)
	}
	expectError(t, down, CodeAuthFailed, true)
}

func TestPreauthenticatedSession(t *testing.T) {
	b := New(Config{Authenticator: tableAuth{}})
	c := newClient(t, b)
	c.s.Preauthenticate(&Principal{Name: "token-user"})
	c.connect() // no login or passcode: the upgrade's principal
	if c.s.principal.Name != "token-user" {
		t.Fatalf("principal %q", c.s.principal.Name)
	}
	d := newClient(t, b)
	d.s.Preauthenticate(&Principal{Name: "token-user"})
	d.connect("login:alice", "passcode:secret") // CONNECT's own credentials win
	if d.s.principal.Name != "alice" {
		t.Fatalf("principal %q, want the CONNECT's alice", d.s.principal.Name)
	}
}

func TestRateLimits(t *testing.T) {
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	t.Run("frames", func(t *testing.T) {
		b := New(Config{MaxFramesPerSecond: 10, Now: clock, FullPolicy: FullError})
		c := newClient(t, b)
		c.connect()    // 1 frame
		for range 19 { // the burst is twice the rate
			c.mustSend(frames.CmdSend, "x", "destination:/topic/r")
		}
		now = now.Add(500 * time.Millisecond) // 5 more tokens
		for range 5 {
			c.mustSend(frames.CmdSend, "x", "destination:/topic/r")
		}
		if err := c.send(frames.CmdSend, "x", "destination:/topic/r"); !isClosed(err) {
			t.Fatalf("frame past the rate: %v", err)
		}
		expectError(t, c, CodeLimitExceeded, true)
	})
	t.Run("bytes", func(t *testing.T) {
		b := New(Config{MaxBytesPerSecond: 1000, Now: clock, FullPolicy: FullError})
		c := newClient(t, b)
		c.connect()
		body := strings.Repeat("b", 1500)
		if err := c.send(frames.CmdSend, body, "destination:/topic/r"); err != nil {
			t.Fatalf("within the 2000-byte burst: %v", err)
		}
		if err := c.send(frames.CmdSend, body, "destination:/topic/r"); !isClosed(err) {
			t.Fatalf("past the burst: %v", err)
		}
		expectError(t, c, CodeLimitExceeded, true)
	})
}

func TestMaxDestinationsPerConnection(t *testing.T) {
	b := New(Config{MaxDestinationsPerConnection: 2})
	other := newClient(t, b)
	other.connect()
	other.mustSend(frames.CmdSubscribe, "", "destination:/queue/shared", "id:s")

	c := newClient(t, b)
	c.connect()
	c.mustSend(frames.CmdSend, "x", "destination:/queue/shared") // exists: free
	c.mustSend(frames.CmdSend, "x", "destination:/queue/new1")
	c.mustSend(frames.CmdSubscribe, "", "destination:/topic/new2", "id:t")
	c.mustSend(frames.CmdSubscribe, "", "destination:/topic/new2.#", "id:w") // a pattern creates nothing
	if err := c.send(frames.CmdSend, "x", "destination:/queue/new3"); !isClosed(err) {
		t.Fatalf("third destination: %v", err)
	}
	expectError(t, c, CodeLimitExceeded, false)
}

// Every way a connection creates a destination counts against the same
// limit; finding one that exists does not.
func TestMaxDestinationsCountsEveryCreation(t *testing.T) {
	tests := []struct {
		name   string
		create []string // SUBSCRIBE destinations (with durable: durable-subscription-name)
	}{
		{"queue subscriptions", []string{"/queue/a", "/queue/b", "/queue/c"}},
		{"temporary queues", []string{"/temp-queue/a", "/temp-queue/b", "/temp-queue/c"}},
		{"topics", []string{"/topic/a", "/topic/b", "/topic/c"}},
		{"durable subscriptions", []string{"durable:/topic/a", "durable:/topic/b", "durable:/topic/c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := New(Config{MaxDestinationsPerConnection: 2})
			c := newClient(t, b)
			c.connect("client-id:app")
			for i, dest := range tt.create {
				hdrs := []string{"id:" + fmt.Sprint(i)}
				if d, ok := strings.CutPrefix(dest, "durable:"); ok {
					dest = d
					hdrs = append(hdrs, "durable-subscription-name:n"+fmt.Sprint(i))
				}
				err := c.send(frames.CmdSubscribe, "", append(hdrs, "destination:"+dest)...)
				if i < 2 && err != nil {
					t.Fatalf("destination %d: %v", i+1, err)
				}
				if i == 2 {
					if !isClosed(err) {
						t.Fatalf("third destination accepted (%v)", err)
					}
					expectError(t, c, CodeLimitExceeded, false)
				}
			}
		})
	}
}
