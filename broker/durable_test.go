package broker

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stompbox/stompbox/frames"
)

// anyUserAuth accepts every login with passcode "pw", as that user.
type anyUserAuth struct{}

func (anyUserAuth) Authenticate(_ context.Context, c Credentials) (*Principal, error) {
	if c.Passcode != "pw" || c.Login == "" {
		return nil, errors.New("invalid login or passcode")
	}
	return &Principal{Name: c.Login}, nil
}

// denyAuthorizer allows everything but the SUBSCRIBE destinations in its
// deny set, which a test changes as an ACL reload would.
type denyAuthorizer struct {
	mu   sync.Mutex
	deny map[string]bool
}

func (a *denyAuthorizer) AllowHost(*Principal, string) bool { return true }

func (a *denyAuthorizer) Allow(_ *Principal, _ string, act Action, dest string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return act != ActionSubscribe || !a.deny[dest]
}

func (a *denyAuthorizer) set(dest string, denied bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.deny == nil {
		a.deny = map[string]bool{}
	}
	a.deny[dest] = denied
}

// userClient connects as user with client-id clientID ("" for none).
func userClient(t *testing.T, b *Broker, user, clientID string) *client {
	t.Helper()
	c := newClient(t, b)
	hs := []string{"login:" + user, "passcode:pw"}
	if clientID != "" {
		hs = append(hs, "client-id:"+clientID)
	}
	c.connect(hs...)
	return c
}

// subscribeDurable subscribes durably (auto ack) and returns what arrived
// with the RECEIPT.
func (c *client) subscribeDurable(dest, name string) []*frames.Frame {
	c.t.Helper()
	c.mustSend(frames.CmdSubscribe, "", "id:"+name, "destination:"+dest, "durable-subscription-name:"+name, "receipt:r-"+name)
	fs := c.poll()
	if len(fs) == 0 || fs[0].Command != frames.CmdReceipt {
		c.t.Fatalf("SUBSCRIBE %s durable %s: got %v (%s), want RECEIPT first", dest, name, commands(fs), errBody(fs))
	}
	return fs[1:]
}

func errBody(fs []*frames.Frame) string {
	for _, f := range fs {
		if f.Command == frames.CmdError {
			return hdr(f, "error-code") + ": " + string(f.Body)
		}
	}
	return ""
}

func publish(t *testing.T, b *Broker, dest string, msgs ...string) {
	t.Helper()
	p := newClient(t, b)
	p.connect("login:publisher", "passcode:pw")
	for _, m := range msgs {
		p.mustSend(frames.CmdSend, m, "destination:"+dest)
	}
	p.s.Release()
}

// Another user with the same client-id and subscription name gets a
// durable subscription of its own: it cannot read, re-point or remove the
// first user's, whose backlog is intact when it comes back.
func TestDurableOwnedByItsUser(t *testing.T) {
	b := New(Config{Authenticator: anyUserAuth{}})
	alice := userClient(t, b, "alice", "app")
	alice.subscribeDurable("/topic/news", "feed")
	alice.s.Release()
	publish(t, b, "/topic/news", "n1", "n2")

	bob := userClient(t, b, "bob", "app")
	if got := bodies(bob.subscribeDurable("/topic/news", "feed")); len(got) != 0 {
		t.Fatalf("bob with alice's client-id read %v", got)
	}
	bob.mustSend(frames.CmdUnsubscribe, "", "id:feed")
	// Re-pointing and removing name bob's own durable subscription.
	if got := bodies(bob.subscribeDurable("/topic/sports", "feed")); len(got) != 0 {
		t.Fatalf("bob re-pointed and read %v", got)
	}
	bob.mustSend(frames.CmdUnsubscribe, "", "id:feed", "remove-durable:true", "receipt:gone")
	if fs := bob.poll(); len(fs) != 1 || fs[0].Command != frames.CmdReceipt {
		t.Fatalf("remove-durable: %v", commands(fs))
	}
	bob.s.Release()
	if q, d := b.UserQuota(DefaultVirtualHost, "bob"); q != 0 || d != 0 {
		t.Fatalf("bob holds %d queues, %d durables after removing his; want 0, 0", q, d)
	}
	publish(t, b, "/topic/news", "n3")

	again := userClient(t, b, "alice", "app")
	if got := bodies(again.subscribeDurable("/topic/news", "feed")); !slices.Equal(got, []string{"n1", "n2", "n3"}) {
		t.Fatalf("alice after reconnect got %v, want [n1 n2 n3]", got)
	}
	if q, d := b.UserQuota(DefaultVirtualHost, "alice"); q != 0 || d != 1 {
		t.Fatalf("alice holds %d queues, %d durables; want 0, 1", q, d)
	}
}

