package broker

import (
	"errors"
	"slices"
	"testing"

	"github.com/stompbox/stompbox/frames"
)

// histCluster builds a memCluster whose nodes keep the history of
// /topic/chat.# (size per topic) in it, with every mirror started.
func histCluster(t *testing.T, nodes, size int) (*memCluster, *memHistories, []*memHistNode) {
	t.Helper()
	mc, h := newMemCluster(), &memHistories{}
	var ns []*memHistNode
	for range nodes {
		n := mc.histNode(h, Config{TopicHistory: []HistoryRule{{Pattern: "/topic/chat.#", Size: size}}})
		if from := n.start(DefaultVirtualHost, 0); from != 1 {
			t.Fatalf("a fresh mirror starts at %d, want 1", from)
		}
		ns = append(ns, n)
	}
	return mc, h, ns
}

// mirrorAll runs every node's mirror.
func mirrorAll(ns []*memHistNode) {
	for _, n := range ns {
		n.mirror(DefaultVirtualHost, 0)
	}
}

// bodiesAndOffsets lists "body@seq" of the MESSAGEs in fs.
func bodiesAndOffsets(t *testing.T, fs []*frames.Frame) []string {
	t.Helper()
	var got []string
	for _, f := range fs {
		if f.Command != frames.CmdMessage {
			continue
		}
		got = append(got, string(f.Body)+"@"+offsetSeq(hdr(f, "offset")))
	}
	return got
}

// A SEND to a topic whose history the cluster keeps is stored there,
// receipted once stored, and delivered by every node's mirror (the
// publisher's too) with the stream's offsets, the same everywhere.
func TestClusterHistorySendIsStoredAndMirroredEverywhere(t *testing.T) {
	mc, h, ns := histCluster(t, 2, 10)
	a, b := ns[0], ns[1]
	subA, subB := newClient(t, a.b), newClient(t, b.b)
	for _, c := range []*client{subA, subB} {
		c.connect()
		c.mustSend(frames.CmdSubscribe, "", "id:s", "destination:/topic/chat.room", "receipt:r")
		if f := c.next(); f.Command != frames.CmdReceipt || hdr(f, "offset") != "e1-0" {
			t.Fatalf("SUBSCRIBE: %s %v, want RECEIPT offset:e1-0", f.Command, headerLines(f))
		}
	}
	pub := newClient(t, a.b)
	pub.connect()
	pub.mustSend(frames.CmdSend, "one", "destination:/topic/chat.room", "receipt:p1")
	pub.mustSend(frames.CmdSend, "other", "destination:/topic/chat.other")
	pub.mustSend(frames.CmdSend, "two", "destination:/topic/chat.room", "receipt:p2")
	if err := pub.s.Poked(); err != nil {
		t.Fatal(err)
	}
	if got := receiptIDs(pub.poll()); !slices.Equal(got, []string{"p1", "p2"}) {
		t.Fatalf("publisher got receipts %v, want p1 p2", got)
	}
	// Nothing reaches a subscriber before the mirror delivers it, not even
	// on the publisher's node.
	if fs := subA.poll(); len(fs) != 0 {
		t.Fatalf("node A delivered %v before its mirror did", commands(fs))
	}
	mirrorAll(ns)
	for i, c := range []*client{subA, subB} {
		if got := bodiesAndOffsets(t, c.poll()); !slices.Equal(got, []string{"one@1", "two@3"}) {
			t.Fatalf("node %d delivered %v, want one@1 two@3 (the stream's offsets)", i, got)
		}
	}
	mc.mu.Lock()
	events := len(a.events) + len(b.events)
	mc.mu.Unlock()
	h.mu.Lock()
	pubs := len(h.pubs)
	h.mu.Unlock()
	if pubs != 3 {
		t.Fatalf("PublishHistory got %d messages, want 3", pubs)
	}
	// Interest is still announced (a node's topic subscriptions), but no
	// history message went through PublishTopic: B got each once.
	if events == 0 {
		t.Fatal("no topic interest announced")
	}
	if got := a.b.HistoryStats(); got.Topics != 2 || got.Messages != 3 {
		t.Fatalf("node A retains %+v, want 2 topics, 3 messages", got)
	}
}

