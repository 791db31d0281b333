package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/stompbox/stompbox/broker"
)

var chatRule = broker.HistoryRule{Pattern: "/topic/chat.#", Size: 10}

// TestHistoryAcrossRouters: messages published on A under one rule reach
// A's own history and B's, which started in the middle, in the stream's
// order with its sequences, on one epoch.
func TestHistoryAcrossRouters(t *testing.T) {
	noLeaks(t)
	srv := startNATS(t, -1, t.TempDir())
	a := newTestRouter(t, natsURL(srv), "a", nil)
	sa := &fakeHistSink{}
	a.KeepHistory("/", 0, chatRule, sa)

	var sent []*broker.Message
	publish := func(i int) {
		topic := []string{"chat.x", "chat.y"}[i%2]
		m := histMessage(fmt.Sprint("m", i), topic, fmt.Sprint("body ", i))
		if err := publishHistoryWait(t, a, topic, m); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		sent = append(sent, m)
	}
	for i := range 3 {
		publish(i)
	}
	b := newTestRouter(t, natsURL(srv), "b", nil)
	sb := &fakeHistSink{}
	b.KeepHistory("/", 0, chatRule, sb)
	for i := 3; i < 5; i++ {
		publish(i)
	}

	for name, s := range map[string]*fakeHistSink{"a": sa, "b": sb} {
		got := s.waitDeliveries(t, 5)
		if len(got) != 5 {
			t.Fatalf("%s: %d deliveries, want 5: %v", name, len(got), seqs(got))
		}
		for i, d := range got {
			if d.seq != uint64(i+1) || d.topic != []string{"chat.x", "chat.y"}[i%2] {
				t.Fatalf("%s: delivery %d is seq %d topic %q", name, i, d.seq, d.topic)
			}
			sameMessage(t, d.m, sent[i])
			if age := time.Since(time.UnixMilli(d.at)); age < 0 || age > time.Minute {
				t.Fatalf("%s: delivery %d stored at %d (%v ago)", name, i, d.at, age)
			}
		}
	}
	startA, startB := sa.startCalls(), sb.startCalls()
	if len(startA) != 1 || len(startB) != 1 {
		t.Fatalf("Start calls: a %+v, b %+v", startA, startB)
	}
	if startA[0].epoch != startB[0].epoch || !epochPattern.MatchString(startA[0].epoch) {
		t.Fatalf("epochs %q and %q", startA[0].epoch, startB[0].epoch)
	}
	// A's mirror may start after any of the publishes (the first made the
	// stream); B's after the first three.
	if startA[0].last > 5 || startA[0].from != 1 || startB[0].last < 3 || startB[0].last > 5 || startB[0].from != 1 {
		t.Fatalf("Start calls: a %+v, b %+v", startA, startB)
	}
	for _, r := range []*router{a, b} {
		eventually(t, 5*time.Second, "ready", func() bool { return r.historyReady() == nil })
		if lag := r.historyLag(); lag != 0 {
			t.Fatalf("lag %v after catching up", lag)
		}
	}
}

