package cluster

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/stompbox/stompbox/broker"
)

func TestSessionNodeName(t *testing.T) {
	const inst = "0123456789abcdef"
	for _, tc := range []struct{ node, want string }{
		{"node-a", "node-a-" + inst},
		{"my.host:1/é", "my_host_1___-" + inst}, // é is two bytes
		{"", inst},
		{strings.Repeat("n", 100), strings.Repeat("n", maxSessionNodeName) + "-" + inst},
	} {
		got := sessionNodeName(tc.node, inst)
		if got != tc.want || !validSessionNode(got) {
			t.Errorf("sessionNodeName(%q) = %q (valid %v), want %q", tc.node, got, validSessionNode(got), tc.want)
		}
	}
	for _, bad := range []string{"", "a.b", "a b", "*", ">", strings.Repeat("n", 65), "a~b"} {
		if validSessionNode(bad) {
			t.Errorf("%q is a valid SessionNode", bad)
		}
	}
}

func TestParseChunk(t *testing.T) {
	for v, want := range map[string][2]int{"1/1": {1, 1}, "3/7": {3, 7}, "65536/65536": {65536, 65536}} {
		if i, n, ok := parseChunk(v); !ok || i != want[0] || n != want[1] {
			t.Errorf("parseChunk(%q) = %d, %d, %v", v, i, n, ok)
		}
	}
	for _, v := range []string{"", "1", "0/1", "2/1", "1/65537", "-1/3", "a/b", "1/2/3", " 1/2"} {
		if _, _, ok := parseChunk(v); ok {
			t.Errorf("parseChunk(%q) accepted", v)
		}
	}
}

// Two routers of one node name (a process and its restart) are different
// session nodes; each answers on its own subject.
func TestSessionNodePerProcess(t *testing.T) {
	noLeaks(t)
	srv := startNATS(t, -1, t.TempDir())
	r1 := newTestRouter(t, natsURL(srv), "node.a", nil)
	r2 := newTestRouter(t, natsURL(srv), "node.a", nil)
	if r1.SessionNode() == r2.SessionNode() || !strings.HasPrefix(r1.SessionNode(), "node_a-") || !validSessionNode(r1.SessionNode()) {
		t.Fatalf("session nodes %q and %q", r1.SessionNode(), r2.SessionNode())
	}
}

