package broker

import (
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stompbox/stompbox/frames"
)

// presenceClock is an injected Config.Now that tests move by hand.
type presenceClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *presenceClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// advance moves the clock by d and returns the new time.
func (c *presenceClock) advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return c.now
}

// presenceBroker is a broker with a fake clock and a 10s grace period.
func presenceBroker(t *testing.T, cfg Config) (*Broker, *presenceClock) {
	t.Helper()
	clock := &presenceClock{now: time.Unix(1_700_000_000, 0)}
	cfg.Now = clock.Now
	return New(cfg), clock
}

// connectAs is a connected client of user.
func connectAs(t *testing.T, b *Broker, user string) *client {
	t.Helper()
	c := newClient(t, b)
	c.connect("login:" + user)
	return c
}

// member subscribes c to /topic/<topic> with presence:true and extra
// headers (presence-id, presence-info), and waits for its RECEIPT.
func member(t *testing.T, c *client, id, topic string, headers ...string) {
	t.Helper()
	c.mustSend(frames.CmdSubscribe, "", append([]string{"id:" + id, "destination:/topic/" + topic,
		"presence:true", "receipt:r-" + id}, headers...)...)
	if f := c.next(); f.Command != frames.CmdReceipt {
		t.Fatalf("SUBSCRIBE presence:true got %s (%s), want RECEIPT", f.Command, f.Body)
	}
}

// watch subscribes c to /presence/<topic> and returns the snapshot's body.
func watch(t *testing.T, c *client, id, topic string) string {
	t.Helper()
	c.mustSend(frames.CmdSubscribe, "", "id:"+id, "destination:/presence/"+topic, "receipt:w-"+id)
	fs := c.poll()
	if len(fs) != 2 || fs[0].Command != frames.CmdReceipt || fs[1].Command != frames.CmdMessage {
		t.Fatalf("SUBSCRIBE /presence/%s got %v, want RECEIPT then the snapshot", topic, commands(fs))
	}
	snap := fs[1]
	want := []string{"subscription:" + id, "message-id:" + hdr(snap, "message-id"), "destination:/presence/" + topic,
		"content-type:application/json", "presence-event:snapshot", "content-length:" + strconv.Itoa(len(snap.Body))}
	if got := headerLines(snap); !slices.Equal(got, want) || hdr(snap, "message-id") == "" {
		t.Fatalf("snapshot headers\n got %q\nwant %q", got, want)
	}
	return string(snap.Body)
}

// events polls c and returns its presence events as "event body" lines.
func events(t *testing.T, c *client) []string {
	t.Helper()
	var got []string
	for _, f := range c.poll() {
		if f.Command != frames.CmdMessage || hdr(f, "presence-event") == "" {
			t.Fatalf("got %s %q, want presence events", f.Command, headerLines(f))
		}
		got = append(got, hdr(f, "presence-event")+" "+string(f.Body))
	}
	return got
}

func expectEvents(t *testing.T, c *client, want ...string) {
	t.Helper()
	if got := events(t, c); !slices.Equal(got, want) {
		t.Fatalf("presence events\n got %q\nwant %q", got, want)
	}
}

// A watcher gets the snapshot, then a join with the member's exact JSON,
// and the leave only once the grace period has passed after UNSUBSCRIBE.
func TestPresenceSnapshotJoinLeave(t *testing.T) {
	b, clock := presenceBroker(t, Config{})
	w := connectAs(t, b, "watcher")
	if snap := watch(t, w, "p", "chat.lobby"); snap != `{"members":[]}` {
		t.Fatalf("empty snapshot %s", snap)
	}
	alice := connectAs(t, b, "alice")
	member(t, alice, "s1", "chat.lobby", "presence-id:tab1", "presence-info:Alice")
	fs := w.poll()
	if len(fs) != 1 {
		t.Fatalf("watcher got %v, want one join", commands(fs))
	}
	join := fs[0]
	want := []string{"subscription:p", "message-id:" + hdr(join, "message-id"), "destination:/presence/chat.lobby",
		"content-type:application/json", "presence-event:join", "content-length:" + strconv.Itoa(len(join.Body))}
	if got := headerLines(join); !slices.Equal(got, want) {
		t.Fatalf("join headers\n got %q\nwant %q", got, want)
	}
	if string(join.Body) != `{"user":"alice","id":"tab1","info":"Alice"}` {
		t.Fatalf("join body %s", join.Body)
	}
	bob := connectAs(t, b, "bob")
	member(t, bob, "s1", "chat.lobby")
	expectEvents(t, w, `join {"user":"bob","id":"","info":""}`)

	w2 := connectAs(t, b, "late")
	if snap := watch(t, w2, "p2", "chat.lobby"); snap !=
		`{"members":[{"user":"alice","id":"tab1","info":"Alice"},{"user":"bob","id":"","info":""}]}` {
		t.Fatalf("snapshot %s", snap)
	}

	alice.mustSend(frames.CmdUnsubscribe, "", "id:s1")
	if n := b.SweepPresence(clock.advance(DefaultPresenceGrace - time.Millisecond)); n != 0 {
		t.Fatalf("%d left before the grace period ended", n)
	}
	expectEvents(t, w)
	if n := b.SweepPresence(clock.advance(time.Millisecond)); n != 1 {
		t.Fatalf("SweepPresence at the end of the grace period = %d, want 1", n)
	}
	leave := `leave {"user":"alice","id":"tab1","info":"Alice"}`
	expectEvents(t, w, leave)
	expectEvents(t, w2, leave)
	if n := b.SweepPresence(clock.advance(time.Hour)); n != 0 {
		t.Fatalf("a second sweep let %d leave", n)
	}
	expectEvents(t, w)
}