// TestHistoryPerTopicLimit: a rule of size 3 keeps the last 3 messages of
// a topic; a node starting afterwards mirrors only those.
func TestHistoryPerTopicLimit(t *testing.T) {
	noLeaks(t)
	srv := startNATS(t, -1, t.TempDir())
	rule := broker.HistoryRule{Pattern: "/topic/news", Size: 3, MaxAge: time.Hour}
	limit := func(c *routerConfig) { c.MaxHistoryBytes = 1 << 20 }
	a := newTestRouter(t, natsURL(srv), "a", limit)
	a.KeepHistory("/", 0, rule, &fakeHistSink{})
	for i := range 5 {
		if err := publishHistoryWait(t, a, "news", histMessage(fmt.Sprint("n", i), "news", fmt.Sprint(i))); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	b := newTestRouter(t, natsURL(srv), "b", limit)
	sb := &fakeHistSink{}
	b.KeepHistory("/", 0, rule, sb)
	got := sb.waitDeliveries(t, 3)
	if want := []uint64{3, 4, 5}; !reflect.DeepEqual(seqs(got), want) {
		t.Fatalf("b got seqs %v, want %v", seqs(got), want)
	}
	for i, d := range got {
		if d.topic != "news" || string(d.m.Body) != fmt.Sprint(i+2) {
			t.Fatalf("delivery %d: %q %q", i, d.topic, d.m.Body)
		}
	}
	if st := sb.startCalls(); len(st) != 1 || st[0].last != 5 || st[0].from != 1 {
		t.Fatalf("Start calls %+v, want one with last 5", st)
	}
	eventually(t, 5*time.Second, "b ready", func() bool { return b.historyReady() == nil })

	// The stream as the rule and the configuration say.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	name := historyStreamName("sbtest", "/", historyRuleID(rule.Pattern))
	s, err := a.js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	c := s.CachedInfo().Config
	if c.Retention != jetstream.LimitsPolicy || c.Discard != jetstream.DiscardOld || c.MaxMsgsPerSubject != 3 ||
		c.MaxAge != time.Hour || c.Storage != jetstream.FileStorage || c.Replicas != 1 || c.MaxBytes != 1<<20 ||
		c.Duplicates != 2*time.Minute || !reflect.DeepEqual(c.Subjects, []string{"sbtest.h.~2f." + historyRuleID(rule.Pattern) + ".>"}) {
		t.Fatalf("stream %s config %+v", name, c)
	}
}

// TestHistoryMirrorResumes: a mirror started again on the same epoch (the
// node restarted its router) continues after what its sink has, without
// repeating anything.
func TestHistoryMirrorResumes(t *testing.T) {
	noLeaks(t)
	srv := startNATS(t, -1, t.TempDir())
	a := newTestRouter(t, natsURL(srv), "a", nil)
	a.KeepHistory("/", 0, chatRule, &fakeHistSink{})
	publish := func(from, to int) {
		for i := from; i < to; i++ {
			if err := publishHistoryWait(t, a, "chat", histMessage(fmt.Sprint("r", i), "chat", fmt.Sprint(i))); err != nil {
				t.Fatalf("publish %d: %v", i, err)
			}
		}
	}
	publish(0, 3)
	sink := &fakeHistSink{}
	b := newTestRouter(t, natsURL(srv), "b", nil)
	b.KeepHistory("/", 0, chatRule, sink)
	sink.waitDeliveries(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.close(ctx); err != nil {
		t.Fatal(err)
	}
	publish(3, 5)
	c := newTestRouter(t, natsURL(srv), "c", nil)
	c.KeepHistory("/", 0, chatRule, sink)
	sink.waitDeliveries(t, 5)
	// One more: a repeat, coming in stream order, would come before it.
	publish(5, 6)
	got := sink.waitDeliveries(t, 6)
	if want := []uint64{1, 2, 3, 4, 5, 6}; !reflect.DeepEqual(seqs(got), want) || sink.repeats != 0 {
		t.Fatalf("deliveries %v (%d repeats), want %v", seqs(got), sink.repeats, want)
	}
	st := sink.startCalls()
	if len(st) != 2 || st[0].epoch != st[1].epoch || st[1].last < 5 || st[1].from != 4 {
		t.Fatalf("Start calls %+v, want the second on the same epoch with last 5, from 4", st)
	}
}

// TestHistoryStreamDeleted: a stream deleted behind the nodes' back is made
// again by the mirror, whose sink gets a new epoch and the new stream's
// messages from sequence 1.
func TestHistoryStreamDeleted(t *testing.T) {
	noLeaks(t)
	srv := startNATS(t, -1, t.TempDir())
	a := newTestRouter(t, natsURL(srv), "a", nil)
	sink := &fakeHistSink{}
	a.KeepHistory("/", 0, chatRule, sink)
	for i := range 2 {
		if err := publishHistoryWait(t, a, "chat.d", histMessage(fmt.Sprint("d", i), "chat.d", "old")); err != nil {
			t.Fatal(err)
		}
	}
	sink.waitDeliveries(t, 2)
	old := sink.startCalls()[0].epoch

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.js.DeleteStream(ctx, historyStreamName("sbtest", "/", historyRuleID(chatRule.Pattern))); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "a Start on a new epoch", func() bool {
		st := sink.startCalls()
		return len(st) >= 2 && st[len(st)-1].epoch != old
	})
	st := sink.startCalls()
	if last := st[len(st)-1]; !epochPattern.MatchString(last.epoch) || last.from != 1 || last.last != 0 {
		t.Fatalf("Start calls %+v", st)
	}
	// A publish may first find the stream gone (and be told unavailable).
	eventually(t, 10*time.Second, "a publish to the new stream", func() bool {
		err := publishHistoryWait(t, a, "chat.d", histMessage("d-new", "chat.d", "new"))
		if err != nil && !errors.Is(err, broker.ErrClusterUnavailable) {
			t.Fatalf("publish: %v", err)
		}
		return err == nil
	})
	got := sink.waitDeliveries(t, 3)
	if d := got[len(got)-1]; d.seq != 1 || string(d.m.Body) != "new" || d.m.ID != "d-new" {
		t.Fatalf("after the new epoch: seq %d %q %q", d.seq, d.m.ID, d.m.Body)
	}
	eventually(t, 5*time.Second, "ready", func() bool { return a.historyReady() == nil })
}

// TestHistoryWildcardTopics: every topic a wildcard rule matches, escaped
// segments included, comes back with its own name.
func TestHistoryWildcardTopics(t *testing.T) {
	noLeaks(t)
	srv := startNATS(t, -1, t.TempDir())
	a := newTestRouter(t, natsURL(srv), "a", nil)
	sink := &fakeHistSink{}
	a.KeepHistory("/", 0, chatRule, sink)
	topics := []string{"chat", "chat.a.b", "chat.room 7~ü.*", "chat.>.x"}
	for i, topic := range topics {
		if err := publishHistoryWait(t, a, topic, histMessage(fmt.Sprint("w", i), topic, topic)); err != nil {
			t.Fatalf("publish to %q: %v", topic, err)
		}
	}
	got := sink.waitDeliveries(t, len(topics))
	for i, d := range got {
		if d.topic != topics[i] || string(d.m.Body) != topics[i] || d.seq != uint64(i+1) {
			t.Fatalf("delivery %d: seq %d topic %q body %q, want %q", i, d.seq, d.topic, d.m.Body, topics[i])
		}
	}
}

// TestHistoryDedupe: a second publish with the same idempotency key within
// the window is a duplicate, stored once.
func TestHistoryDedupe(t *testing.T) {
	noLeaks(t)
	srv := startNATS(t, -1, t.TempDir())
	a := newTestRouter(t, natsURL(srv), "a", nil)
	sink := &fakeHistSink{}
	a.KeepHistory("/", 0, chatRule, sink)
	m1, m2 := histMessage("k1", "chat", "once"), histMessage("k2", "chat", "twice")
	m1.DedupeID, m2.DedupeID = "key-1", "key-1"
	if err := publishHistoryWait(t, a, "chat", m1); err != nil {
		t.Fatal(err)
	}
	if err := publishHistoryWait(t, a, "chat", m2); !errors.Is(err, broker.ErrClusterDuplicate) {
		t.Fatalf("second publish: %v, want ErrClusterDuplicate", err)
	}
	// A resend of a message under its own id is stored once and confirmed.
	m3 := histMessage("k3", "chat", "resent")
	for range 2 {
		if err := publishHistoryWait(t, a, "chat", m3); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := a.js.Stream(ctx, historyStreamName("sbtest", "/", historyRuleID(chatRule.Pattern)))
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Msgs; n != 2 {
		t.Fatalf("stream holds %d messages, want 2", n)
	}
	// One more: a duplicate, coming in stream order, would come before it.
	if err := publishHistoryWait(t, a, "chat", histMessage("k4", "chat", "last")); err != nil {
		t.Fatal(err)
	}
	sink.waitDeliveries(t, 3)
	if got := sink.deliveries(); len(got) != 3 || got[0].m.ID != "k1" || got[1].m.ID != "k3" || got[2].m.ID != "k4" {
		t.Fatalf("deliveries %v", seqs(got))
	}
}

// TestHistoryUndecodableSkipped: a message on a history subject that is not
// ours is counted and skipped; the mirror goes on with the next one.
func TestHistoryUndecodableSkipped(t *testing.T) {
	noLeaks(t)
	srv := startNATS(t, -1, t.TempDir())
	reg := prometheus.NewRegistry()
	a := newTestRouter(t, natsURL(srv), "a", func(c *routerConfig) { c.Registerer = reg })
	sink := &fakeHistSink{}
	a.KeepHistory("/", 0, chatRule, sink)
	if err := publishHistoryWait(t, a, "chat", histMessage("g1", "chat", "good")); err != nil {
		t.Fatal(err)
	}
	sink.waitDeliveries(t, 1)
	subj := historySubject("sbtest", "/", historyRuleID(chatRule.Pattern), "chat")
	if err := a.nc.Publish(subj, []byte("garbage")); err != nil {
		t.Fatal(err)
	}
	if err := a.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the garbage counted", func() bool {
		return testutil.ToFloat64(a.history.met.decodeErrors) == 1
	})
	if err := publishHistoryWait(t, a, "chat", histMessage("g2", "chat", "good again")); err != nil {
		t.Fatal(err)
	}
	got := sink.waitDeliveries(t, 2)
	if len(got) != 2 || got[1].seq != 3 || got[1].m.ID != "g2" {
		t.Fatalf("deliveries %v", seqs(got))
	}
	if n := testutil.ToFloat64(a.history.met.mirrored); n != 2 {
		t.Fatalf("mirrored_total %v, want 2", n)
	}
	eventually(t, 5*time.Second, "ready", func() bool { return a.historyReady() == nil })
	if n, err := testutil.GatherAndCount(reg, "stompbox_cluster_history_lag", "stompbox_cluster_history_mirrored_total",
		"stompbox_cluster_history_decode_errors_total"); err != nil || n != 3 {
		t.Fatalf("history metrics registered: %d, %v", n, err)
	}
}

