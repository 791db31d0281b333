package broker

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stompbox/stompbox/frames"
)

// memPresence is one PresenceChanged call of a memNode, waiting for
// memCluster.pumpPresence to hand it to the other nodes.
type memPresence struct {
	from    *memNode
	vhost   string
	set     string
	m       PresenceMember
	present bool
}

// PresenceChanged implements ClusterPresence: recorded, applied to the
// other nodes only when the test pumps (the real cluster is asynchronous).
func (n *memNode) PresenceChanged(vhost, set string, m PresenceMember, present bool) {
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	n.c.presence = append(n.c.presence, memPresence{from: n, vhost: vhost, set: set, m: m, present: present})
}

var _ ClusterPresence = (*memNode)(nil)

// name is the node's name in the cluster: its index.
func (n *memNode) name() string {
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	return "node-" + strconv.Itoa(slices.Index(n.c.nodes, n))
}

// pumpPresence applies every recorded change to the other nodes and
// returns them as "+user/id@set" (joined) or "-user/id@set" lines.
func (c *memCluster) pumpPresence() []string {
	c.mu.Lock()
	changes := c.presence
	c.presence = nil
	c.mu.Unlock()
	var lines []string
	for _, ch := range changes {
		sign := "-"
		if ch.present {
			sign = "+"
		}
		lines = append(lines, sign+ch.m.User+"/"+ch.m.ID+"@"+ch.set)
		from := ch.from.name()
		c.mu.Lock()
		nodes := slices.Clone(c.nodes)
		c.mu.Unlock()
		for _, o := range nodes {
			if o != ch.from {
				o.b.ApplyRemotePresence(ch.vhost, ch.set, from, ch.m, ch.present)
			}
		}
	}
	return lines
}

// presenceNodes is a memCluster of n nodes sharing one presence clock.
func presenceNodes(t *testing.T, n int, cfg Config) (*memCluster, []*memNode, *presenceClock) {
	t.Helper()
	clock := &presenceClock{now: time.Unix(1_700_000_000, 0)}
	cfg.Now = clock.Now
	mc := newMemCluster()
	var nodes []*memNode
	for range n {
		nodes = append(nodes, mc.node(cfg))
	}
	return mc, nodes, clock
}

// sweepAll runs every node's presence sweeper at now.
func sweepAll(nodes []*memNode, now time.Time) {
	for _, n := range nodes {
		n.b.SweepPresence(now)
	}
}

func expectPumped(t *testing.T, mc *memCluster, want ...string) {
	t.Helper()
	if got := mc.pumpPresence(); !slices.Equal(got, want) {
		t.Fatalf("presence changes told the cluster\n got %q\nwant %q", got, want)
	}
}

// A member on node A reaches a watcher on node B: its join, then (after
// A's grace period) its leave; a new watcher on B has it in its snapshot.
func TestClusterPresenceRemoteJoinLeave(t *testing.T) {
	mc, n, clock := presenceNodes(t, 2, Config{})
	w := connectAs(t, n[1].b, "watcher")
	if snap := watch(t, w, "p", "chat.lobby"); snap != `{"members":[]}` {
		t.Fatalf("snapshot %s", snap)
	}
	alice := connectAs(t, n[0].b, "alice")
	member(t, alice, "s1", "chat.lobby", "presence-id:tab1", "presence-info:Alice")
	expectEvents(t, w) // nothing before the cluster carries it
	expectPumped(t, mc, "+alice/tab1@chat.lobby")
	expectEvents(t, w, `join {"user":"alice","id":"tab1","info":"Alice"}`)

	late := connectAs(t, n[1].b, "late")
	if snap := watch(t, late, "p", "chat.lobby"); snap != `{"members":[{"user":"alice","id":"tab1","info":"Alice"}]}` {
		t.Fatalf("snapshot on B %s", snap)
	}

	alice.mustSend(frames.CmdUnsubscribe, "", "id:s1")
	sweepAll(n, clock.advance(9*time.Second))
	expectPumped(t, mc) // still within A's grace period
	sweepAll(n, clock.advance(2*time.Second))
	expectPumped(t, mc, "-alice/tab1@chat.lobby")
	expectEvents(t, w, `leave {"user":"alice","id":"tab1","info":"Alice"}`)
	expectEvents(t, late, `leave {"user":"alice","id":"tab1","info":"Alice"}`)
	if got := n[1].b.presenceMembers(); got != 0 {
		t.Fatalf("B still counts %d members", got)
	}
}

// presenceMembers is the stompbox_presence_members gauge of b.
func (b *Broker) presenceMembers() int64 {
	var n int64
	for _, sp := range b.spaces {
		n += sp.presence.members.Load()
	}
	return n
}

