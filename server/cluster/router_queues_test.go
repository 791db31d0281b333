package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/stompbox/stompbox/broker"
)

func TestQueuePublishStored(t *testing.T) {
	noLeaks(t)
	srv := startNATS(t, -1, t.TempDir())
	r := newTestRouter(t, natsURL(srv), "a", nil)
	if err := publishWait(t, r, "/queue/orders", testMessage("m1", "/queue/orders", "one")); err != nil {
		t.Fatalf("publish: %v", err)
	}
	// The same id again is stored once (Nats-Msg-Id dedupe) and still acknowledged.
	if err := publishWait(t, r, "/queue/orders", testMessage("m1", "/queue/orders", "one")); err != nil {
		t.Fatalf("duplicate publish: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := r.js.Stream(ctx, "SBTEST_Q_~2f")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := info.Config
	if c.Retention != jetstream.WorkQueuePolicy || c.Storage != jetstream.FileStorage || c.Replicas != 1 ||
		c.Duplicates != 2*time.Minute || len(c.Subjects) != 1 || c.Subjects[0] != "sbtest.q.~2f.>" {
		t.Fatalf("stream config %+v", c)
	}
	if info.State.Msgs != 1 {
		t.Fatalf("stream holds %d messages, want 1", info.State.Msgs)
	}
	msg, err := s.GetLastMsgForSubject(ctx, "sbtest.q.~2f.orders")
	if err != nil {
		t.Fatal(err)
	}
	if got := msg.Header.Get(jetstream.MsgIDHeader); got != "m1" {
		t.Fatalf("Nats-Msg-Id %q", got)
	}
	m, err := decodeMessage(msg.Data)
	if err != nil || m.ID != "m1" || string(m.Body) != "one" || !m.Persistent {
		t.Fatalf("stored %+v, %v", m, err)
	}
}

func TestQueueFull(t *testing.T) {
	noLeaks(t)
	srv := startNATS(t, -1, t.TempDir())
	r := newTestRouter(t, natsURL(srv), "a", func(c *routerConfig) { c.MaxQueueMessages = 2 })
	for i, id := range ids(2, "f") {
		if err := publishWait(t, r, "/queue/small", testMessage(id, "/queue/small", "x")); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	err := publishWait(t, r, "/queue/small", testMessage("f-3", "/queue/small", "x"))
	if !errors.Is(err, broker.ErrClusterFull) {
		t.Fatalf("third publish: %v, want ErrClusterFull", err)
	}
	// Another queue of the same vhost has its own bound.
	if err := publishWait(t, r, "/queue/other", testMessage("o-1", "/queue/other", "x")); err != nil {
		t.Fatalf("other queue: %v", err)
	}
}

// ackAll settles every offer with Ack and gives its credit back.
func ackAll(s *fakeSink) func(offer) {
	return func(o offer) {
		o.settle.Ack()
		s.give(1)
	}
}

func TestQueueCompetingConsumers(t *testing.T) {
	noLeaks(t)
	srv := startNATS(t, -1, t.TempDir())
	a := newTestRouter(t, natsURL(srv), "a", nil)
	b := newTestRouter(t, natsURL(srv), "b", nil)
	const n = 300
	for _, id := range ids(n, "c") {
		if err := publishWait(t, a, "/queue/work", testMessage(id, "/queue/work", id)); err != nil {
			t.Fatal(err)
		}
	}
	sa, sb := newFakeSink(5), newFakeSink(5)
	sa.auto, sb.auto = ackAll(sa), ackAll(sb)
	consume(t, a, "/queue/work", sa)
	consume(t, b, "/queue/work", sb)
	eventually(t, 20*time.Second, "all messages", func() bool { return sa.count()+sb.count() >= n })
	time.Sleep(200 * time.Millisecond)
	seen := map[string]int{}
	for _, s := range []*fakeSink{sa, sb} {
		s.mu.Lock()
		for _, o := range s.offers {
			seen[o.m.ID]++
			if o.deliveries != 1 {
				t.Errorf("%s delivered %d times", o.m.ID, o.deliveries)
			}
		}
		s.mu.Unlock()
	}
	if len(seen) != n {
		t.Fatalf("%d distinct messages, want %d", len(seen), n)
	}
	for id, c := range seen {
		if c != 1 {
			t.Fatalf("%s offered %d times", id, c)
		}
	}
	if sa.count() == 0 || sb.count() == 0 {
		t.Fatalf("node a got %d, node b %d: not competing", sa.count(), sb.count())
	}
}

func TestQueueNakRedelivers(t *testing.T) {
	noLeaks(t)
	srv := startNATS(t, -1, t.TempDir())
	r := newTestRouter(t, natsURL(srv), "a", nil)
	s := newFakeSink(10)
	feed := consume(t, r, "/queue/nak", s).(*queueFeed)
	if err := publishWait(t, r, "/queue/nak", testMessage("n1", "/queue/nak", "x")); err != nil {
		t.Fatal(err)
	}
	o, ok := s.next(5 * time.Second)
	if !ok || o.m.ID != "n1" || o.deliveries != 1 {
		t.Fatalf("first offer %+v %v", o, ok)
	}
	// The shared consumer is as this node wants it: the next feed of the
	// queue only looks it up.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := r.js.Consumer(ctx, "SBTEST_Q_~2f", feed.durab)
	if err != nil || !sameConsumer(c.CachedInfo().Config, feed.consumerConfig()) {
		t.Fatalf("consumer lookup: %v (or its config differs)", err)
	}
	o.settle.Nak()
	o.settle.Ack() // a second settle is ignored
	o, ok = s.next(5 * time.Second)
	if !ok || o.m.ID != "n1" || o.deliveries != 2 {
		t.Fatalf("after Nak: offer %+v %v, want n1 with deliveries 2", o, ok)
	}
	o.settle.Term()
	if o, ok := s.next(time.Second); ok {
		t.Fatalf("offered again after Term: %+v", o)
	}
}

func TestQueueStoppedNodeRedelivers(t *testing.T) {
	noLeaks(t)
	srv := startNATS(t, -1, t.TempDir())
	short := func(c *routerConfig) { c.AckWait = time.Second }
	a := newTestRouter(t, natsURL(srv), "a", short)
	b := newTestRouter(t, natsURL(srv), "b", short)
	sa := newFakeSink(10)
	fa := consume(t, a, "/queue/dead", sa)
	for _, id := range ids(3, "d") {
		if err := publishWait(t, a, "/queue/dead", testMessage(id, "/queue/dead", "x")); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 5*time.Second, "node a holds 3", func() bool { return sa.count() == 3 })
	fa.Stop()
	a.cfg.NC.Close() // node a "dies" holding three unsettled messages: nothing is settled, nothing kept alive
	sb := newFakeSink(10)
	start := time.Now()
	consume(t, b, "/queue/dead", sb)
	got := map[string]int{}
	for range 3 {
		o, ok := sb.next(5 * time.Second)
		if !ok {
			t.Fatalf("node b got only %v", got)
		}
		got[o.m.ID] = o.deliveries
		o.settle.Ack()
	}
	for _, id := range ids(3, "d") {
		if got[id] != 2 {
			t.Fatalf("node b got %v, want each with deliveries 2", got)
		}
	}
	if d := time.Since(start); d < 500*time.Millisecond {
		t.Fatalf("redelivered after %v, before AckWait", d)
	}
	eventually(t, 5*time.Second, "feed a detached", func() bool {
		a.queues.mu.Lock()
		defer a.queues.mu.Unlock()
		return len(a.queues.feeds) == 0
	})
}

func TestQueueInProgressKeepsMessage(t *testing.T) {
	noLeaks(t)
	srv := startNATS(t, -1, t.TempDir())
	// AckWait 1.5s: the keep-alive runs every 0.5s, so only a stall of
	// a second on a loaded machine could let the message go.
	short := func(c *routerConfig) { c.AckWait = 1500 * time.Millisecond }
	a := newTestRouter(t, natsURL(srv), "a", short)
	b := newTestRouter(t, natsURL(srv), "b", short)
	sa := newFakeSink(1)
	consume(t, a, "/queue/held", sa)
	if err := publishWait(t, a, "/queue/held", testMessage("h1", "/queue/held", "x")); err != nil {
		t.Fatal(err)
	}
	o, ok := sa.next(5 * time.Second)
	if !ok {
		t.Fatal("node a got nothing")
	}
	sb := newFakeSink(10)
	consume(t, b, "/queue/held", sb)
	// Held over twice AckWait: node a's keep-alive keeps it from b.
	if o2, ok := sb.next(3500 * time.Millisecond); ok {
		t.Fatalf("node b got %s (deliveries %d) while node a held it", o2.m.ID, o2.deliveries)
	}
	o.settle.Ack()
	if o2, ok := sb.next(2 * time.Second); ok {
		t.Fatalf("node b got %s after the ack", o2.m.ID)
	}
}

func TestQueueCreditAndMore(t *testing.T) {
	noLeaks(t)
	srv := startNATS(t, -1, t.TempDir())
	r := newTestRouter(t, natsURL(srv), "a", nil)
	for _, id := range ids(5, "k") {
		if err := publishWait(t, r, "/queue/credit", testMessage(id, "/queue/credit", "x")); err != nil {
			t.Fatal(err)
		}
	}
	s := newFakeSink(2)
	consume(t, r, "/queue/credit", s)
	eventually(t, 5*time.Second, "two offers", func() bool { return s.count() == 2 })
	time.Sleep(300 * time.Millisecond)
	if n := s.count(); n != 2 {
		t.Fatalf("%d offers with credit 2", n)
	}
	s.give(3)
	eventually(t, 2*time.Second, "five offers", func() bool { return s.count() == 5 })
	var wg sync.WaitGroup
	s.mu.Lock()
	for _, o := range s.offers {
		wg.Add(1)
		go func() { defer wg.Done(); o.settle.Ack() }()
	}
	s.mu.Unlock()
	wg.Wait()
	eventually(t, 2*time.Second, "no pending", func() bool {
		return testutilGauge(r.met.pendingAcks) == 0
	})
}

func TestClassifyPubErr(t *testing.T) {
	for _, c := range []struct {
		err    error
		reason string
		full   bool
	}{
		{&jetstream.APIError{Code: 503, ErrorCode: 10077, Description: "maximum messages per subject exceeded"}, reasonFull, true},
		{&jetstream.APIError{Code: 503, ErrorCode: 10077, Description: "maximum bytes exceeded"}, reasonFull, true},
		{&jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamMessageExceedsMaximum, Description: "message size exceeds maximum allowed"}, reasonFull, true},
		{&jetstream.APIError{Code: 503, ErrorCode: 10077, Description: "store closed"}, reasonError, false},
		{jetstream.ErrAsyncPublishTimeout, reasonTimeout, false},
		{nats.ErrDisconnected, reasonDisconnected, false},
		{nats.ErrReconnectBufExceeded, reasonDisconnected, false},
		{jetstream.ErrJetStreamPublisherClosed, reasonDisconnected, false},
		{jetstream.ErrNoStreamResponse, reasonNoStream, false},
		{errors.New("odd"), reasonError, false},
	} {
		reason, err := classifyPubErr(c.err)
		if reason != c.reason || errors.Is(err, broker.ErrClusterFull) != c.full ||
			errors.Is(err, broker.ErrClusterUnavailable) == c.full || !errors.Is(err, c.err) {
			t.Errorf("classifyPubErr(%v) = %q, %v", c.err, reason, err)
		}
	}
}

func TestCloseSettlesEveryPublish(t *testing.T) {
	noLeaks(t)
	srv := startNATS(t, -1, t.TempDir())
	cfg := routerConfig{NC: connect(t, natsURL(srv)), Prefix: "sbtest", PublishTimeout: 2 * time.Second}
	r, err := newRouter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000
	var mu sync.Mutex
	calls := map[int]int{}
	var stored, refused int
	sent := 0
	for i := range n {
		done := broker.ClusterDoneFunc(func(err error) {
			mu.Lock()
			defer mu.Unlock()
			calls[i]++
			if err == nil {
				stored++
			} else if errors.Is(err, broker.ErrClusterUnavailable) {
				refused++
			}
		})
		if err := r.PublishQueue("/", "/queue/c", testMessage(fmt.Sprint("x-", i), "/queue/c", "x"), done); err == nil {
			sent++
		} else if !errors.Is(err, broker.ErrClusterUnavailable) {
			t.Fatal(err)
		}
		if i == n/2 { // with publishes still awaiting their PubAck
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := r.close(ctx); err != nil {
				t.Fatalf("close: %v", err)
			}
			cancel()
		}
	}
	eventually(t, 5*time.Second, "every done", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(calls) == sent
	})
	time.Sleep(100 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	for i, c := range calls {
		if c != 1 {
			t.Fatalf("done of publish %d called %d times", i, c)
		}
	}
	t.Logf("sent %d: %d stored, %d refused at close", sent, stored, refused)
	if stored+refused != sent || sent != n/2+1 {
		t.Fatalf("sent %d of %d: %d stored, %d refused", sent, n, stored, refused)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.close(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestRouterMetrics(t *testing.T) {
	noLeaks(t)
	srv := startNATS(t, -1, t.TempDir())
	reg := prometheus.NewRegistry()
	r := newTestRouter(t, natsURL(srv), "a", func(c *routerConfig) { c.Registerer = reg; c.MaxQueueMessages = 1 })
	s := newFakeSink(10)
	consume(t, r, "/queue/m", s)
	if err := publishWait(t, r, "/queue/m", testMessage("m1", "/queue/m", "x")); err != nil {
		t.Fatal(err)
	}
	o, ok := s.next(5 * time.Second)
	if !ok {
		t.Fatal("nothing fed")
	}
	if v := testutil.ToFloat64(r.met.pendingAcks); v != 1 {
		t.Fatalf("pending acks %v while one is held", v)
	}
	o.settle.Nak()
	o, ok = s.next(5 * time.Second)
	if !ok {
		t.Fatal("nothing redelivered")
	}
	o.settle.Ack()
	// The queue holds one message at most: fill it, then one more.
	for i, want := range []error{nil, broker.ErrClusterFull} {
		err := publishWait(t, r, "/queue/full", testMessage(fmt.Sprint("f", i), "/queue/full", "x"))
		if !errors.Is(err, want) && err != want {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	for name, want := range map[string]float64{
		"fetched": 2, "nacked": 1, "acked": 1, "termed": 0,
	} {
		if v := testutil.ToFloat64(r.met.fed.WithLabelValues(name)); v != want {
			t.Errorf("queue messages %s = %v, want %v", name, v, want)
		}
	}
	if v := testutil.ToFloat64(r.met.pendingAcks); v != 0 {
		t.Errorf("pending acks %v after settling", v)
	}
	if v := testutil.ToFloat64(r.met.publishFailed.WithLabelValues(reasonFull)); v != 1 {
		t.Errorf("full failures %v", v)
	}
	if n := testutil.CollectAndCount(reg, "stompbox_cluster_publish_seconds"); n != 1 {
		t.Errorf("publish histogram: %d series", n)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "stompbox_cluster_") {
			t.Errorf("metric %s lacks the prefix", mf.GetName())
		}
		if mf.GetName() == "stompbox_cluster_publish_seconds" && mf.GetMetric()[0].GetHistogram().GetSampleCount() != 2 {
			t.Errorf("publish histogram counts %d, want 2 (stored ones only)", mf.GetMetric()[0].GetHistogram().GetSampleCount())
		}
	}
}

func TestRouterConfigFor(t *testing.T) {
	cfg := Config{Name: "prod", NodeName: "n1", Replicas: 3, AckWait: time.Minute, PublishTimeout: time.Second,
		MaxQueueMessages: 7, MaxQueueBytes: 8}.withDefaults()
	rc := routerConfigFor(cfg, nil, nil)
	if rc.Prefix != "prod" || rc.Node != "n1" || rc.Replicas != 3 || rc.AckWait != time.Minute ||
		rc.PublishTimeout != time.Second || rc.MaxQueueMessages != 7 || rc.MaxQueueBytes != 8 || rc.Logger == nil {
		t.Fatalf("%+v", rc)
	}
}

// A stopped feed's messages that the broker still holds (a parked
// session's, an outbox's backlog) stay kept alive until the broker
// settles them: no other node gets them meanwhile.
func TestQueueStoppedFeedKeepsWhatTheBrokerHolds(t *testing.T) {
	noLeaks(t)
	srv := startNATS(t, -1, t.TempDir())
	short := func(c *routerConfig) { c.AckWait = time.Second }
	a := newTestRouter(t, natsURL(srv), "a", short)
	b := newTestRouter(t, natsURL(srv), "b", short)
	sa := newFakeSink(10)
	fa := consume(t, a, "/queue/held", sa)
	if err := publishWait(t, a, "/queue/held", testMessage("h1", "/queue/held", "x")); err != nil {
		t.Fatal(err)
	}
	o, ok := sa.next(5 * time.Second)
	if !ok {
		t.Fatal("node a got nothing")
	}
	fa.Stop()
	sb := newFakeSink(10)
	consume(t, b, "/queue/held", sb)
	if got, ok := sb.next(2500 * time.Millisecond); ok {
		t.Fatalf("node b got %s while node a still holds it (past AckWait)", got.m.ID)
	}
	o.settle.Nak()
	got, ok := sb.next(5 * time.Second)
	if !ok || got.m.ID != "h1" {
		t.Fatalf("after the Nak node b got %v, want h1", got)
	}
	got.settle.Ack()
}