// TestHistoryReadyWaitsForCatchUp: Ready names the history whose mirror has
// not delivered up to its Start's last yet.
func TestHistoryReadyWaitsForCatchUp(t *testing.T) {
	noLeaks(t)
	srv := startNATS(t, -1, t.TempDir())
	a := newTestRouter(t, natsURL(srv), "a", nil)
	a.KeepHistory("/", 0, chatRule, &fakeHistSink{})
	for i := range 3 {
		if err := publishHistoryWait(t, a, "chat", histMessage(fmt.Sprint("c", i), "chat", "x")); err != nil {
			t.Fatal(err)
		}
	}
	b := newTestRouter(t, natsURL(srv), "b", nil)
	if err := b.historyReady(); err != nil {
		t.Fatalf("ready without histories: %v", err)
	}
	gate := make(chan struct{})
	sink := &fakeHistSink{gate: gate}
	b.KeepHistory("/", 0, chatRule, sink)
	eventually(t, 5*time.Second, "Start", func() bool { return len(sink.startCalls()) == 1 })
	err := b.historyReady()
	if err == nil || !strings.Contains(err.Error(), "/topic/chat.#") || !strings.Contains(err.Error(), `vhost "/"`) {
		t.Fatalf("ready while catching up: %v", err)
	}
	if lag := b.historyLag(); lag != 3 {
		t.Fatalf("lag %v while catching up, want 3", lag)
	}
	for range 3 {
		gate <- struct{}{}
	}
	sink.waitDeliveries(t, 3)
	eventually(t, 5*time.Second, "ready", func() bool { return b.historyReady() == nil })
	// Publishing to a rule nobody keeps fails at once.
	if err := b.PublishHistory("/", "chat", 7, histMessage("z", "chat", "x"), broker.ClusterDoneFunc(func(error) {
		t.Error("done called")
	})); !errors.Is(err, broker.ErrClusterUnavailable) {
		t.Fatalf("publish to an unknown rule: %v", err)
	}
}