// Re-pointing or removing a durable subscription discards what it
// collected from its current topic: refused with forbidden once the user
// may no longer read that topic, and the backlog stays.
func TestDurableChangeNeedsCurrentTopic(t *testing.T) {
	tests := []struct {
		name   string
		change func(c *client)
	}{
		{"re-point", func(c *client) {
			_ = c.send(frames.CmdSubscribe, "", "id:feed", "destination:/topic/sports", "durable-subscription-name:feed")
		}},
		{"remove", func(c *client) {
			// client ack: n1 stays unacknowledged and goes back at the end.
			c.mustSend(frames.CmdSubscribe, "", "id:feed", "destination:/topic/news", "durable-subscription-name:feed", "ack:client")
			c.poll()
			az := c.s.b.cfg.Authorizer.(*denyAuthorizer)
			az.set("/topic/news", true)
			_ = c.send(frames.CmdUnsubscribe, "", "id:feed", "remove-durable:true")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			az := &denyAuthorizer{}
			b := New(Config{Authenticator: anyUserAuth{}, Authorizer: az})
			alice := userClient(t, b, "alice", "app")
			alice.subscribeDurable("/topic/news", "feed")
			alice.s.Release()
			publish(t, b, "/topic/news", "n1")

			az.set("/topic/news", true) // the ACL no longer lets alice read news
			c := userClient(t, b, "alice", "app")
			if tt.name == "remove" {
				az.set("/topic/news", false) // attach first, lose the right while attached
			}
			tt.change(c)
			expectError(t, c, CodeForbidden, false)
			c.s.Release()

			az.set("/topic/news", false)
			back := userClient(t, b, "alice", "app")
			if got := bodies(back.subscribeDurable("/topic/news", "feed")); !slices.Equal(got, []string{"n1"}) {
				t.Fatalf("after the refused %s alice got %v, want the backlog [n1]", tt.name, got)
			}
		})
	}
}

// Each user may create MaxQueuesPerUser queues (named and temporary) and
// own MaxDurablesPerUser durable subscriptions: exactly at the limit the
// next one is refused with limit-exceeded, not retryable, while another
// user still creates; a retired queue, an ended session's temporary queues
// and a removed durable give their count back.
func TestUserQuotas(t *testing.T) {
	const limit = 3
	tests := []struct {
		name   string
		create func(c *client, i int) // the i-th creation
		// release gives back one of what c created (returning the client
		// to go on with), and held is what alice holds at the end.
		release func(c *client) *client
		held    int
	}{
		{"queues by SUBSCRIBE", func(c *client, i int) {
			_ = c.send(frames.CmdSubscribe, "", "id:q"+strconv.Itoa(i), "destination:/queue/q"+strconv.Itoa(i))
		}, func(c *client) *client {
			c.mustSend(frames.CmdUnsubscribe, "", "id:q0") // no messages, no consumers: retired
			return c
		}, limit},
		{"queues by SEND", func(c *client, i int) {
			_ = c.send(frames.CmdSend, "x", "destination:/queue/s"+strconv.Itoa(i))
		}, func(c *client) *client {
			c.mustSend(frames.CmdSubscribe, "", "id:drain", "destination:/queue/s0") // auto ack, then retired
			c.mustSend(frames.CmdUnsubscribe, "", "id:drain")
			return c
		}, limit},
		{"temporary queues", func(c *client, i int) {
			_ = c.send(frames.CmdSubscribe, "", "id:t"+strconv.Itoa(i), "destination:/temp-queue/t"+strconv.Itoa(i))
		}, func(c *client) *client {
			c.s.Release() // temporary queues end with their session
			return userClient(c.t.(*testing.T), c.s.b, "alice", "app")
		}, 1},
		{"durables", func(c *client, i int) {
			_ = c.send(frames.CmdSubscribe, "", "id:d"+strconv.Itoa(i), "destination:/topic/t", "durable-subscription-name:d"+strconv.Itoa(i))
		}, func(c *client) *client {
			c.mustSend(frames.CmdUnsubscribe, "", "id:d0", "remove-durable:true")
			return c
		}, limit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := New(Config{Authenticator: anyUserAuth{}, MaxQueuesPerUser: limit, MaxDurablesPerUser: limit})
			alice := userClient(t, b, "alice", "app")
			for i := range limit {
				tt.create(alice, i)
			}
			if fs := alice.poll(); errBody(fs) != "" {
				t.Fatalf("within the quota: %s", errBody(fs))
			}
			over := userClient(t, b, "alice", "app")
			tt.create(over, limit)
			expectError(t, over, CodeLimitExceeded, false)
			over.s.Release()

			bob := userClient(t, b, "bob", "app")
			tt.create(bob, limit)
			if fs := bob.poll(); errBody(fs) != "" {
				t.Fatalf("another user refused: %s", errBody(fs))
			}

			alice = tt.release(alice)
			alice.poll()
			tt.create(alice, limit+1)
			if fs := alice.poll(); errBody(fs) != "" {
				t.Fatalf("after a release: %s", errBody(fs))
			}
			q, d := b.UserQuota(DefaultVirtualHost, "alice")
			if q+d != tt.held {
				t.Fatalf("alice holds %d queues and %d durables, want %d in all", q, d, tt.held)
			}
		})
	}
}