// A client resuming on another node gets what it missed from that node's
// mirror, recovered:true; an offset that node has not reached yet makes
// it skip what it has, and get the rest live.
func TestClusterHistoryResumeOnAnotherNode(t *testing.T) {
	_, _, ns := histCluster(t, 2, 10)
	a, b := ns[0], ns[1]
	pub := newClient(t, a.b)
	pub.connect()
	for _, body := range []string{"m1", "m2", "m3"} {
		pub.mustSend(frames.CmdSend, body, "destination:/topic/chat.room")
		pub.mustSend(frames.CmdSend, "noise", "destination:/topic/chat.other")
	}
	mirrorAll(ns)
	// chat.room is at seqs 1, 3, 5: resume after 1 on B.
	c := newClient(t, b.b)
	c.connect()
	c.mustSend(frames.CmdSubscribe, "", "id:s", "destination:/topic/chat.room", "resume-after:e1-1", "receipt:r")
	fs := c.poll()
	if len(fs) != 3 || fs[0].Command != frames.CmdReceipt || hdr(fs[0], "recovered") != "true" || hdr(fs[0], "offset") != "e1-6" {
		t.Fatalf("got %v %v, want RECEIPT recovered:true offset:e1-6 and 2 MESSAGEs", commands(fs), headerLines(fs[0]))
	}
	if got := bodiesAndOffsets(t, fs); !slices.Equal(got, []string{"m2@3", "m3@5"}) || hdr(fs[1], "replayed") != "true" {
		t.Fatalf("replayed %v, want m2@3 m3@5 marked replayed", got)
	}
	// The same offset on the other node replays the same messages.
	c2 := newClient(t, a.b)
	c2.connect()
	c2.mustSend(frames.CmdSubscribe, "", "id:s", "destination:/topic/chat.room", "resume-after:e1-1", "receipt:r")
	if got := bodiesAndOffsets(t, c2.poll()); !slices.Equal(got, []string{"m2@3", "m3@5"}) {
		t.Fatalf("node A replayed %v, want m2@3 m3@5", got)
	}

	// A's client saw m4 (seq 7) before B's mirror got it: resuming after 7
	// on B replays nothing, and B's mirror then delivers only what follows.
	pub.mustSend(frames.CmdSend, "m4", "destination:/topic/chat.room")
	pub.mustSend(frames.CmdSend, "m5", "destination:/topic/chat.room")
	a.mirror(DefaultVirtualHost, 0)
	late := newClient(t, b.b)
	late.connect()
	late.mustSend(frames.CmdSubscribe, "", "id:s", "destination:/topic/chat.room", "resume-after:e1-7", "receipt:r")
	fs = late.poll()
	if len(fs) != 1 || hdr(fs[0], "recovered") != "true" {
		t.Fatalf("got %v, want only a RECEIPT recovered:true", commands(fs))
	}
	b.mirror(DefaultVirtualHost, 0)
	if got := bodiesAndOffsets(t, late.poll()); !slices.Equal(got, []string{"m5@8"}) {
		t.Fatalf("after catching up node B delivered %v, want only m5@8", got)
	}
	if got := bodiesAndOffsets(t, c.poll()); !slices.Equal(got, []string{"m4@7", "m5@8"}) {
		t.Fatalf("the earlier subscriber got %v, want m4@7 m5@8", got)
	}
	// Another lifetime's offset: nothing recovered, everything retained.
	old := newClient(t, b.b)
	old.connect()
	old.mustSend(frames.CmdSubscribe, "", "id:s", "destination:/topic/chat.room", "resume-after:abc-2", "receipt:r")
	fs = old.poll()
	if hdr(fs[0], "recovered") != "false" || len(bodiesAndOffsets(t, fs)) != 5 {
		t.Fatalf("got %v recovered %q, want recovered:false and all 5 retained", commands(fs), hdr(fs[0], "recovered"))
	}
}

