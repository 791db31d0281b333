package broker

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/stompbox/stompbox/frames"
)

// memSessNode is a memNode whose cluster lets sessions move: FetchSession
// calls the named node's HandOffSession directly.
type memSessNode struct {
	*memNode
	name  string
	peers map[string]*Broker // shared by the nodes of one test
	asked int
}

func (n *memSessNode) SessionNode() string { return n.name }

func (n *memSessNode) FetchSession(ctx context.Context, node string, req SessionRequest) (*SessionState, error) {
	n.asked++
	b := n.peers[node]
	if b == nil {
		return nil, fmt.Errorf("%w: no node %q", ErrSessionUnknown, node)
	}
	return b.HandOffSession(ctx, req)
}

func sessNodes(t *testing.T, names ...string) []*memSessNode {
	t.Helper()
	mc := newMemCluster()
	peers := map[string]*Broker{}
	var ns []*memSessNode
	for _, name := range names {
		n := &memSessNode{memNode: &memNode{c: mc, interest: make(map[string]int)}, name: name, peers: peers}
		n.b = New(Config{Cluster: n})
		mc.nodes = append(mc.nodes, n.memNode)
		peers[name] = n.b
		ns = append(ns, n)
	}
	return ns
}

// A session parked on node A resumes on node B: its subscriptions are
// made there, the topic messages it missed and the unacknowledged ones it
// may have lost are delivered, and A forgets it.
func TestClusterSessionResumesOnAnotherNode(t *testing.T) {
	ns := sessNodes(t, "a", "b")
	a, b := ns[0], ns[1]
	c := newClient(t, a.b)
	tok := hdr(c.connect("client-id:app"), "resume-token")
	if !strings.HasSuffix(tok, ".a") {
		t.Fatalf("token %q does not name its node", tok)
	}
	c.mustSend(frames.CmdSubscribe, "", "id:live", "destination:/topic/news")
	c.mustSend(frames.CmdSubscribe, "", "id:acked", "destination:/topic/work", "ack:client-individual", "receipt:r")
	mustFrame(t, c, "RECEIPT")
	pub := newClient(t, a.b)
	pub.connect()
	pub.mustSend(frames.CmdSend, "w1", "destination:/topic/work")
	first := c.next()
	oldAck := hdr(first, "ack")
	c.drop()
	pub.mustSend(frames.CmdSend, "n1", "destination:/topic/news")
	if a.b.ParkedSessions() != 1 {
		t.Fatalf("A parks %d sessions, want 1", a.b.ParkedSessions())
	}

	r := newClient(t, b.b)
	f, fs := r.resumeOn(tok, "client-id:app")
	if hdr(f, "resumed") != "true" || !strings.HasSuffix(hdr(f, "resume-token"), ".b") {
		t.Fatalf("CONNECTED %v, want resumed:true and a token of node b", headerLines(f))
	}
	var got []string
	for _, m := range fs {
		got = append(got, hdr(m, "subscription")+"/"+string(m.Body)+"/"+hdr(m, "redelivered"))
	}
	if !slices.Equal(got, []string{"acked/w1/true", "live/n1/"}) {
		t.Fatalf("after the resume: %v, want w1 again (redelivered) then n1", got)
	}
	if a.b.ParkedSessions() != 0 {
		t.Fatalf("A still parks %d sessions", a.b.ParkedSessions())
	}
	// The subscriptions live on B now.
	pubB := newClient(t, b.b)
	pubB.connect()
	pubB.mustSend(frames.CmdSend, "n2", "destination:/topic/news")
	if fs := r.poll(); len(fs) != 1 || string(fs[0].Body) != "n2" || hdr(fs[0], "subscription") != "live" {
		t.Fatalf("a publish on B: %v, want n2 on live", commands(fs))
	}
	// stomp.js subscribes again on connect; an ACK of an id from before
	// the resume is settled already: both are no-ops, receipted.
	r.mustSend(frames.CmdSubscribe, "", "id:live", "destination:/topic/news", "receipt:s")
	r.mustSend(frames.CmdAck, "", "id:"+oldAck, "receipt:k")
	if got := receiptIDs(r.poll()); !slices.Equal(got, []string{"s", "k"}) {
		t.Fatalf("receipts %v, want s and k", got)
	}
	// The redelivered copy is acknowledged with its new id.
	if ack := hdr(fs[0], "ack"); ack == oldAck {
		t.Fatalf("the redelivered message kept the old ack id %q", ack)
	}
	r.mustSend(frames.CmdAck, "", "id:"+hdr(fs[0], "ack"), "receipt:k2")
	if f := r.next(); f.Command != frames.CmdReceipt {
		t.Fatalf("ACK of the redelivered copy: %s %v", f.Command, headerLines(f))
	}
	// The token was used: presenting it again resumes nothing.
	again := newClient(t, b.b)
	if f, _ := again.resumeOn(tok); hdr(f, "resumed") != "false" {
		t.Fatalf("a used token resumed again: %v", headerLines(f))
	}
}