// Durable subscriptions recovered from the journal count against their
// owner again; ones from a journal without owners count against nobody and
// nobody can attach to them.
func TestRecoveredDurablesCount(t *testing.T) {
	j := &memJournal{}
	b := New(Config{Authenticator: anyUserAuth{}, Journal: j, MaxDurablesPerUser: 2})
	alice := userClient(t, b, "alice", "app")
	alice.subscribeDurable("/topic/a", "d1")
	alice.subscribeDurable("/topic/b", "d2")
	alice.s.Release()
	legacy := DurableSpec{ClientID: "app", Name: "d1", Topic: "a", Unowned: true}
	_ = j.Append(context.Background(), JournalRecord{Op: OpDurableCreate, Queue: "/durable/app/d1", Durable: legacy},
		JournalRecord{Op: OpEnqueue, Queue: "/durable/app/d1", MessageID: "old-1",
			Message: RecoveredMessage("old-1", "/topic/a", []frames.Header{{Key: []byte("destination"), Value: []byte("/topic/a")}}, []byte("old"), true, 0)})

	b2 := New(Config{Authenticator: anyUserAuth{}, Journal: j, MaxDurablesPerUser: 2})
	if err := b2.Recover(); err != nil {
		t.Fatal(err)
	}
	if q, d := b2.UserQuota(DefaultVirtualHost, "alice"); q != 0 || d != 2 {
		t.Fatalf("after recovery alice holds %d queues, %d durables; want 0, 2", q, d)
	}
	if n := len(b2.spaces[DefaultVirtualHost].durables); n != 3 {
		t.Fatalf("%d durables recovered, want 3 (two owned, one unowned)", n)
	}
	over := userClient(t, b2, "alice", "app")
	_ = over.send(frames.CmdSubscribe, "", "id:d3", "destination:/topic/c", "durable-subscription-name:d3")
	expectError(t, over, CodeLimitExceeded, false)

	// Her own d1 is found again; the unowned d1 with the same client-id and
	// name (and its message) is not hers, nor anyone's.
	for _, user := range []string{"alice", ""} {
		login := user
		if login == "" {
			login = "mallory"
		}
		c := userClient(t, b2, login, "app")
		if got := bodies(c.subscribeDurable("/topic/a", "d1")); len(got) != 0 {
			t.Fatalf("%s read the unowned durable's backlog: %v", login, got)
		}
		c.s.Release()
	}
}

