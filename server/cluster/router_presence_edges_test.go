package cluster

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/stompbox/stompbox/broker"
)

// fakeEntry is one watched presence entry, made by hand.
type fakeEntry struct {
	key     string
	val     []byte
	op      jetstream.KeyValueOp
	created time.Time
}

func (e fakeEntry) Bucket() string                  { return "B" }
func (e fakeEntry) Key() string                     { return e.key }
func (e fakeEntry) Value() []byte                   { return e.val }
func (e fakeEntry) Revision() uint64                { return 1 }
func (e fakeEntry) Created() time.Time              { return e.created }
func (e fakeEntry) Delta() uint64                   { return 0 }
func (e fakeEntry) Operation() jetstream.KeyValueOp { return e.op }

type fakeWatcher struct{ ch chan jetstream.KeyValueEntry }

func (w fakeWatcher) Updates() <-chan jetstream.KeyValueEntry { return w.ch }
func (w fakeWatcher) Stop() error                             { return nil }

// presenceRouter is a router with only its presence side, over a real
// broker, for feeding it watched entries by hand.
func presenceRouter(t *testing.T) (*router, *prometheus.Registry) {
	t.Helper()
	r := &router{cfg: routerConfig{Node: "me"}, log: slog.New(slog.NewTextHandler(io.Discard, nil)), nc: &nats.Conn{}}
	r.ctx, r.stop = context.WithCancel(context.Background())
	t.Cleanup(r.stop)
	r.presence.init(nil)
	reg := prometheus.NewRegistry()
	r.setBroker(broker.New(broker.Config{Cluster: r, Registerer: reg}))
	return r, reg
}

// memberPut is the entry a node writes for user in set room.
func memberPut(t *testing.T, node, instance, user string, created time.Time) fakeEntry {
	t.Helper()
	m := broker.PresenceMember{User: user}
	v, err := json.Marshal(presenceValue{VHost: broker.DefaultVirtualHost, Set: "room", User: user, Node: node, Instance: instance, Since: created})
	if err != nil {
		t.Fatal(err)
	}
	return fakeEntry{key: presenceKeyOf(broker.DefaultVirtualHost, "room", node, m), val: v, op: jetstream.KeyValuePut, created: created}
}

func brokerMembers(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "stompbox_presence_members" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("no stompbox_presence_members")
	return 0
}

// A value that does not name its own key is not taken: a hold it made
// could outlive every delete of the key.
func TestPresenceEntryMustMatchItsKey(t *testing.T) {
	r, reg := presenceRouter(t)
	e := memberPut(t, "other", "x", "alice", time.Now())
	e.key = "k1"
	r.applyPresence(e, false, time.Minute)
	if m := brokerMembers(t, reg); m != 0 {
		t.Fatalf("a value under a key it does not name made %v member(s)", m)
	}
	r.applyPresence(memberPut(t, "other", "x", "alice", time.Now()), false, time.Minute)
	if m := brokerMembers(t, reg); m != 1 {
		t.Fatalf("a well-formed put made %v member(s), want 1", m)
	}
}

// Keys of this node's name: this process's own come back and are ignored,
// an earlier run's are reported stale (deleted), and a live twin's (a
// second process with the same cluster.node) are neither deleted nor
// taken.
func TestPresenceOwnNameKeys(t *testing.T) {
	r, reg := presenceRouter(t)
	p := &r.presence
	for _, tc := range []struct {
		name      string
		e         fakeEntry
		wantStale bool
	}{
		{"own", memberPut(t, "me", p.instance, "a", time.Now()), false},
		{"earlier run", memberPut(t, "me", "old", "b", p.started.Add(-time.Minute)), true},
		{"live twin", memberPut(t, "me", "twin", "c", p.started.Add(time.Second)), false},
	} {
		if _, stale := r.applyPresence(tc.e, true, time.Minute); stale != tc.wantStale {
			t.Errorf("%s: stale %v, want %v", tc.name, stale, tc.wantStale)
		}
	}
	if m := brokerMembers(t, reg); m != 0 {
		t.Fatalf("keys of this node's own name made %v member(s)", m)
	}
	if !p.twinWarned {
		t.Fatal("a live twin was not reported")
	}
}

// A watcher that stalled past the TTL finds its sweep tick and the other
// node's refresh, sent in time, both waiting: the refresh is applied first,
// so the member is not expired (no leave and join again).
func TestPresenceSweepAfterWaitingRefresh(t *testing.T) {
	const ttl = 200 * time.Millisecond
	for i := range 20 {
		r, _ := presenceRouter(t)
		e := memberPut(t, "other", "x", "alice", time.Now())
		r.applyPresence(e, false, ttl)
		r.presence.remote[e.key].seen = time.Now().Add(-ttl - time.Millisecond) // the last refresh seen before the stall
		w := fakeWatcher{ch: make(chan jetstream.KeyValueEntry, 2)}
		w.ch <- nil // the initial values are in
		sweep := time.NewTicker(10 * time.Millisecond)
		time.Sleep(15 * time.Millisecond) // the stall: a tick waits
		w.ch <- e                         // and so does the refresh
		done := make(chan struct{})
		go func() { r.presenceFollow(w, sweep, ttl); close(done) }()
		time.Sleep(5 * time.Millisecond)
		r.stop()
		<-done
		sweep.Stop()
		if n := testutil.ToFloat64(r.presence.met.expired); n != 0 {
			t.Fatalf("run %d: a member whose refresh was waiting was expired", i)
		}
	}
}