// A node whose mirror starts on a stream that holds history already loads
// it without delivering it as new; it knows each topic only from its
// oldest retained message on.
func TestClusterHistoryLateNodeLoadsQuietly(t *testing.T) {
	mc, h, ns := histCluster(t, 1, 2)
	a := ns[0]
	pub := newClient(t, a.b)
	pub.connect()
	for _, body := range []string{"m1", "m2", "m3"} { // seqs 1-3; the stream keeps 2 and 3
		pub.mustSend(frames.CmdSend, body, "destination:/topic/chat.room")
	}
	c := mc.histNode(h, Config{TopicHistory: []HistoryRule{{Pattern: "/topic/chat.#", Size: 2}}})
	live := newClient(t, c.b)
	live.connect()
	live.mustSend(frames.CmdSubscribe, "", "id:s", "destination:/topic/chat.room", "receipt:r")
	if f := live.next(); f.Command != frames.CmdReceipt || hdr(f, "offset") != "" {
		t.Fatalf("before its mirror starts: %s %v, want a RECEIPT without offset", f.Command, headerLines(f))
	}
	c.start(DefaultVirtualHost, 0)
	if fs := live.poll(); len(fs) != 0 {
		t.Fatalf("loading delivered %v to a live subscriber", commands(fs))
	}
	for _, tc := range []struct {
		after     string
		recovered string
		want      []string
	}{
		{"e1-2", "true", []string{"m3@3"}},
		{"e1-1", "true", []string{"m2@2", "m3@3"}}, // seq 1 evicted: nothing of the topic between
		{"e1-0", "false", []string{"m2@2", "m3@3"}},
	} {
		expectResume(t, c.b, tc.after, tc.recovered, tc.want...)
	}
	// history:n is recovered only when that many are retained.
	r := newClient(t, c.b)
	r.connect()
	r.mustSend(frames.CmdSubscribe, "", "id:s", "destination:/topic/chat.room", "history:3", "receipt:r")
	if fs := r.poll(); hdr(fs[0], "recovered") != "false" || len(bodiesAndOffsets(t, fs)) != 2 {
		t.Fatalf("history:3: %v recovered %q, want the 2 retained, recovered:false", commands(fs), hdr(fs[0], "recovered"))
	}
	// Live from here on.
	pub.mustSend(frames.CmdSend, "m4", "destination:/topic/chat.room")
	c.mirror(DefaultVirtualHost, 0)
	if got := bodiesAndOffsets(t, live.poll()); !slices.Equal(got, []string{"m4@4"}) {
		t.Fatalf("after loading, live got %v, want m4@4", got)
	}
	// A mirror restarting on the same lifetime goes on where it was.
	if from := c.start(DefaultVirtualHost, 0); from != 5 {
		t.Fatalf("restart on the same epoch from %d, want 5", from)
	}
}

// A new lifetime of the cluster's history drops what the node kept:
// resuming with the old epoch is not recovered.
func TestClusterHistoryNewEpochStartsOver(t *testing.T) {
	_, h, ns := histCluster(t, 1, 5)
	a := ns[0]
	pub := newClient(t, a.b)
	pub.connect()
	pub.mustSend(frames.CmdSend, "old", "destination:/topic/chat.room")
	a.mirror(DefaultVirtualHost, 0)
	h.renew(DefaultVirtualHost, 0, "e2")
	if from := a.start(DefaultVirtualHost, 0); from != 1 {
		t.Fatalf("a new epoch starts at %d, want 1", from)
	}
	if got := a.b.HistoryStats(); got.Topics != 0 || got.Messages != 0 {
		t.Fatalf("after a new epoch the node retains %+v, want nothing", got)
	}
	pub.mustSend(frames.CmdSend, "new", "destination:/topic/chat.room")
	a.mirror(DefaultVirtualHost, 0)
	r := newClient(t, a.b)
	r.connect()
	r.mustSend(frames.CmdSubscribe, "", "id:s", "destination:/topic/chat.room", "resume-after:e1-1", "receipt:r")
	fs := r.poll()
	if hdr(fs[0], "recovered") != "false" || !slices.Equal(bodiesAndOffsets(t, fs), []string{"new@1"}) {
		t.Fatalf("old epoch: recovered %q %v, want false and new@1", hdr(fs[0], "recovered"), bodiesAndOffsets(t, fs))
	}
}

