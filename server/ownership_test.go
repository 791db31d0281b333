package server

import (
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"

	"github.com/stompbox/stompbox/broker"
)

// replyAddress is a rewritten reply-to of /temp-queue/replies: 128 random
// bits in hex, not the session id.
var replyAddress = regexp.MustCompile(`^/reply-queue/[0-9a-f]{32}/replies$`)

// Over the network, with go-stomp: a second user connecting with the first
// one's client-id and subscription name gets a durable subscription of its
// own (it sees only what is published after it subscribed), and the owner
// gets its whole backlog after reconnecting.
func TestDurableOwnedAcrossConnections(t *testing.T) {
	srv := startServer(t, Config{}) // the default Authenticator: the login is the user
	as := func(user string) func(*stomp.Conn) error { return stomp.ConnOpt.Login(user, "any") }
	clientID := stomp.ConnOpt.Header("client-id", "shared-app")
	pub := dialGS(t, srv, as("publisher"))

	alice := dialGS(t, srv, as("alice"), clientID)
	alice.subscribe("/topic/orders", stomp.AckAuto, durableName("feed"))
	alice.close()
	pub.send("/topic/orders", "a1")
	pub.send("/topic/orders", "a2")

	bob := dialGS(t, srv, as("bob"), clientID)
	bobSub := bob.subscribe("/topic/orders", stomp.AckAuto, durableName("feed"))
	pub.send("/topic/orders", "a3")
	if m := gsRecv(t, bobSub); string(m.Body) != "a3" {
		t.Fatalf("bob's first message %q, want a3: he read alice's backlog", m.Body)
	}
	bob.close()
	if q, d := srv.Broker().UserQuota(broker.DefaultVirtualHost, "bob"); q != 0 || d != 1 {
		t.Fatalf("bob holds %d queues, %d durables; want 0, 1", q, d)
	}

	again := dialGS(t, srv, as("alice"), clientID)
	sub := again.subscribe("/topic/orders", stomp.AckAuto, durableName("feed"))
	if got := gsBodies(t, sub, 3); !slices.Equal(got, []string{"a1", "a2", "a3"}) {
		t.Fatalf("alice after reconnect got %q, want [a1 a2 a3]", got)
	}
}

// With an idle TTL the server's sweeper removes a durable subscription
// nobody consumes, and stops with the server (goleak checks the goroutine).
func TestIdleDurableSweeper(t *testing.T) {
	srv := startServer(t, Config{Broker: broker.Config{DurableIdleTTL: 200 * time.Millisecond}})
	c := dialGS(t, srv, stomp.ConnOpt.Login("alice", "any"), stomp.ConnOpt.Header("client-id", "app"))
	kept := dialGS(t, srv, stomp.ConnOpt.Login("alice", "any"), stomp.ConnOpt.Header("client-id", "app-2"))
	c.subscribe("/topic/t", stomp.AckAuto, durableName("idle"))
	kept.subscribe("/topic/t", stomp.AckAuto, durableName("busy"))
	c.close()
	deadline := time.Now().Add(gsWait)
	for {
		_, d := srv.Broker().UserQuota(broker.DefaultVirtualHost, "alice")
		if d == 1 {
			break // the idle one is gone; the attached one stays
		}
		if time.Now().After(deadline) {
			t.Fatalf("alice still holds %d durables %v after their TTL", d, gsWait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSweepInterval(t *testing.T) {
	for ttl, want := range map[time.Duration]time.Duration{
		time.Millisecond: 100 * time.Millisecond,
		time.Minute:      15 * time.Second,
		24 * time.Hour:   time.Minute,
	} {
		if got := sweepInterval(ttl); got != want {
			t.Errorf("sweepInterval(%v) = %v, want %v", ttl, got, want)
		}
	}
}