// A durable subscription nobody consumed for DurableIdleTTL is removed
// with its backlog (journaled), and its quota given back; one with a
// consumer, or idle for less, stays.
func TestDurableIdleTTL(t *testing.T) {
	clock := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }
	j := &memJournal{}
	b := New(Config{Authenticator: anyUserAuth{}, Journal: j, DurableIdleTTL: time.Hour, Now: now})

	away := userClient(t, b, "alice", "away")
	away.subscribeDurable("/topic/news", "feed")
	away.s.Release()
	here := userClient(t, b, "alice", "here")
	here.subscribeDurable("/topic/news", "feed")
	publish(t, b, "/topic/news", "n1")

	advance(59 * time.Minute)
	if n := b.SweepIdleDurables(now()); n != 0 {
		t.Fatalf("swept %d durables idle for 59m under a 1h TTL", n)
	}
	advance(2 * time.Minute)
	if n := b.SweepIdleDurables(now()); n != 1 {
		t.Fatalf("swept %d durables, want 1 (the one idle for 61m; not the attached one)", n)
	}
	last := j.all()
	if r := last[len(last)-1]; r.Op != OpDurableDelete || r.Durable.ClientID != "away" || r.Durable.User != "alice" {
		t.Fatalf("last journal record %v %+v, want durable-delete of alice/away/feed", r.Op, r.Durable)
	}
	if _, d := b.UserQuota(DefaultVirtualHost, "alice"); d != 1 {
		t.Fatalf("alice holds %d durables after the sweep, want 1", d)
	}
	back := userClient(t, b, "alice", "away")
	if got := bodies(back.subscribeDurable("/topic/news", "feed")); len(got) != 0 {
		t.Fatalf("swept durable's backlog came back: %v", got)
	}
	if got := bodies(here.poll()); !slices.Equal(got, []string{"n1"}) {
		t.Fatalf("attached durable got %v, want [n1]", got)
	}
	if n := New(Config{}).SweepIdleDurables(now().Add(1000 * time.Hour)); n != 0 {
		t.Fatalf("without a TTL swept %d", n)
	}
}

// Every part of a durable subscription's queue (and journal) name is
// escaped: no two different owners, client ids and names share one, and
// the unowned form of older journals meets no owned one.
func TestDurableQueueNamesDoNotCollide(t *testing.T) {
	specs := []DurableSpec{
		{User: "a/b", ClientID: "c", Name: "d"},
		{User: "a", ClientID: "b/c", Name: "d"},
		{User: "a", ClientID: "b", Name: "c/d"},
		{User: "", ClientID: "a", Name: "b/c/d"},
		{ClientID: "a", Name: "b", Unowned: true},
		{User: "a", ClientID: "b", Unowned: true},
		{User: "", ClientID: "a", Name: "b"},
		{User: "a%2Fb", ClientID: "c", Name: "d"},
	}
	seen := map[string]DurableSpec{}
	for _, s := range specs {
		name := durableQueueName(s)
		if other, dup := seen[name]; dup {
			t.Fatalf("%+v and %+v share the queue %q", s, other, name)
		}
		seen[name] = s
	}
}

// The idle sweep racing SUBSCRIBEs never removes a durable subscription
// that a connection attached to: a SUBSCRIBE either attaches to a live one
// (which then gets what is published) or is refused as in use, retryable.
func TestIdleSweepRacesAttach(t *testing.T) {
	b := New(Config{Authenticator: anyUserAuth{}, DurableIdleTTL: time.Nanosecond})
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				b.SweepIdleDurables(time.Now().Add(time.Hour))
			}
		}
	}()
	defer func() { close(stop); <-done }()
	pub := userClient(t, b, "publisher", "")
	attached := 0
	for i := range 300 {
		c := userClient(t, b, "alice", "app")
		_ = c.send(frames.CmdSubscribe, "", "id:feed", "destination:/topic/news", "durable-subscription-name:feed", "receipt:r")
		fs := c.poll()
		if len(fs) == 1 && fs[0].Command == frames.CmdError && hdr(fs[0], "error-code") == CodeSubscriptionInUse && hdr(fs[0], "retryable") == "true" {
			c.s.Release()
			continue
		}
		if len(fs) != 1 || fs[0].Command != frames.CmdReceipt {
			t.Fatalf("SUBSCRIBE %d: %v (%s)", i, commands(fs), errBody(fs))
		}
		attached++
		body := "m" + strconv.Itoa(i)
		pub.mustSend(frames.CmdSend, body, "destination:/topic/news")
		if got := bodies(c.poll()); !slices.Equal(got, []string{body}) {
			t.Fatalf("attached durable %d got %v, want [%s]: it was swept while attached", i, got, body)
		}
		c.s.Release()
	}
	if attached == 0 {
		t.Fatal("no SUBSCRIBE attached in 300 tries")
	}
	t.Logf("%d of 300 SUBSCRIBEs attached while the sweep ran", attached)
}