// The cluster refusing to store: ERROR cluster-unavailable, retryable,
// and nothing delivered anywhere.
func TestClusterHistorySendRefused(t *testing.T) {
	_, h, ns := histCluster(t, 1, 5)
	a := ns[0]
	h.pubErr = errors.Join(ErrClusterUnavailable, errors.New("no responders"))
	sub := newClient(t, a.b)
	sub.connect()
	sub.mustSend(frames.CmdSubscribe, "", "id:s", "destination:/topic/chat.room")
	pub := newClient(t, a.b)
	pub.connect()
	_ = pub.send(frames.CmdSend, "x", "destination:/topic/chat.room", "receipt:s")
	_ = pub.s.Poked()
	f := pub.next()
	if f.Command != frames.CmdError || hdr(f, "error-code") != CodeClusterUnavailable || hdr(f, "retryable") != "true" || hdr(f, "receipt-id") != "s" {
		t.Fatalf("got %s %v, want ERROR cluster-unavailable retryable", f.Command, headerLines(f))
	}
	a.mirror(DefaultVirtualHost, 0)
	if fs := sub.poll(); len(fs) != 0 {
		t.Fatalf("a refused SEND delivered %v", commands(fs))
	}
}

// A transaction's SEND to a history topic is stored at COMMIT and
// delivered once, by the mirror; an idempotency-key names it to the
// cluster.
func TestClusterHistoryCommitAndKey(t *testing.T) {
	_, h, ns := histCluster(t, 1, 5)
	a := ns[0]
	sub := newClient(t, a.b)
	sub.connect()
	sub.mustSend(frames.CmdSubscribe, "", "id:s", "destination:/topic/chat.room")
	pub := newClient(t, a.b)
	pub.connect()
	pub.mustSend(frames.CmdBegin, "", "transaction:t")
	pub.mustSend(frames.CmdSend, "tx", "destination:/topic/chat.room", "transaction:t")
	pub.mustSend(frames.CmdCommit, "", "transaction:t", "receipt:c")
	if f := pub.next(); f.Command != frames.CmdReceipt {
		t.Fatalf("COMMIT: %s %v", f.Command, headerLines(f))
	}
	if fs := sub.poll(); len(fs) != 0 {
		t.Fatalf("COMMIT delivered %v itself", commands(fs))
	}
	pub.mustSend(frames.CmdSend, "keyed", "destination:/topic/chat.room", "idempotency-key:k1")
	_ = pub.s.Poked()
	a.mirror(DefaultVirtualHost, 0)
	if got := bodiesAndOffsets(t, sub.poll()); !slices.Equal(got, []string{"tx@1", "keyed@2"}) {
		t.Fatalf("delivered %v, want tx@1 keyed@2", got)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.pubs) != 2 || h.pubs[0].DedupeID != "" || h.pubs[1].DedupeID != clusterDedupeID("/", pub.s.principal.Name, "/topic/chat.room", []byte("k1")) {
		t.Fatalf("stored %d messages, DedupeIDs %q %q; want 2, the second named by its key", len(h.pubs), h.pubs[0].DedupeID, h.pubs[len(h.pubs)-1].DedupeID)
	}
}

// What the stream dropped before the mirror read it is a gap: no topic's
// run is known across it. Without one, a resume after the message evicted
// here last is recovered, as on a single node.
func TestClusterHistoryGapsBoundWhatIsKnown(t *testing.T) {
	_, _, ns := histCluster(t, 1, 2)
	a := ns[0]
	pub := newClient(t, a.b)
	pub.connect()
	send := func(body, topic string) { pub.mustSend(frames.CmdSend, body, "destination:/topic/"+topic) }
	resume := func(after, recovered string, want ...string) {
		t.Helper()
		expectResume(t, a.b, after, recovered, want...)
	}
	// The mirror keeps up: m1 is evicted here, not lost.
	for _, sd := range [][2]string{{"m1", "chat.room"}, {"u", "chat.other"}, {"m2", "chat.room"}, {"m3", "chat.room"}} {
		send(sd[0], sd[1])
		a.mirror(DefaultVirtualHost, 0)
	}
	resume("e1-1", "true", "m2@3", "m3@4")
	resume("e1-0", "false", "m2@3", "m3@4")
	// The mirror falls behind: m4 (5) is dropped by the stream (size 2)
	// before it is read.
	send("m4", "chat.room")
	send("m5", "chat.room")
	send("m6", "chat.room")
	a.mirror(DefaultVirtualHost, 0)
	resume("e1-4", "false", "m5@6", "m6@7")
	resume("e1-5", "true", "m5@6", "m6@7")
}

