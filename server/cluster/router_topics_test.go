package cluster

import (
	"errors"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stompbox/stompbox/broker"
)

// testTransport is a session's write side for a test that drives the
// session itself: output is read by polling, and a poke is answered by the
// next poll (the test goroutine is the session's read loop).
type testTransport struct{ poked atomic.Bool }

func (*testTransport) Wake()                    {}
func (*testTransport) Close(broker.CloseReason) {}
func (t *testTransport) Poke()                  { t.poked.Store(true) }

// stompClient is one connection to a real broker, driven in-process from
// the test goroutine.
type stompClient struct {
	tr  testTransport
	s   *broker.Session
	out []byte
}

func newStompClient(t *testing.T, b *broker.Broker) *stompClient {
	t.Helper()
	c := &stompClient{}
	c.s = b.NewSession(&c.tr, "test")
	c.send(t, "CONNECT\naccept-version:1.2\nhost:/\n\n\x00")
	eventually(t, 5*time.Second, "CONNECTED", func() bool { return strings.Contains(c.output(), "CONNECTED") })
	return c
}

func (c *stompClient) send(t *testing.T, frame string) {
	t.Helper()
	if err := c.s.Feed([]byte(frame)); err != nil {
		t.Fatalf("feed %q: %v", frame, err)
	}
}

// output answers a pending poke and returns everything written so far.
func (c *stompClient) output() string {
	if c.tr.poked.Swap(false) {
		_ = c.s.Poked()
	}
	c.out, _ = c.s.AppendOutput(c.out)
	return string(c.out)
}

var deliveryRE = regexp.MustCompile(`(?s)MESSAGE\n[^\x00]*?subscription:(\d+)\n[^\x00]*?\n\n([^\x00]*)\x00`)

// deliveries lists "subscription:body" of every MESSAGE received so far.
func (c *stompClient) deliveries() []string {
	var out []string
	for _, m := range deliveryRE.FindAllStringSubmatch(c.output(), -1) {
		out = append(out, m[1]+":"+m[2])
	}
	sort.Strings(out)
	return out
}

// subscribed reports whether r has a live subscription for every subject.
func subscribed(r *router, subjects ...string) bool {
	r.topics.mu.Lock()
	defer r.topics.mu.Unlock()
	for _, s := range subjects {
		if ts := r.topics.subs[s]; ts == nil || ts.sub == nil {
			return false
		}
	}
	return true
}

func TestTopicsAcrossNodes(t *testing.T) {
	noLeaks(t)
	srv := startNATS(t, -1, t.TempDir())
	a := newTestRouter(t, natsURL(srv), "a", nil)
	rb := newTestRouter(t, natsURL(srv), "b", nil)
	bb := broker.New(broker.Config{Cluster: rb})
	rb.setBroker(bb)
	c := newStompClient(t, bb)
	// Overlapping patterns on one node: a.b matches all four.
	for i, p := range []string{"a.*", "a.#", "#", "a.b"} {
		c.send(t, "SUBSCRIBE\nid:"+string(rune('1'+i))+"\ndestination:/topic/"+p+"\n\n\x00")
	}
	pre := "sbtest.t.~2f."
	eventually(t, 5*time.Second, "subscriptions", func() bool {
		return subscribed(rb, pre+"a.*", pre+"a", pre+"a.>", pre+">", pre+"a.b")
	})
	if err := rb.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ topic, body string }{{"a.b", "ab"}, {"a", "a"}, {"a.b.c", "abc"}, {"x", "x"}} {
		if err := a.PublishTopic("/", tc.topic, testMessage("m-"+tc.body, "/topic/"+tc.topic, tc.body)); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"1:ab", "2:a", "2:ab", "2:abc", "3:a", "3:ab", "3:abc", "3:x", "4:ab"}
	eventually(t, 5*time.Second, "deliveries", func() bool { return len(c.deliveries()) >= len(want) })
	time.Sleep(200 * time.Millisecond) // a duplicate would arrive right behind
	if got := c.deliveries(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("deliveries %q, want %q", got, want)
	}

	// Interest off: the node unsubscribes and gets nothing more.
	for i := range 4 {
		c.send(t, "UNSUBSCRIBE\nid:"+string(rune('1'+i))+"\n\n\x00")
	}
	eventually(t, 5*time.Second, "unsubscribed", func() bool {
		rb.topics.mu.Lock()
		defer rb.topics.mu.Unlock()
		return len(rb.topics.subs) == 0
	})
	if err := rb.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := a.PublishTopic("/", "a.b", testMessage("late", "/topic/a.b", "late")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if got := c.deliveries(); len(got) != len(want) {
		t.Fatalf("after unsubscribe: deliveries %q", got)
	}
}

func TestTopicInterestCoalesces(t *testing.T) {
	noLeaks(t)
	srv := startNATS(t, -1, t.TempDir())
	r := newTestRouter(t, natsURL(srv), "a", nil)
	// Many flips end in "on": one subscription; the pattern counted once.
	for range 50 {
		r.TopicInterest("/", "q.*", true)
		r.TopicInterest("/", "q.*", false)
	}
	r.TopicInterest("/", "q.*", true)
	eventually(t, 5*time.Second, "subscription", func() bool { return subscribed(r, "sbtest.t.~2f.q.*") })
	r.topics.mu.Lock()
	n := len(r.topics.subs)
	pats := *r.topics.subs["sbtest.t.~2f.q.*"].patterns.Load()
	r.topics.mu.Unlock()
	if n != 1 || len(pats) != 1 || pats["q.*"] != 1 {
		t.Fatalf("subs %d, patterns %v", n, pats)
	}
}

func TestPublishTopicWhileDown(t *testing.T) {
	noLeaks(t)
	srv := startNATS(t, -1, t.TempDir())
	r := newTestRouter(t, natsURL(srv), "a", nil)
	srv.Shutdown()
	srv.WaitForShutdown()
	eventually(t, 5*time.Second, "disconnect", func() bool { return !r.nc.IsConnected() })
	err := r.PublishTopic("/", "a", testMessage("x", "/topic/a", "x"))
	if !errors.Is(err, broker.ErrClusterUnavailable) {
		t.Fatalf("PublishTopic while down: %v", err)
	}
}