// Nothing to resume: an unknown node, an unknown token, another user's
// session. The client learns only resumed:false.
func TestClusterSessionNotResumed(t *testing.T) {
	ns := sessNodes(t, "a", "b")
	a, b := ns[0], ns[1]
	owner := newClient(t, a.b)
	tok := hdr(owner.connect("login:alice"), "resume-token")
	owner.mustSend(frames.CmdSubscribe, "", "id:s", "destination:/topic/news")
	owner.drop()
	local, _ := splitResumeToken([]byte(tok))
	for _, tc := range []struct{ name, token, login string }{
		{"unknown node", string(local) + ".zz", ""},
		{"unknown token", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.a", ""},
		{"another user", tok, "bob"},
	} {
		r := newClient(t, b.b)
		var hs []string
		if tc.login != "" {
			hs = append(hs, "login:"+tc.login)
		}
		if f, _ := r.resumeOn(tc.token, hs...); hdr(f, "resumed") != "false" {
			t.Fatalf("%s: CONNECTED %v, want resumed:false", tc.name, headerLines(f))
		}
	}
	if a.b.ParkedSessions() != 1 {
		t.Fatalf("the owner's session is gone from A (%d parked)", a.b.ParkedSessions())
	}
	// Its owner still resumes it, on B.
	if _, fs := mustResume(t, b.b, tok, "login:alice"); len(fs) != 0 {
		t.Fatalf("the owner's resume delivered %v", commands(fs))
	}
	if b.asked != 4 {
		t.Fatalf("B asked other nodes %d times, want 4", b.asked)
	}
}

// memHistSessNode keeps histories and lets sessions move.
type memHistSessNode struct {
	*memHistNode
	name  string
	peers map[string]*Broker
}

func (n *memHistSessNode) SessionNode() string { return n.name }

func (n *memHistSessNode) FetchSession(ctx context.Context, node string, req SessionRequest) (*SessionState, error) {
	b := n.peers[node]
	if b == nil {
		return nil, ErrSessionUnknown
	}
	return b.HandOffSession(ctx, req)
}

// A session with a history subscription moves to a node whose mirror is
// ahead (what followed its last offset is replayed) or behind (what it
// was handed is not delivered again): nothing lost, nothing doubled, in
// offset order.
func TestClusterSessionHistoryAcrossNodes(t *testing.T) {
	for _, ahead := range []bool{true, false} {
		mc, h := newMemCluster(), &memHistories{}
		peers := map[string]*Broker{}
		var ns []*memHistSessNode
		for _, name := range []string{"a", "b"} {
			hn := &memHistNode{memNode: &memNode{c: mc, interest: make(map[string]int), hist: h}, sinks: map[string]HistorySink{}, pos: map[string]uint64{}}
			if h.streams == nil {
				h.streams = map[string]*memStream{}
			}
			n := &memHistSessNode{memHistNode: hn, name: name, peers: peers}
			hn.b = New(Config{Cluster: n, TopicHistory: []HistoryRule{{Pattern: "/topic/chat.#", Size: 10}}})
			peers[name] = hn.b
			hn.start(DefaultVirtualHost, 0)
			ns = append(ns, n)
		}
		a, b := ns[0], ns[1]
		c := newClient(t, a.b)
		tok := hdr(c.connect(), "resume-token")
		c.mustSend(frames.CmdSubscribe, "", "id:s", "destination:/topic/chat.room")
		pub := newClient(t, a.b)
		pub.connect()
		send := func(body string) {
			pub.mustSend(frames.CmdSend, body, "destination:/topic/chat.room")
			_ = pub.s.Poked()
		}
		send("m1")
		a.mirror(DefaultVirtualHost, 0)
		if got := bodiesAndOffsets(t, c.poll()); !slices.Equal(got, []string{"m1@1"}) {
			t.Fatalf("before the drop: %v", got)
		}
		c.drop()
		send("m2")
		if ahead {
			b.mirror(DefaultVirtualHost, 0) // B has m1, m2; A's parked session has nothing kept
		} else {
			a.mirror(DefaultVirtualHost, 0) // A kept m2; B has nothing yet
		}
		r := newClient(t, b.b)
		f, fs := r.resumeOn(tok)
		if hdr(f, "resumed") != "true" {
			t.Fatalf("ahead=%v: CONNECTED %v", ahead, headerLines(f))
		}
		got := bodiesAndOffsets(t, fs)
		send("m3")
		b.mirror(DefaultVirtualHost, 0)
		got = append(got, bodiesAndOffsets(t, r.poll())...)
		if want := []string{"m2@2", "m3@3"}; !slices.Equal(got, want) {
			t.Fatalf("ahead=%v: after the move the client got %v, want %v", ahead, got, want)
		}
	}
}

// What a subscription holds while its session is made again is bounded by
// the outbox: past it the session is a slow consumer when the hold ends,
// never a growing buffer.
func TestClusterSessionHoldIsBounded(t *testing.T) {
	b := New(Config{MaxOutboxBytes: 4096})
	c := newClient(t, b)
	c.connect()
	c.mustSend(frames.CmdSubscribe, "", "id:s", "destination:/topic/t", "receipt:r")
	mustFrame(t, c, "RECEIPT")
	sub := c.s.subTab.getString("s")
	sub.mu.Lock()
	sub.holding = true
	sub.mu.Unlock()
	pub := newClient(t, b)
	pub.connect()
	body := strings.Repeat("x", 512)
	for range 20 { // about 12 KiB: three times the outbox
		pub.mustSend(frames.CmdSend, body, "destination:/topic/t")
	}
	sub.mu.Lock()
	held, over := sub.histLocked().heldBytes, sub.histLocked().heldOver
	sub.mu.Unlock()
	if held > 4096 || !over {
		t.Fatalf("held %d bytes, over %v; want at most the outbox (4096) and over", held, over)
	}
	sub.releaseHeld()
	fs := c.poll()
	if last := fs[len(fs)-1]; last.Command != frames.CmdError || hdr(last, "error-code") != CodeSlowConsumer {
		t.Fatalf("after the hold: %v, want an ERROR slow-consumer last", commands(fs))
	}
}
