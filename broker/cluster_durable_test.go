package broker

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stompbox/stompbox/frames"
)

const memDurKey = DefaultVirtualHost + "/durable/u/cid/d1"

// sendStored sends a frame whose outcome the cluster gives at once and
// runs the session's completions (the fake transport only counts pokes).
func (c *client) sendStored(cmd frames.Command, body string, headers ...string) {
	c.t.Helper()
	c.mustSend(cmd, body, headers...)
	if err := c.s.Poked(); err != nil {
		c.t.Fatalf("Poked: %v", err)
	}
}

// A durable subscription created on node A collects, in the cluster,
// what is published on B and C while its client is away (a persistent
// SEND is receipted only once its copy is stored); its client re-attaches
// on C and gets all of it, in order.
func TestClusterDurableCollectsAcrossNodes(t *testing.T) {
	mc := newMemCluster()
	a, b, c := mc.durNode(Config{}), mc.durNode(Config{}), mc.durNode(Config{})
	d := userClient(t, a.b, "u", "cid")
	d.subscribeDurable("/topic/t.x", "d1")
	d.s.Release()
	for _, n := range []*memDurNode{a, b, c} {
		if got := len(n.b.spaces[DefaultVirtualHost].durables); got != 1 {
			t.Fatalf("node knows %d durable subscriptions, want 1 (the registry's)", got)
		}
		if len(n.events) != 0 {
			t.Fatalf("a durable subscription made topic interest: %v", n.events)
		}
	}
	live := newClient(t, b.b) // a plain subscriber on the publishing node
	live.connect()
	live.mustSend(frames.CmdSubscribe, "", "id:l", "destination:/topic/t.x", "receipt:l")
	mustFrame(t, live, "RECEIPT")

	mc.holdPubs = true
	pb := newClient(t, b.b)
	pb.connect()
	pb.mustSend(frames.CmdSend, "b0", "destination:/topic/t.x", "persistent:true", "receipt:r0")
	pb.mustSend(frames.CmdSend, "b1", "destination:/topic/t.x", "receipt:r1")
	if fs := pb.poll(); len(fs) != 0 {
		t.Fatalf("RECEIPT before the durable copy was stored: %v", commands(fs))
	}
	if got := bodies(live.poll()); len(got) != 0 {
		t.Fatalf("local subscriber got %v before the copy was stored", got)
	}
	for range 2 { // the second SEND waits behind the first, then is stored
		mc.confirm(nil)
		if err := pb.s.Poked(); err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	for _, f := range pb.poll() {
		ids = append(ids, hdr(f, "receipt-id"))
	}
	if !slices.Equal(ids, []string{"r0", "r1"}) {
		t.Fatalf("receipts %v, want r0 r1", ids)
	}
	if got := bodies(live.poll()); !slices.Equal(got, []string{"b0", "b1"}) {
		t.Fatalf("local subscriber got %v, want b0 b1", got)
	}
	mc.holdPubs = false
	pc := newClient(t, c.b)
	pc.connect()
	pc.mustSend(frames.CmdBegin, "", "transaction:tx")
	pc.mustSend(frames.CmdSend, "c0", "destination:/topic/t.x", "transaction:tx")
	pc.mustSend(frames.CmdSend, "other", "destination:/topic/t.y", "transaction:tx")
	pc.mustSend(frames.CmdCommit, "", "transaction:tx", "receipt:c")
	mustFrame(t, pc, "RECEIPT")
	pc.sendStored(frames.CmdSend, "c1", "destination:/topic/t.x", "receipt:c1")
	mustFrame(t, pc, "RECEIPT")
	if q := mc.queue(memDurKey); len(q.ready) != 4 {
		t.Fatalf("cluster holds %d copies for the durable, want 4", len(q.ready))
	}

	back := userClient(t, c.b, "u", "cid")
	back.mustSend(frames.CmdSubscribe, "", "id:d1", "destination:/topic/t.x", "durable-subscription-name:d1", "ack:client-individual", "receipt:s")
	mustFrame(t, back, "RECEIPT")
	mc.pump()
	fs := back.poll()
	if got := bodies(fs); !slices.Equal(got, []string{"b0", "b1", "c0", "c1"}) {
		t.Fatalf("re-attached on C, got %v, want b0 b1 c0 c1", got)
	}
	for _, f := range fs {
		back.mustSend(frames.CmdAck, "", "id:"+hdr(f, "ack"))
	}
	if q := mc.queue(memDurKey); len(q.acked) != 4 || len(q.ready) != 0 {
		t.Fatalf("cluster: %d acked, %d ready; want 4 acked", len(q.acked), len(q.ready))
	}
}

// One connection at a time consumes a durable subscription, across nodes;
// once it leaves another node may attach.
func TestClusterDurableInUseAcrossNodes(t *testing.T) {
	mc := newMemCluster()
	a, b := mc.durNode(Config{}), mc.durNode(Config{})
	d := userClient(t, a.b, "u", "cid")
	d.subscribeDurable("/topic/t", "d1")
	other := userClient(t, b.b, "u", "cid")
	_ = other.send(frames.CmdSubscribe, "", "id:d1", "destination:/topic/t", "durable-subscription-name:d1", "receipt:s")
	if f := other.next(); f.Command != frames.CmdError || hdr(f, "error-code") != CodeSubscriptionInUse {
		t.Fatalf("second consumer on B: %s %s, want ERROR %s", f.Command, hdr(f, "error-code"), CodeSubscriptionInUse)
	}
	d.mustSend(frames.CmdUnsubscribe, "", "id:d1", "receipt:u")
	mustFrame(t, d, "RECEIPT")
	again := userClient(t, b.b, "u", "cid")
	again.subscribeDurable("/topic/t", "d1")
	if got := len(mc.dur.holders); got != 1 {
		t.Fatalf("%d holders, want 1", got)
	}
	again.s.Release()
	if got := len(mc.dur.holders); got != 0 {
		t.Fatalf("%d holders after the consumer left, want 0", got)
	}
}

// remove-durable:true on one node removes it on every node: a later
// publish anywhere stores nothing for it.
func TestClusterDurableRemovedEverywhere(t *testing.T) {
	mc := newMemCluster()
	a, b := mc.durNode(Config{}), mc.durNode(Config{})
	d := userClient(t, a.b, "u", "cid")
	d.subscribeDurable("/topic/t", "d1")
	d.s.Release()
	pb := newClient(t, b.b)
	pb.connect()
	pb.sendStored(frames.CmdSend, "kept", "destination:/topic/t", "receipt:1")
	mustFrame(t, pb, "RECEIPT")
	rm := userClient(t, b.b, "u", "cid")
	rm.subscribeDurable("/topic/t", "d1")
	rm.mustSend(frames.CmdUnsubscribe, "", "id:d1", "remove-durable:true", "receipt:u")
	fs := rm.poll()
	if len(fs) == 0 || fs[len(fs)-1].Command != frames.CmdReceipt {
		t.Fatalf("UNSUBSCRIBE remove-durable: %v (%s)", commands(fs), errBody(fs))
	}
	for i, n := range []*memDurNode{a, b} {
		if got := len(n.b.spaces[DefaultVirtualHost].durables); got != 0 {
			t.Fatalf("node %d still knows %d durable subscriptions", i, got)
		}
		if qs, ds := n.b.UserQuota(DefaultVirtualHost, "u"); qs != 0 || ds != 0 {
			t.Fatalf("node %d quota of u: %d queues %d durables, want none", i, qs, ds)
		}
	}
	pa := newClient(t, a.b)
	pa.connect()
	pa.sendStored(frames.CmdSend, "late", "destination:/topic/t", "persistent:true", "receipt:2")
	mustFrame(t, pa, "RECEIPT")
	if q := mc.queue(memDurKey); len(q.ready) != 0 {
		t.Fatalf("removed durable subscription still gets copies: %d", len(q.ready))
	}
}

// max_durables_per_user counts the durable subscriptions of every node.
func TestClusterDurableQuotaCountsTheRegistry(t *testing.T) {
	mc := newMemCluster()
	a, b := mc.durNode(Config{MaxDurablesPerUser: 1}), mc.durNode(Config{MaxDurablesPerUser: 1})
	d := userClient(t, a.b, "u", "cid")
	d.subscribeDurable("/topic/t", "d1")
	e := userClient(t, b.b, "u", "cid2")
	_ = e.send(frames.CmdSubscribe, "", "id:d2", "destination:/topic/t", "durable-subscription-name:d2", "receipt:s")
	if f := e.next(); f.Command != frames.CmdError {
		t.Fatalf("second durable of u on B: %s, want ERROR (quota 1)", f.Command)
	}
	if _, ds := b.b.UserQuota(DefaultVirtualHost, "u"); ds != 1 {
		t.Fatalf("B counts %d durables of u, want 1", ds)
	}
}

// The node consuming a durable subscription dies: what it was fed and had
// not acknowledged goes back (the cluster redelivers it), and the client
// re-attaches on another node and gets it, and the rest.
func TestClusterDurableNodeDiesNothingLost(t *testing.T) {
	mc := newMemCluster()
	a, b := mc.durNode(Config{}), mc.durNode(Config{})
	d := userClient(t, a.b, "u", "cid")
	d.mustSend(frames.CmdSubscribe, "", "id:d1", "destination:/topic/t", "durable-subscription-name:d1", "ack:client", "receipt:s")
	mustFrame(t, d, "RECEIPT")
	pb := newClient(t, b.b)
	pb.connect()
	for i := range 3 {
		pb.sendStored(frames.CmdSend, strconv.Itoa(i), "destination:/topic/t", "persistent:true", "receipt:"+strconv.Itoa(i))
		mustFrame(t, pb, "RECEIPT")
	}
	mc.pump()
	if got := bodies(d.poll()); len(got) != 3 {
		t.Fatalf("consumer on A got %v, want 3", got)
	}
	// A dies: its feeds stop and what it held unsettled is the cluster's
	// again (JetStream's AckWait), its holds lapse.
	mc.mu.Lock()
	for _, f := range a.feeds {
		f.stopped = true
	}
	q := mc.queues[memDurKey]
	q.ready = nil
	for i := range 3 {
		q.ready = append(q.ready, &memMsg{m: &Message{ID: "x" + strconv.Itoa(i), Destination: "/topic/t", Body: []byte(strconv.Itoa(i))}, deliveries: 1})
	}
	mc.mu.Unlock()
	mc.dropHolds(a.memNode)
	back := userClient(t, b.b, "u", "cid")
	back.mustSend(frames.CmdSubscribe, "", "id:d1", "destination:/topic/t", "durable-subscription-name:d1", "receipt:s")
	mustFrame(t, back, "RECEIPT")
	mc.pump()
	fs := back.poll()
	if got := bodies(fs); !slices.Equal(got, []string{"0", "1", "2"}) {
		t.Fatalf("re-attached on B got %v, want 0 1 2", got)
	}
	if hdr(fs[0], "redelivered") != "true" {
		t.Fatalf("redelivery not marked: %v", fs[0].Headers)
	}
}

// A journal holding a durable subscription cannot be recovered into a
// cluster that keeps durable subscriptions: the cluster never saw it.
func TestClusterDurableRecoverRefusesJournaledDurable(t *testing.T) {
	j := &memJournal{}
	spec := DurableSpec{User: "u", ClientID: "cid", Name: "d1", Topic: "t"}
	_ = j.Append(context.Background(), JournalRecord{Op: OpDurableCreate, Queue: durableQueueName(spec), Durable: spec})
	a := newMemCluster().durNode(Config{Journal: j})
	err := a.b.Recover()
	if !errors.Is(err, ErrJournalHoldsClusterQueues) || !strings.Contains(err.Error(), "/durable/u/cid/d1") {
		t.Fatalf("Recover: %v, want ErrJournalHoldsClusterQueues naming /durable/u/cid/d1", err)
	}
}