// A connection that ends and comes back within the grace period makes no
// leave and no join; coming back with other info is a join carrying it;
// one that stays away longer makes exactly one leave.
func TestPresenceGrace(t *testing.T) {
	b, clock := presenceBroker(t, Config{})
	w := connectAs(t, b, "watcher")
	watch(t, w, "p", "room")
	first := connectAs(t, b, "alice")
	member(t, first, "s", "room", "presence-id:tab", "presence-info:A")
	expectEvents(t, w, `join {"user":"alice","id":"tab","info":"A"}`)

	first.s.Release() // the network dropped
	b.SweepPresence(clock.advance(5 * time.Second))
	again := connectAs(t, b, "alice")
	member(t, again, "s", "room", "presence-id:tab", "presence-info:A")
	b.SweepPresence(clock.advance(time.Minute))
	expectEvents(t, w) // no leave, no join

	again.s.Release()
	b.SweepPresence(clock.advance(9 * time.Second))
	renamed := connectAs(t, b, "alice")
	member(t, renamed, "s", "room", "presence-id:tab", "presence-info:Alice B.")
	expectEvents(t, w, `join {"user":"alice","id":"tab","info":"Alice B."}`)

	renamed.s.Release()
	b.SweepPresence(clock.advance(DefaultPresenceGrace + time.Second))
	b.SweepPresence(clock.advance(time.Minute))
	expectEvents(t, w, `leave {"user":"alice","id":"tab","info":"Alice B."}`)
	if snap := watch(t, w, "p2", "room"); snap != `{"members":[]}` {
		t.Fatalf("snapshot after the leave %s", snap)
	}
}

// Tabs with a presence-id are one member each; connections of one user
// without presence-id are one member, present until the last is gone.
func TestPresenceTabsAndUsers(t *testing.T) {
	b, clock := presenceBroker(t, Config{})
	w := connectAs(t, b, "watcher")
	watch(t, w, "p", "room")
	tab1, tab2 := connectAs(t, b, "alice"), connectAs(t, b, "alice")
	member(t, tab1, "s", "room", "presence-id:1")
	member(t, tab2, "s", "room", "presence-id:2")
	expectEvents(t, w, `join {"user":"alice","id":"1","info":""}`, `join {"user":"alice","id":"2","info":""}`)

	phone, laptop := connectAs(t, b, "bob"), connectAs(t, b, "bob")
	member(t, phone, "s", "room")
	member(t, laptop, "s", "room")
	member(t, laptop, "s2", "room") // a second subscription of the same connection
	expectEvents(t, w, `join {"user":"bob","id":"","info":""}`)
	if snap := watch(t, w, "p2", "room"); snap != `{"members":[{"user":"alice","id":"1","info":""},`+
		`{"user":"alice","id":"2","info":""},{"user":"bob","id":"","info":""}]}` {
		t.Fatalf("snapshot %s", snap)
	}

	tab2.s.Release()
	phone.s.Release()
	b.SweepPresence(clock.advance(time.Hour))
	expectEvents(t, w, `leave {"user":"alice","id":"2","info":""}`, `leave {"user":"alice","id":"2","info":""}`)
	laptop.mustSend(frames.CmdUnsubscribe, "", "id:s")
	b.SweepPresence(clock.advance(time.Hour))
	expectEvents(t, w) // s2 still holds bob
	laptop.s.Release()
	b.SweepPresence(clock.advance(time.Hour))
	expectEvents(t, w, `leave {"user":"bob","id":"","info":""}`, `leave {"user":"bob","id":"","info":""}`)
}