// TestHistoryNATSDownAndBack: while NATS is down a history publish fails as
// unavailable within the publish timeout and the node is not ready; once
// NATS is back with its store, the mirror goes on on the same epoch.
func TestHistoryNATSDownAndBack(t *testing.T) {
	noLeaks(t)
	dir := t.TempDir()
	srv := startNATS(t, -1, dir)
	port := srv.Addr().(*net.TCPAddr).Port
	const timeout = 2 * time.Second
	n, err := New(context.Background(), Config{URLs: []string{natsURL(srv)}, Name: "sbtest", NodeName: "a", PublishTimeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	// Closed while NATS is up (the restarted server's cleanup would stop
	// it first): the presence watcher's stop waits for NATS otherwise.
	var closeOnce sync.Once
	closeNode := func() {
		closeOnce.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := n.Close(ctx); err != nil {
				t.Errorf("close: %v", err)
			}
		})
	}
	t.Cleanup(closeNode)
	sink := &fakeHistSink{}
	n.KeepHistory("/", 0, chatRule, sink)
	for i := range 2 {
		if err := publishHistoryWait(t, n.router, "chat", histMessage(fmt.Sprint("b", i), "chat", "before")); err != nil {
			t.Fatal(err)
		}
	}
	sink.waitDeliveries(t, 2)
	ready := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return n.Ready(ctx)
	}
	eventually(t, 5*time.Second, "ready", func() bool { return ready() == nil })

	srv.Shutdown()
	srv.WaitForShutdown()
	eventually(t, 5*time.Second, "disconnected", func() bool { return !n.link.connected() })
	start := time.Now()
	if err := publishHistoryWait(t, n.router, "chat", histMessage("lost", "chat", "x")); !errors.Is(err, broker.ErrClusterUnavailable) {
		t.Fatalf("publish while down: %v", err)
	}
	if d := time.Since(start); d > timeout+time.Second {
		t.Fatalf("publish while down failed after %v", d)
	}
	if err := ready(); err == nil {
		t.Fatal("ready while NATS is down")
	}
	eventually(t, 5*time.Second, "the mirror stopped", func() bool { return n.router.historyReady() != nil })

	startNATS(t, port, dir)
	eventually(t, 20*time.Second, "ready again", func() bool { return ready() == nil })
	eventually(t, 10*time.Second, "publish after the outage", func() bool {
		err := publishHistoryWait(t, n.router, "chat", histMessage("after", "chat", "after"))
		if err != nil && !errors.Is(err, broker.ErrClusterUnavailable) {
			t.Fatalf("publish after the outage: %v", err)
		}
		return err == nil
	})
	got := sink.waitDeliveries(t, 3)
	if want := []uint64{1, 2, 3}; !reflect.DeepEqual(seqs(got), want) || got[2].m.ID != "after" || sink.repeats != 0 {
		t.Fatalf("deliveries %v (%d repeats), want %v", seqs(got), sink.repeats, want)
	}
	st := sink.startCalls()
	if len(st) < 2 {
		t.Fatalf("Start calls %+v: the mirror never restarted", st)
	}
	for _, s := range st[1:] {
		if s.epoch != st[0].epoch || s.from < 3 {
			t.Fatalf("Start calls %+v: want the same epoch, from 3 on", st)
		}
	}
	closeNode()
}