// A user without presence-id on two nodes is one member everywhere: one
// join, and a leave only when neither node holds it.
func TestClusterPresenceMemberCountedOnce(t *testing.T) {
	mc, n, clock := presenceNodes(t, 3, Config{PresenceGrace: -1})
	wb := connectAs(t, n[1].b, "wb")
	watch(t, wb, "p", "room")
	onA, onB := connectAs(t, n[0].b, "alice"), connectAs(t, n[1].b, "alice")
	member(t, onA, "s", "room", "presence-info:A")
	member(t, onB, "s", "room", "presence-info:A")
	expectPumped(t, mc, "+alice/@room", "+alice/@room")
	expectEvents(t, wb, `join {"user":"alice","id":"","info":"A"}`)

	wc := connectAs(t, n[2].b, "wc")
	if snap := watch(t, wc, "p", "room"); snap != `{"members":[{"user":"alice","id":"","info":"A"}]}` {
		t.Fatalf("snapshot on C %s", snap)
	}
	if got := n[2].b.presenceMembers(); got != 1 {
		t.Fatalf("C counts %d members, want 1", got)
	}

	onA.mustSend(frames.CmdUnsubscribe, "", "id:s", "receipt:u")
	mustFrame(t, onA, "RECEIPT")
	expectPumped(t, mc, "-alice/@room")
	sweepAll(n, clock.advance(time.Second))
	expectEvents(t, wb)
	expectEvents(t, wc)

	onB.mustSend(frames.CmdUnsubscribe, "", "id:s", "receipt:u")
	mustFrame(t, onB, "RECEIPT")
	expectEvents(t, wb, `leave {"user":"alice","id":"","info":"A"}`)
	expectEvents(t, wc)
	expectPumped(t, mc, "-alice/@room")
	expectEvents(t, wc, `leave {"user":"alice","id":"","info":"A"}`)
}

// A member that leaves node A and joins on node B within A's grace period
// makes no event anywhere; when it later leaves B for good, everyone sees
// one leave.
func TestClusterPresenceGraceAcrossNodes(t *testing.T) {
	mc, n, clock := presenceNodes(t, 3, Config{})
	wa, wc := connectAs(t, n[0].b, "wa"), connectAs(t, n[2].b, "wc")
	watch(t, wa, "p", "room")
	watch(t, wc, "p", "room")
	onA := connectAs(t, n[0].b, "bob")
	member(t, onA, "s", "room", "presence-id:x", "presence-info:Bob")
	expectPumped(t, mc, "+bob/x@room")
	expectEvents(t, wa, `join {"user":"bob","id":"x","info":"Bob"}`)
	expectEvents(t, wc, `join {"user":"bob","id":"x","info":"Bob"}`)

	if err := onA.send(frames.CmdDisconnect, "", "receipt:bye"); !isClosed(err) {
		t.Fatalf("DISCONNECT: %v", err)
	}
	sweepAll(n, clock.advance(5*time.Second))
	onB := connectAs(t, n[1].b, "bob")
	member(t, onB, "s", "room", "presence-id:x", "presence-info:Bob")
	expectPumped(t, mc, "+bob/x@room")
	sweepAll(n, clock.advance(6*time.Second)) // A's grace period ends: B holds it
	expectPumped(t, mc, "-bob/x@room")
	expectEvents(t, wa)
	expectEvents(t, wc)
	for i, nd := range n {
		if got := nd.b.presenceMembers(); got != 1 {
			t.Fatalf("node %d counts %d members, want 1", i, got)
		}
	}

	onB.mustSend(frames.CmdUnsubscribe, "", "id:s")
	sweepAll(n, clock.advance(11*time.Second))
	expectPumped(t, mc, "-bob/x@room")
	expectEvents(t, wa, `leave {"user":"bob","id":"x","info":"Bob"}`)
	expectEvents(t, wc, `leave {"user":"bob","id":"x","info":"Bob"}`)
}