// What a requester learns from each kind of answer, and what both sides
// count: a name that is no node's and a node that is not there are
// unknown (at once), a node without its broker yet or too busy is an
// error, a token its broker does not know is unknown.
func TestFetchSessionAnswers(t *testing.T) {
	noLeaks(t)
	srv := startNATS(t, -1, t.TempDir())
	ra := newTestRouter(t, natsURL(srv), "a", nil)
	rb := newTestRouter(t, natsURL(srv), "b", nil)
	fetch := func(node string) error {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		start := time.Now()
		st, err := ra.FetchSession(ctx, node, broker.SessionRequest{Token: "AAAA." + node, VHost: "/", Version: "1.2"})
		if st != nil || err == nil {
			t.Fatalf("node %q handed over %+v (%v)", node, st, err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Fatalf("node %q answered after %v", node, took)
		}
		return err
	}
	for _, node := range []string{"not.a.node", "", "nosuchnode"} {
		if err := fetch(node); !errors.Is(err, broker.ErrSessionUnknown) {
			t.Fatalf("node %q: %v, want ErrSessionUnknown", node, err)
		}
	}
	if err := fetch(rb.SessionNode()); errors.Is(err, broker.ErrSessionUnknown) || !strings.Contains(err.Error(), "not serving") {
		t.Fatalf("a node without its broker: %v, want an error", err)
	}
	rb.setBroker(broker.New(broker.Config{Cluster: rb}))
	if err := fetch(rb.SessionNode()); !errors.Is(err, broker.ErrSessionUnknown) {
		t.Fatalf("an unknown token: %v, want ErrSessionUnknown", err)
	}
	for range maxHandoffs {
		rb.sessions.sem <- struct{}{}
	}
	err := fetch(rb.SessionNode())
	for range maxHandoffs {
		<-rb.sessions.sem
	}
	if errors.Is(err, broker.ErrSessionUnknown) || !strings.Contains(err.Error(), "busy") {
		t.Fatalf("a busy node: %v, want busy", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rb.close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := fetch(rb.SessionNode()); !errors.Is(err, broker.ErrSessionUnknown) {
		t.Fatalf("a closed node: %v, want ErrSessionUnknown", err)
	}
	for _, c := range []struct {
		r        *router
		dir, res string
		want     float64
	}{
		{ra, directionIn, resultUnknown, 5}, {ra, directionIn, resultError, 2}, {ra, directionIn, resultResumed, 0},
		{rb, directionOut, resultUnknown, 1}, {rb, directionOut, resultError, 2},
	} {
		if got := testutil.ToFloat64(c.r.sessions.met.WithLabelValues(c.dir, c.res)); got != c.want {
			t.Errorf("%s %s/%s: %v, want %v", c.r.cfg.Node, c.dir, c.res, got, c.want)
		}
	}
}

func TestHandoffBudget(t *testing.T) {
	for wait, want := range map[string][2]time.Duration{
		"":      {handoffTimeout, handoffTimeout * 3 / 4},
		"junk":  {handoffTimeout, handoffTimeout * 3 / 4},
		"60000": {handoffTimeout, handoffTimeout * 3 / 4},
		"2000":  {2 * time.Second, 1500 * time.Millisecond},
		"0":     {0, 0},
		"-5":    {0, 0},
	} {
		if total, claim := handoffBudget(wait); total != want[0] || claim != want[1] {
			t.Errorf("handoffBudget(%q) = %v, %v; want %v, %v", wait, total, claim, want[0], want[1])
		}
	}
}

// The requester takes a state only as whole, in-order chunks of a valid
// encoding; anything else another process answers is an error, never a
// session.
func TestFetchSessionChunks(t *testing.T) {
	noLeaks(t)
	srv := startNATS(t, -1, t.TempDir())
	r := newTestRouter(t, natsURL(srv), "a", nil)
	full := encodeSessionState(testSessionState())
	half := len(full) / 2
	type part struct {
		kind, chunk string
		data        []byte
	}
	for _, tc := range []struct {
		name  string
		parts []part
		ok    bool
	}{
		{"two chunks", []part{{kindState, "1/2", full[:half]}, {kindState, "2/2", full[half:]}}, true},
		{"one chunk", []part{{kindState, "1/1", full}}, true},
		{"second first", []part{{kindState, "2/2", full[half:]}, {kindState, "1/2", full[:half]}}, false},
		{"repeated", []part{{kindState, "1/2", full[:half]}, {kindState, "1/2", full[:half]}}, false},
		{"total changes", []part{{kindState, "1/3", full[:half]}, {kindState, "2/2", full[half:]}}, false},
		{"no chunk header", []part{{kindState, "", full}}, false},
		{"truncated", []part{{kindState, "1/1", full[:half]}}, false},
		{"unknown kind", []part{{"maybe", "1/1", full}}, false},
		{"error", []part{{kindError, "", []byte("broken")}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc := connect(t, natsURL(srv))
			sub, err := nc.Subscribe(sessionSubject("sbtest", "fake"), func(m *nats.Msg) {
				for _, p := range tc.parts {
					h := nats.Header{sessionKindHeader: []string{p.kind}}
					if p.chunk != "" {
						h[sessionChunkHeader] = []string{p.chunk}
					}
					_ = nc.PublishMsg(&nats.Msg{Subject: m.Reply, Header: h, Data: p.data})
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = sub.Unsubscribe() }()
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			st, err := r.FetchSession(ctx, "fake", broker.SessionRequest{Token: "t.fake", VHost: "/", Version: "1.2"})
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				sameState(t, st, testSessionState())
				return
			}
			if err == nil || errors.Is(err, broker.ErrSessionUnknown) {
				t.Fatalf("got %+v, %v; want an error", st, err)
			}
		})
	}
}