// anonOrUser makes an empty login anonymous and any other login a user of
// that name, "anonymous" included.
type anonOrUser struct{}

func (anonOrUser) Authenticate(_ context.Context, c Credentials) (*Principal, error) {
	if c.Login == "" {
		return &Principal{Name: "anonymous", Anonymous: true}, nil
	}
	return &Principal{Name: c.Login}, nil
}

// A user who happens to be called "anonymous" does not get the durable
// subscriptions anonymous clients created, nor they its.
func TestAnonymousDurablesAreNobodysUser(t *testing.T) {
	b := New(Config{Authenticator: anonOrUser{}})
	anon := newClient(t, b)
	anon.connect("client-id:app")
	anon.subscribeDurable("/topic/news", "feed")
	anon.s.Release()
	publish(t, b, "/topic/news", "n1")

	named := newClient(t, b)
	named.connect("login:anonymous", "client-id:app")
	if got := bodies(named.subscribeDurable("/topic/news", "feed")); len(got) != 0 {
		t.Fatalf("the user called anonymous read %v of the anonymous clients' durable", got)
	}
	named.s.Release()
	again := newClient(t, b)
	again.connect("client-id:app")
	if got := bodies(again.subscribeDurable("/topic/news", "feed")); !slices.Equal(got, []string{"n1"}) {
		t.Fatalf("the anonymous client got %v back, want n1", got)
	}
	if q, d := b.UserQuota(DefaultVirtualHost, "anonymous"); q != 0 || d != 1 {
		t.Fatalf("user anonymous holds %d queues, %d durables; want only its own durable", q, d)
	}
}

// gatedJournal holds every durable-create Append until release is closed,
// saying on entered when one arrives.
type gatedJournal struct {
	memJournal
	entered chan struct{}
	release chan struct{}
}

func (j *gatedJournal) Append(ctx context.Context, recs ...JournalRecord) error {
	if len(recs) > 0 && recs[0].Op == OpDurableCreate {
		j.entered <- struct{}{}
		<-j.release
	}
	return j.memJournal.Append(ctx, recs...)
}

// A new durable subscription belongs to the connection creating it while
// its create record is being journaled: another connection of the same
// user and client-id is told it is in use, rather than attaching to a
// subscription that a failed journal write would leave without a record.
func TestDurableHeldWhileItsCreateIsJournaled(t *testing.T) {
	j := &gatedJournal{entered: make(chan struct{}, 1), release: make(chan struct{})}
	b := New(Config{Authenticator: anyUserAuth{}, Journal: j})
	first := userClient(t, b, "alice", "app")
	done := make(chan []*frames.Frame, 1)
	go func() {
		if err := first.send(frames.CmdSubscribe, "", "id:feed", "destination:/topic/news", "durable-subscription-name:feed", "receipt:r"); err != nil {
			done <- nil
			return
		}
		done <- first.poll()
	}()
	select {
	case <-j.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the durable's create record never reached the journal")
	}
	second := userClient(t, b, "alice", "app")
	_ = second.send(frames.CmdSubscribe, "", "id:feed", "destination:/topic/news", "durable-subscription-name:feed", "receipt:r")
	fs := second.poll()
	close(j.release)
	if len(fs) == 0 || fs[len(fs)-1].Command != frames.CmdError || hdr(fs[len(fs)-1], "error-code") != CodeSubscriptionInUse {
		t.Fatalf("second SUBSCRIBE while the create is journaled: %v (%s), want ERROR subscription-in-use", commands(fs), errBody(fs))
	}
	got := <-done
	if len(got) == 0 || got[0].Command != frames.CmdReceipt {
		t.Fatalf("first SUBSCRIBE: %v (%s), want its RECEIPT", commands(got), errBody(got))
	}
}
