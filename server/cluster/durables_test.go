package cluster_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/server/cluster/clustertest"
)

// dialClient connects a go-stomp client with CONNECT client-id cid.
func dialClient(t *testing.T, n *node, cid string) *stomp.Conn {
	t.Helper()
	c, err := stomp.Dial("tcp", n.addr, stomp.ConnOpt.HeartBeat(0, 0), stomp.ConnOpt.Header("client-id", cid))
	if err != nil {
		t.Fatalf("dial %s: %v", n.addr, err)
	}
	return c
}

// subscribeDurable subscribes durably (client-individual acks). Without a
// receipt: go-stomp keeps a SUBSCRIBE's receipt channel after closing it,
// and panics on it when the connection ends.
func subscribeDurable(t *testing.T, c *stomp.Conn, topic, name string) *stomp.Subscription {
	t.Helper()
	sub, err := c.Subscribe(topic, stomp.AckClientIndividual,
		stomp.SubscribeOpt.Header("durable-subscription-name", name))
	if err != nil {
		t.Fatalf("durable SUBSCRIBE %s: %v", name, err)
	}
	return sub
}

// waitKnown waits until every node's broker knows want registered
// durable subscriptions.
func waitKnown(t *testing.T, want int, nodes ...*node) {
	t.Helper()
	for _, n := range nodes {
		waitFor(t, 10*time.Second, "the registry on "+n.addr, func() bool { return n.link.KnownDurables() == want })
	}
}

// backlog is how many messages the cluster stores for anonymous client
// cid's durable subscription name.
func backlog(t *testing.T, n *node, cid, name string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := n.link.DurableBacklog(ctx, "/", broker.DurableSpec{ClientID: cid, Name: name})
	if err != nil {
		t.Fatalf("backlog: %v", err)
	}
	return got
}

// A durable subscription created on node A collects, in JetStream, the
// persistent messages published on B and C while its client is away
// (each receipted once stored); the client re-attaches on C and gets all
// of them in order, acknowledges them, and nothing is left.
func TestClusterDurableCollectsOnEveryNode(t *testing.T) {
	nats := clustertest.StartNATS(t, 3)
	a := startNode(t, nats.URLs(), "node-a", nodeOpts{})
	b := startNode(t, nats.URLs(), "node-b", nodeOpts{})
	c := startNode(t, nats.URLs(), "node-c", nodeOpts{})
	ca := dialClient(t, a, "cid")
	subscribeDurable(t, ca, "/topic/news.*", "d1")
	if err := ca.Disconnect(); err != nil {
		t.Fatal(err)
	}
	waitKnown(t, 1, a, b, c)
	pb, pc := b.dial(t), c.dial(t)
	var want []string
	for i := range 6 {
		body := "m" + itoa(i)
		p := pb
		if i%2 == 1 {
			p = pc
		}
		sendReceipted(t, p, "/topic/news.eu", body)
		want = append(want, body)
	}
	sendReceipted(t, pb, "/topic/sports", "not for it")
	if got := backlog(t, a, "cid", "d1"); got != 6 {
		t.Fatalf("JetStream holds %d messages for the durable, want 6", got)
	}
	cc := dialClient(t, c, "cid")
	defer func() { _ = cc.Disconnect() }()
	sub := subscribeDurable(t, cc, "/topic/news.*", "d1")
	var got []string
	for range want {
		m := recv(t, sub, 10*time.Second)
		got = append(got, string(m.Body))
		if err := cc.Ack(m); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("re-attached on C got %v, want %v", got, want)
	}
	none(t, sub, 300*time.Millisecond)
	waitFor(t, 10*time.Second, "the acks in JetStream", func() bool { return backlog(t, a, "cid", "d1") == 0 })
}