// Another node's refresh changes nothing; new info from it is a join with
// that info; a node that lets go of a member it never held is ignored.
func TestClusterPresenceRemoteInfoAndRefresh(t *testing.T) {
	_, n, _ := presenceNodes(t, 2, Config{})
	w := connectAs(t, n[0].b, "w")
	watch(t, w, "p", "room")
	b := n[0].b
	m := PresenceMember{User: "carol", ID: "1", Info: "Carol"}
	if !b.ApplyRemotePresence(DefaultVirtualHost, "room", "node-9", m, true) {
		t.Fatal("remote join refused")
	}
	b.ApplyRemotePresence(DefaultVirtualHost, "room", "node-9", m, true)
	expectEvents(t, w, `join {"user":"carol","id":"1","info":"Carol"}`)
	m.Info = "Carol (away)"
	b.ApplyRemotePresence(DefaultVirtualHost, "room", "node-9", m, true)
	expectEvents(t, w, `join {"user":"carol","id":"1","info":"Carol (away)"}`)
	b.ApplyRemotePresence(DefaultVirtualHost, "room", "node-8", m, false)
	b.ApplyRemotePresence(DefaultVirtualHost, "other", "node-9", m, false)
	b.ApplyRemotePresence("no-such-vhost", "room", "node-9", m, false)
	expectEvents(t, w)
	b.ApplyRemotePresence(DefaultVirtualHost, "room", "node-9", m, false)
	expectEvents(t, w, `leave {"user":"carol","id":"1","info":"Carol (away)"}`)
	if b.ApplyRemotePresence("no-such-vhost", "room", "node-9", m, true) {
		t.Fatal("a member of an unknown virtual host was kept")
	}
}

// Remote members count against presence.max_members and their sets
// against presence.max_sets; what is past them is refused, not held.
func TestClusterPresenceBounds(t *testing.T) {
	_, n, _ := presenceNodes(t, 2, Config{MaxPresenceMembers: 2, MaxPresenceSets: 1})
	b := n[1].b
	add := func(set, user string) bool {
		return b.ApplyRemotePresence(DefaultVirtualHost, set, "node-0", PresenceMember{User: user}, true)
	}
	if !add("room", "u1") || !add("room", "u2") {
		t.Fatal("remote members within the bounds refused")
	}
	if add("room", "u3") {
		t.Fatal("a third member was kept in a set of at most 2")
	}
	if add("other", "u1") {
		t.Fatal("a second set was made with max_sets 1")
	}
	if b.ApplyRemotePresence(DefaultVirtualHost, "room", "node-0",
		PresenceMember{User: "u1", Info: strings.Repeat("x", MaxPresenceInfo+1)}, true) {
		t.Fatal("presence-info past its bound was kept")
	}
	if b.ApplyRemotePresence(DefaultVirtualHost, "room.*", "node-0", PresenceMember{User: "u9"}, true) {
		t.Fatal("a wildcard set was kept")
	}
	if got := b.presenceMembers(); got != 2 {
		t.Fatalf("%d members held, want 2", got)
	}
	// The merged set is full for local members too.
	c := connectAs(t, b, "local")
	if err := c.send(frames.CmdSubscribe, "", "id:s", "destination:/topic/room", "presence:true"); !isClosed(err) {
		t.Fatalf("a local member joined a full merged set: %v", err)
	}
	// A remote member already held joins locally at no cost.
	u1 := connectAs(t, b, "u1")
	member(t, u1, "s", "room")
	// Once a remote member leaves, a new one fits.
	b.ApplyRemotePresence(DefaultVirtualHost, "room", "node-0", PresenceMember{User: "u2"}, false)
	if !add("room", "u3") {
		t.Fatal("a remote member refused after one left")
	}
}

// Without a cluster that shares presence, ApplyRemotePresence holds
// nothing.
func TestClusterPresenceNeedsPresenceCluster(t *testing.T) {
	b := New(Config{})
	if b.ApplyRemotePresence(DefaultVirtualHost, "room", "node-0", PresenceMember{User: "u"}, true) {
		t.Fatal("a single-node broker kept a remote member")
	}
}

// One member is held by at most MaxPresenceHolders other nodes: a writer
// naming endless nodes for it cannot grow a node's memory.
func TestClusterPresenceHoldersBounded(t *testing.T) {
	_, n, _ := presenceNodes(t, 1, Config{MaxPresenceMembers: 1, MaxPresenceSets: 1})
	b := n[0].b
	m := PresenceMember{User: "u"}
	for i := range MaxPresenceHolders {
		if !b.ApplyRemotePresence(DefaultVirtualHost, "room", "node-"+strconv.Itoa(i), m, true) {
			t.Fatalf("holder %d refused, want %d taken", i, MaxPresenceHolders)
		}
	}
	if b.ApplyRemotePresence(DefaultVirtualHost, "room", "one-too-many", m, true) {
		t.Fatalf("holder %d taken, want refused", MaxPresenceHolders+1)
	}
	if !b.ApplyRemotePresence(DefaultVirtualHost, "room", "node-0", m, true) {
		t.Fatal("a refresh of a holder already kept was refused")
	}
	sp := b.spaces[DefaultVirtualHost]
	sp.presence.mu.Lock()
	h := len(sp.presence.sets["room"].remote[presenceKey{user: "u"}])
	sp.presence.mu.Unlock()
	if h != MaxPresenceHolders {
		t.Fatalf("%d holders kept, want %d", h, MaxPresenceHolders)
	}
}
