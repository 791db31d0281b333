package cluster_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/server/cluster/clustertest"
)

// dialAs connects a go-stomp client to the node as user (no
// authenticator: the login is the principal's name).
func (n *node) dialAs(t testing.TB, user string) *stomp.Conn {
	t.Helper()
	c, err := stomp.Dial("tcp", n.addr, stomp.ConnOpt.HeartBeat(0, 0), stomp.ConnOpt.Login(user, "x"))
	if err != nil {
		t.Fatalf("dial %s: %v", n.addr, err)
	}
	t.Cleanup(func() { _ = c.Disconnect() })
	return c
}

// joinPresence subscribes c to /topic/<topic> as a presence member with
// presence-id id and presence-info info.
func joinPresence(t testing.TB, c *stomp.Conn, topic, id, info string) *stomp.Subscription {
	t.Helper()
	sub, err := c.Subscribe("/topic/"+topic, stomp.AckAuto,
		stomp.SubscribeOpt.Header("presence", "true"),
		stomp.SubscribeOpt.Header("presence-id", id),
		stomp.SubscribeOpt.Header("presence-info", info))
	if err != nil {
		t.Fatalf("presence SUBSCRIBE: %v", err)
	}
	return sub
}

// presenceEvent is the next event on a /presence/ subscription as
// "<presence-event> <body>", within timeout.
func presenceEvent(t testing.TB, sub *stomp.Subscription, timeout time.Duration) string {
	t.Helper()
	m := recv(t, sub, timeout)
	return m.Header.Get("presence-event") + " " + string(m.Body)
}

// watchUntil subscribes a connection of n to /presence/<topic> until its
// snapshot is want (the members of other nodes reach n asynchronously),
// and returns that subscription.
func watchUntil(t testing.TB, n *node, topic, want string) *stomp.Subscription {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		// A connection per attempt: go-stomp would wait for an
		// UNSUBSCRIBE's receipt behind events queued for the old
		// subscription.
		c := n.dialAs(t, "watcher")
		sub, err := c.Subscribe("/presence/"+topic, stomp.AckAuto)
		if err != nil {
			t.Fatal(err)
		}
		got := presenceEvent(t, sub, 5*time.Second)
		if got == "snapshot "+want {
			return sub
		}
		if time.Now().After(deadline) {
			t.Fatalf("snapshot of /presence/%s on %s is %s, want %s", topic, n.addr, got, want)
		}
		_ = c.MustDisconnect()
		time.Sleep(50 * time.Millisecond)
	}
}

const (
	testGrace = 800 * time.Millisecond
	testTTL   = 3 * time.Second
)

func presenceOpts() nodeOpts {
	return nodeOpts{broker: broker.Config{PresenceGrace: testGrace}, presenceTTL: testTTL}
}

// A member on A is in the snapshot of a watcher on B, which then sees a
// member join on C and A's member leave once A's grace period passed.
func TestClusterPresenceAcrossNodes(t *testing.T) {
	_, n := threeNodes(t, presenceOpts())
	alice := n[0].dialAs(t, "alice")
	aliceSub := joinPresence(t, alice, "chat.room", "tab1", "Alice")
	w := watchUntil(t, n[1], "chat.room", `{"members":[{"user":"alice","id":"tab1","info":"Alice"}]}`)

	joinPresence(t, n[2].dialAs(t, "bob"), "chat.room", "b", "Bob")
	if got := presenceEvent(t, w, 10*time.Second); got != `join {"user":"bob","id":"b","info":"Bob"}` {
		t.Fatalf("watcher on B got %s, want bob's join", got)
	}
	// A watcher on A sees both too, bob from C included.
	watchUntil(t, n[0], "chat.room",
		`{"members":[{"user":"alice","id":"tab1","info":"Alice"},{"user":"bob","id":"b","info":"Bob"}]}`)

	left := time.Now()
	if err := aliceSub.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	if got := presenceEvent(t, w, 10*time.Second); got != `leave {"user":"alice","id":"tab1","info":"Alice"}` {
		t.Fatalf("watcher on B got %s, want alice's leave", got)
	}
	if d := time.Since(left); d < testGrace {
		t.Fatalf("alice left after %v, within her grace period of %v", d, testGrace)
	}
	none(t, w, 300*time.Millisecond)
}