// A COMMIT whose history messages the cluster holds back (its mirrors are
// behind) waits for room instead of failing part-stored.
func TestClusterHistoryCommitWaitsForRoom(t *testing.T) {
	_, h, ns := histCluster(t, 1, 5)
	a := ns[0]
	h.full = 3
	pub := newClient(t, a.b)
	pub.connect()
	pub.mustSend(frames.CmdBegin, "", "transaction:t")
	pub.mustSend(frames.CmdSend, "x1", "destination:/topic/chat.room", "transaction:t")
	pub.mustSend(frames.CmdSend, "x2", "destination:/topic/chat.room", "transaction:t")
	pub.mustSend(frames.CmdCommit, "", "transaction:t", "receipt:c")
	if f := pub.next(); f.Command != frames.CmdReceipt || hdr(f, "receipt-id") != "c" {
		t.Fatalf("COMMIT: %s %v, want its RECEIPT", f.Command, headerLines(f))
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.pubs) != 2 || h.full != 0 {
		t.Fatalf("stored %d, %d refusals left; want 2 stored after 3 refusals", len(h.pubs), h.full)
	}
}

// Two rules of one pattern share a stream: the second rule's mirror
// delivers nothing, so nobody gets a message twice.
func TestClusterHistoryDuplicateRuleDeliversOnce(t *testing.T) {
	mc, h := newMemCluster(), &memHistories{}
	rules := []HistoryRule{{Pattern: "/topic/chat.#", Size: 5}, {Pattern: "/topic/chat.#", Size: 5}}
	n := mc.histNode(h, Config{TopicHistory: rules})
	n.start(DefaultVirtualHost, 0)
	n.start(DefaultVirtualHost, 1)
	sub := newClient(t, n.b)
	sub.connect()
	sub.mustSend(frames.CmdSubscribe, "", "id:s", "destination:/topic/chat.room")
	pub := newClient(t, n.b)
	pub.connect()
	pub.mustSend(frames.CmdSend, "once", "destination:/topic/chat.room")
	_ = pub.s.Poked()
	// The second rule's stream gets the same messages (one stream in a
	// real cluster).
	h.mu.Lock()
	h.streams[streamKey(DefaultVirtualHost, 1)].msgs = h.streams[streamKey(DefaultVirtualHost, 0)].msgs
	h.mu.Unlock()
	n.mirror(DefaultVirtualHost, 0)
	n.mirror(DefaultVirtualHost, 1)
	if got := bodiesAndOffsets(t, sub.poll()); !slices.Equal(got, []string{"once@1"}) {
		t.Fatalf("delivered %v, want once@1 once", got)
	}
}

// expectResume subscribes a new client of b to /topic/chat.room resuming
// after the offset after, and requires the RECEIPT's recovered and the
// replay ("body@seq") to be as given.
func expectResume(t *testing.T, b *Broker, after, recovered string, want ...string) {
	t.Helper()
	r := newClient(t, b)
	r.connect()
	r.mustSend(frames.CmdSubscribe, "", "id:s", "destination:/topic/chat.room", "resume-after:"+after, "receipt:r")
	fs := r.poll()
	if hdr(fs[0], "recovered") != recovered || !slices.Equal(bodiesAndOffsets(t, fs), want) {
		t.Fatalf("resume-after %s: recovered %q %v, want %s %v", after, hdr(fs[0], "recovered"), bodiesAndOffsets(t, fs), recovered, want)
	}
}
