package cluster_test

import (
	"strings"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/server/cluster/clustertest"
)

// TestClusterHistoryAcrossNodes: topic history kept in the cluster, through
// real brokers. Messages sent on node A reach A's subscriber with offsets;
// node B, running meanwhile, and node C, started afterwards, replay them
// for history:n with the same offsets; a message sent on B then reaches
// subscribers on A and C live, with one offset.
func TestClusterHistoryAcrossNodes(t *testing.T) {
	nats := clustertest.StartNATS(t, 1)
	o := nodeOpts{broker: broker.Config{TopicHistory: []broker.HistoryRule{{Pattern: "/topic/chat.#", Size: 10}}}}
	a := startNode(t, nats.URLs(), "a", o)
	b := startNode(t, nats.URLs(), "b", o)
	liveA, err := a.dial(t).Subscribe("/topic/chat.room", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	pub := a.dial(t)
	for i := range 3 {
		sendReceipted(t, pub, "/topic/chat.room", "m"+itoa(i))
	}
	var offsets []string
	for i := range 3 {
		m := recv(t, liveA, 10*time.Second)
		off := m.Header.Get("offset")
		if string(m.Body) != "m"+itoa(i) || !strings.HasSuffix(off, "-"+itoa(i+1)) {
			t.Fatalf("A live %d: %q offset %q", i, m.Body, off)
		}
		offsets = append(offsets, off)
	}
	c := startNode(t, nats.URLs(), "c", o)

	replay := func(n *node) *stomp.Subscription {
		t.Helper()
		// The node is ready once its mirror caught up: the history is there.
		waitFor(t, 10*time.Second, "ready", n.ready)
		sub, err := n.dial(t).Subscribe("/topic/chat.room", stomp.AckAuto, stomp.SubscribeOpt.Header("history", "3"))
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			m := recv(t, sub, 10*time.Second)
			if string(m.Body) != "m"+itoa(i) || m.Header.Get("offset") != offsets[i] || m.Header.Get("replayed") != "true" {
				t.Fatalf("replay %d: %q offset %q replayed %q, want offset %q", i, m.Body,
					m.Header.Get("offset"), m.Header.Get("replayed"), offsets[i])
			}
		}
		return sub
	}
	subB, subC := replay(b), replay(c)
	sendReceipted(t, b.dial(t), "/topic/chat.room", "from b")
	var off string
	for name, sub := range map[string]*stomp.Subscription{"A": liveA, "B": subB, "C": subC} {
		m := recv(t, sub, 10*time.Second)
		got := m.Header.Get("offset")
		if string(m.Body) != "from b" || !strings.HasSuffix(got, "-4") || (off != "" && got != off) {
			t.Fatalf("%s live: %q offset %q (others %q)", name, m.Body, got, off)
		}
		off = got
	}
}