// A member that drops its connection to A and joins on C within the grace
// period makes no event on any node.
func TestClusterPresenceMoveWithinGrace(t *testing.T) {
	_, n := threeNodes(t, nodeOpts{broker: broker.Config{PresenceGrace: 2 * time.Second}, presenceTTL: testTTL})
	onA := n[0].dialAs(t, "carol")
	joinPresence(t, onA, "lobby", "p", "Carol")
	const snap = `{"members":[{"user":"carol","id":"p","info":"Carol"}]}`
	wb := watchUntil(t, n[1], "lobby", snap)
	wa := watchUntil(t, n[0], "lobby", snap)

	if err := onA.Disconnect(); err != nil {
		t.Fatal(err)
	}
	joinPresence(t, n[2].dialAs(t, "carol"), "lobby", "p", "Carol")
	// A's grace period (2s) passes while C holds carol: nothing happens.
	none(t, wb, 4*time.Second)
	none(t, wa, 0)
	watchUntil(t, n[0], "lobby", snap)
	watchUntil(t, n[2], "lobby", snap)
}

// A node that dies cannot delete its members: they leave the other nodes'
// sets once they are not refreshed within the presence TTL.
func TestClusterPresenceCrashedNodeLeaves(t *testing.T) {
	_, n := threeNodes(t, presenceOpts())
	joinPresence(t, n[0].dialAs(t, "dave"), "ops", "d", "Dave")
	joinPresence(t, n[2].dialAs(t, "erin"), "ops", "e", "Erin")
	w := watchUntil(t, n[1], "ops",
		`{"members":[{"user":"dave","id":"d","info":"Dave"},{"user":"erin","id":"e","info":"Erin"}]}`)

	crashed := time.Now()
	n[0].crash()
	got := presenceEvent(t, w, testTTL+5*time.Second)
	if got != `leave {"user":"dave","id":"d","info":"Dave"}` {
		t.Fatalf("watcher on B got %s, want dave's leave", got)
	}
	// dave's key was refreshed at most TTL/3 before the crash.
	if d := time.Since(crashed); d < testTTL/2 {
		t.Fatalf("dave left %v after the crash: not by the TTL (%v)", d, testTTL)
	}
	none(t, w, 500*time.Millisecond)
	watchUntil(t, n[2], "ops", `{"members":[{"user":"erin","id":"e","info":"Erin"}]}`)
}

// Presence keys are valid KV keys for any names, and distinct.
func TestClusterPresenceOddNames(t *testing.T) {
	_, n := threeNodes(t, presenceOpts())
	odd := "room/ü " + strings.Repeat("x", 300) // escaped, and past the readable key length
	joinPresence(t, n[0].dialAs(t, "user.with.dots"), odd, "", "")
	joinPresence(t, n[2].dialAs(t, "user.with.dots"), odd, "tab", "")
	watchUntil(t, n[1], odd,
		`{"members":[{"user":"user.with.dots","id":"","info":""},{"user":"user.with.dots","id":"tab","info":""}]}`)
}

// While NATS is down a node hears of no change: after the TTL it drops the
// other nodes' members. Once NATS is back, the members held meanwhile (one
// joined during the outage) come back through the refreshes.
func TestClusterPresenceNATSDownAndBack(t *testing.T) {
	nats := clustertest.StartNATS(t, 1)
	a := startNode(t, nats.URLs(), "node-a", presenceOpts())
	b := startNode(t, nats.URLs(), "node-b", presenceOpts())
	joinPresence(t, a.dialAs(t, "frank"), "hall", "f", "Frank")
	w := watchUntil(t, b, "hall", `{"members":[{"user":"frank","id":"f","info":"Frank"}]}`)

	nats.Kill(0)
	joinPresence(t, a.dialAs(t, "gina"), "hall", "g", "Gina")
	if got := presenceEvent(t, w, testTTL+5*time.Second); got != `leave {"user":"frank","id":"f","info":"Frank"}` {
		t.Fatalf("watcher on B got %s while NATS was down, want frank's leave after the TTL", got)
	}

	nats.Restart(0)
	got := []string{presenceEvent(t, w, 10*time.Second), presenceEvent(t, w, 5*time.Second)}
	slices.Sort(got)
	want := []string{`join {"user":"frank","id":"f","info":"Frank"}`, `join {"user":"gina","id":"g","info":"Gina"}`}
	if !slices.Equal(got, want) {
		t.Fatalf("watcher on B got %q once NATS was back, want %q", got, want)
	}
	none(t, w, 500*time.Millisecond)
}