// With a negative grace period a member leaves as soon as its last
// subscription ends.
func TestPresenceWithoutGrace(t *testing.T) {
	b, _ := presenceBroker(t, Config{PresenceGrace: -1})
	w := connectAs(t, b, "watcher")
	watch(t, w, "p", "room")
	alice := connectAs(t, b, "alice")
	member(t, alice, "s", "room")
	alice.s.Release()
	expectEvents(t, w, `join {"user":"alice","id":"","info":""}`, `leave {"user":"alice","id":"","info":""}`)
	if b.PresenceSweepInterval() != 0 {
		t.Fatalf("PresenceSweepInterval = %v without a grace period", b.PresenceSweepInterval())
	}
}

// Bad presence headers and presence destinations used wrongly get a clear
// ERROR.
func TestPresenceRefusals(t *testing.T) {
	long := strings.Repeat("i", MaxPresenceInfo+1)
	tests := []struct {
		name      string
		cmd       frames.Command
		headers   []string
		code      string
		retryable bool
	}{
		{"presence-info over 1 KiB", frames.CmdSubscribe,
			[]string{"id:s", "destination:/topic/room", "presence:true", "presence-info:" + long}, CodeInvalidHeader, false},
		{"presence-id over max_id_length", frames.CmdSubscribe,
			[]string{"id:s", "destination:/topic/room", "presence:true", "presence-id:" + strings.Repeat("x", DefaultMaxIDLength+1)},
			CodeInvalidHeader, false},
		{"presence neither true nor false", frames.CmdSubscribe,
			[]string{"id:s", "destination:/topic/room", "presence:yes"}, CodeInvalidHeader, false},
		{"presence on a wildcard", frames.CmdSubscribe,
			[]string{"id:s", "destination:/topic/room.*", "presence:true"}, CodeInvalidHeader, false},
		{"presence on a queue", frames.CmdSubscribe,
			[]string{"id:s", "destination:/queue/room", "presence:true"}, CodeInvalidHeader, false},
		{"presence on a durable subscription", frames.CmdSubscribe,
			[]string{"id:s", "destination:/topic/room", "presence:true", "durable-subscription-name:d"}, CodeInvalidHeader, false},
		{"client ack on a presence destination", frames.CmdSubscribe,
			[]string{"id:s", "destination:/presence/room", "ack:client"}, CodeInvalidHeader, false},
		{"wildcard presence destination", frames.CmdSubscribe,
			[]string{"id:s", "destination:/presence/room.#"}, CodeInvalidDestination, false},
		{"empty presence destination", frames.CmdSubscribe,
			[]string{"id:s", "destination:/presence/"}, CodeInvalidDestination, false},
		{"SEND to a presence destination", frames.CmdSend,
			[]string{"destination:/presence/room"}, CodeForbidden, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := New(Config{})
			c := connectAs(t, b, "alice")
			if err := c.send(tc.cmd, "", tc.headers...); !isClosed(err) {
				t.Fatalf("Feed = %v, want the session closed", err)
			}
			expectError(t, c, tc.code, tc.retryable)
			c.s.Release()
		})
	}
	// Exactly 1 KiB is accepted.
	b := New(Config{})
	c := connectAs(t, b, "alice")
	member(t, c, "s", "room", "presence-info:"+strings.Repeat("i", MaxPresenceInfo))
}

// Reading /presence/x needs the subscribe right on /topic/x.
func TestPresenceAuthorization(t *testing.T) {
	b := New(Config{Authorizer: prefixAuthorizer{subscribe: []string{"/topic/public."}}})
	ok := connectAs(t, b, "alice")
	if snap := watch(t, ok, "p", "public.room"); snap != `{"members":[]}` {
		t.Fatalf("snapshot %s", snap)
	}
	denied := connectAs(t, b, "alice")
	if err := denied.send(frames.CmdSubscribe, "", "id:p", "destination:/presence/secret.room"); !isClosed(err) {
		t.Fatalf("Feed = %v, want the session closed", err)
	}
	expectError(t, denied, CodeForbidden, false)
}

// The members of a set and the sets of a virtual host are bounded; past
// either SUBSCRIBE gets ERROR limit-exceeded (retryable), and the refused
// subscription is not left on its topic.
func TestPresenceLimits(t *testing.T) {
	b := New(Config{MaxPresenceMembers: 2, MaxPresenceSets: 2, PresenceGrace: -1})
	for _, user := range []string{"a", "b"} {
		member(t, connectAs(t, b, user), "s", "room")
	}
	c := connectAs(t, b, "c")
	if err := c.send(frames.CmdSubscribe, "", "id:s", "destination:/topic/room", "presence:true"); !isClosed(err) {
		t.Fatalf("Feed = %v, want the session closed", err)
	}
	expectError(t, c, CodeLimitExceeded, true)
	if exact, _ := b.spaces[DefaultVirtualHost].topics.match("room"); exact.live.Load() != 2 {
		t.Fatalf("topic room has %d subscribers, want 2: the refused one stayed", exact.live.Load())
	}
	c.s.Release()

	w := connectAs(t, b, "w")
	watch(t, w, "p", "other") // the second set
	third := connectAs(t, b, "w")
	if err := third.send(frames.CmdSubscribe, "", "id:p", "destination:/presence/third"); !isClosed(err) {
		t.Fatalf("Feed = %v, want the session closed", err)
	}
	expectError(t, third, CodeLimitExceeded, true)
	third.s.Release()
	joiner := connectAs(t, b, "j")
	if err := joiner.send(frames.CmdSubscribe, "", "id:s", "destination:/topic/third", "presence:true"); !isClosed(err) {
		t.Fatalf("Feed = %v, want the session closed", err)
	}
	expectError(t, joiner, CodeLimitExceeded, true)
	joiner.s.Release()

	// A set whose members left and watchers went is forgotten: room for another.
	w.s.Release()
	member(t, connectAs(t, b, "x"), "s", "fourth")
	if got := len(b.spaces[DefaultVirtualHost].presence.sets); got != 2 {
		t.Fatalf("%d presence sets, want 2", got)
	}
}