// The node consuming a durable subscription dies without acknowledging
// what it was fed: the client re-attaches on another node (once the dead
// node's hold lapses) and gets everything, redelivered.
func TestClusterDurableHolderDiesNothingLost(t *testing.T) {
	nats := clustertest.StartNATS(t, 3)
	o := nodeOpts{ackWait: 2 * time.Second, presenceTTL: 2 * time.Second}
	a := startNode(t, nats.URLs(), "node-a", o)
	b := startNode(t, nats.URLs(), "node-b", o)
	ca := dialClient(t, a, "cid")
	subA := subscribeDurable(t, ca, "/topic/orders", "d1")
	waitKnown(t, 1, a, b)
	pb := b.dial(t)
	for i := range 4 {
		sendReceipted(t, pb, "/topic/orders", itoa(i))
	}
	for range 4 {
		recv(t, subA, 10*time.Second) // fed to A, never acknowledged
	}
	a.crash()
	var subB *stomp.Subscription
	// Until the dead node's hold lapses, B refuses the SUBSCRIBE
	// (subscription-in-use ends the connection): try again.
	var cb *stomp.Conn
	var got []string
	waitFor(t, 30*time.Second, "the dead node's hold to lapse", func() bool {
		cb = dialClient(t, b, "cid")
		sub := subscribeDurable(t, cb, "/topic/orders", "d1")
		select {
		case m := <-sub.C:
			if m.Err != nil {
				t.Logf("not yet: %v", m.Err)
				_ = cb.Disconnect()
				return false
			}
			got = append(got, string(m.Body))
			_ = cb.Ack(m)
			if m.Header.Get("redelivered") != "true" {
				t.Fatalf("message %q the dead node held not marked redelivered", m.Body)
			}
			subB = sub
			return true
		case <-time.After(10 * time.Second):
			t.Fatal("neither a message nor an ERROR within 10s")
		}
		return false
	})
	defer func() { _ = cb.Disconnect() }()
	for range 3 {
		m := recv(t, subB, 15*time.Second)
		if m.Header.Get("redelivered") != "true" {
			t.Fatalf("message %q the dead node held not marked redelivered", m.Body)
		}
		got = append(got, string(m.Body))
		_ = cb.Ack(m)
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"0", "1", "2", "3"}) {
		t.Fatalf("got %v after the holder died, want 0..3", got)
	}
}

// remove-durable:true on one node removes the durable subscription on
// every node: a publish afterwards stores nothing for it.
func TestClusterDurableRemovedOnEveryNode(t *testing.T) {
	nats := clustertest.StartNATS(t, 3)
	a := startNode(t, nats.URLs(), "node-a", nodeOpts{})
	b := startNode(t, nats.URLs(), "node-b", nodeOpts{})
	c := startNode(t, nats.URLs(), "node-c", nodeOpts{})
	ca := dialClient(t, a, "cid")
	subscribeDurable(t, ca, "/topic/t", "d1")
	_ = ca.Disconnect()
	waitKnown(t, 1, a, b, c)
	sendReceipted(t, c.dial(t), "/topic/t", "before")
	cb := dialClient(t, b, "cid")
	sub := subscribeDurable(t, cb, "/topic/t", "d1")
	recv(t, sub, 10*time.Second) // "before", not acknowledged: removed with it
	if err := sub.Unsubscribe(stomp.SubscribeOpt.Header("remove-durable", "true")); err != nil {
		t.Fatalf("UNSUBSCRIBE remove-durable: %v", err)
	}
	_ = cb.Disconnect()
	waitKnown(t, 0, a, b, c)
	sendReceipted(t, c.dial(t), "/topic/t", "after")
	sendReceipted(t, a.dial(t), "/topic/t", "after")
	if got := backlog(t, a, "cid", "d1"); got != 0 {
		t.Fatalf("JetStream holds %d messages for a removed durable subscription", got)
	}
}

// One connection at a time consumes a durable subscription, cluster-wide.
func TestClusterDurableInUseAcrossNodes(t *testing.T) {
	nats := clustertest.StartNATS(t, 3)
	a := startNode(t, nats.URLs(), "node-a", nodeOpts{})
	b := startNode(t, nats.URLs(), "node-b", nodeOpts{})
	ca := dialClient(t, a, "cid")
	subscribeDurable(t, ca, "/topic/t", "d1")
	waitKnown(t, 1, b)
	hs := rawExchangeAs(t, b.addr, "client-id:cid\n",
		"SUBSCRIBE\nid:1\ndestination:/topic/t\ndurable-subscription-name:d1\nreceipt:r\n\n")
	if hs[""] != "ERROR" || hs["error-code"] != broker.CodeSubscriptionInUse {
		t.Fatalf("second consumer on B: %v, want ERROR %s", hs, broker.CodeSubscriptionInUse)
	}
	if err := ca.Disconnect(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the hold released", func() bool {
		return rawExchangeAs(t, b.addr, "client-id:cid\n",
			"SUBSCRIBE\nid:1\ndestination:/topic/t\ndurable-subscription-name:d1\nreceipt:r\n\n")[""] == "RECEIPT"
	})
}