// Presence sets are per virtual host: a member of room in one is not in
// room of another.
func TestPresencePerVirtualHost(t *testing.T) {
	b := New(Config{VirtualHosts: []string{"a", "b"}})
	in := func(host, user string) *client {
		c := newClient(t, b)
		c.connect("login:"+user, "host:"+host)
		return c
	}
	member(t, in("a", "alice"), "s", "room", "presence-info:in a")
	if snap := watch(t, in("b", "w"), "p", "room"); snap != `{"members":[]}` {
		t.Fatalf("virtual host b sees %s", snap)
	}
	if snap := watch(t, in("a", "w"), "p", "room"); snap != `{"members":[{"user":"alice","id":"","info":"in a"}]}` {
		t.Fatalf("virtual host a sees %s", snap)
	}
}

// A presence subscription's presence-info and presence-id are charged to
// its connection's budget until it ends; past the budget SUBSCRIBE gets
// ERROR limit-exceeded, not retryable (the connection's own limit).
func TestPresenceChargedToBudget(t *testing.T) {
	b := New(Config{MaxConnectionBytes: 4 << 10})
	c := connectAs(t, b, "alice")
	info := "presence-info:" + strings.Repeat("i", 1000) // 1004 bytes with the id: four fit, with room for a RECEIPT
	for i := range 4 {
		member(t, c, "s"+strconv.Itoa(i), "room"+strconv.Itoa(i), info, "presence-id:tab"+strconv.Itoa(i))
	}
	if held := c.s.budget.held(); held != 4*1004 {
		t.Fatalf("budget holds %d bytes, want %d", held, 4*1004)
	}
	c.mustSend(frames.CmdUnsubscribe, "", "id:s0")
	member(t, c, "s0", "room0", info, "presence-id:tab0") // the UNSUBSCRIBE gave its share back
	if err := c.send(frames.CmdSubscribe, "", "id:s4", "destination:/topic/room4", "presence:true", "presence-info:"+strings.Repeat("x", 100)); !isClosed(err) {
		t.Fatalf("Feed = %v, want the session closed", err)
	}
	expectError(t, c, CodeLimitExceeded, false)
	c.s.Release()
	if held := c.s.budget.held(); held != 0 {
		t.Fatalf("budget holds %d bytes after the session ended", held)
	}
}

// A presence SUBSCRIBE to a topic with history that presence refuses (its
// limits) gets only the ERROR: no RECEIPT and no replay first, and the
// topic keeps no subscriber from it. Both with and without history asked.
func TestPresenceRefusedBeforeHistoryReceipt(t *testing.T) {
	for _, extra := range []string{"history:5", "resume-after:00000000-0"} {
		b := New(Config{TopicHistory: []HistoryRule{{Pattern: "/topic/room", Size: 10}}, MaxPresenceSets: 1})
		sp := b.spaces[DefaultVirtualHost]
		pub := newClient(t, b)
		pub.connect()
		pub.mustSend(frames.CmdSend, "hi", "destination:/topic/room")
		w := newClient(t, b)
		w.connect()
		w.mustSend(frames.CmdSubscribe, "", "id:w", "destination:/presence/other") // the one set allowed
		w.poll()
		c := newClient(t, b)
		c.connect()
		_ = c.send(frames.CmdSubscribe, "", "id:1", "destination:/topic/room", extra, "presence:true", "receipt:r")
		fs := c.poll()
		if len(fs) != 1 || fs[0].Command != frames.CmdError || hdr(fs[0], "error-code") != CodeLimitExceeded {
			t.Fatalf("%s: got %v, want only ERROR limit-exceeded", extra, commands(fs))
		}
		if sp.topics.hasExact("room") {
			t.Fatalf("%s: the refused subscription stayed on the topic", extra)
		}
	}
}
