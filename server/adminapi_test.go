package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/persistence"
	"github.com/stompbox/stompbox/server/cluster"
)

// TestAdminAPIConnections lists a go-stomp client's connection, with its
// user, subscription and traffic, and finds it by id.
func TestAdminAPIConnections(t *testing.T) {
	srv := startServer(t, Config{})
	api := apiClient{t: t, base: startAdmin(t, srv.Server)}
	alice := dialStomp(t, srv.addr, "alice")
	sub, err := alice.Subscribe("/queue/work", stomp.AckClientIndividual)
	if err != nil {
		t.Fatal(err)
	}
	bob := dialStomp(t, srv.addr, "bob")
	sendReceipted(t, bob, "/queue/work", "hello")
	select {
	case m := <-sub.C:
		if m.Err != nil || string(m.Body) != "hello" {
			t.Fatalf("message: %v %q", m.Err, m.Body)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no message")
	}

	var all connPage
	// Written bytes are counted once the write has returned, which may be
	// after the client has read them.
	poll(t, "alice's MESSAGE counted", func() bool {
		api.getJSON("/api/connections?sort=user", &all)
		return all.Total == 2 && all.Items[0].BytesOut > uint64(len("CONNECTED\n\n\x00hello"))
	})
	if all.Total != 2 || len(all.Items) != 2 || all.Limit != 100 || all.Items[0].User != "alice" || all.Items[1].User != "bob" {
		t.Fatalf("connections: %+v", all)
	}
	a := all.Items[0]
	if a.Transport != "tcp" || !strings.HasPrefix(a.Remote, "127.0.0.1:") || a.VHost != "/" || a.Version != "1.2" || time.Time(a.Connected).IsZero() || time.Time(a.Since).IsZero() {
		t.Errorf("alice: %+v", a)
	}
	if len(a.Subscriptions) != 1 || a.Subscriptions[0].Destination != "/queue/work" || a.Subscriptions[0].Ack != "client-individual" || a.Subscriptions[0].Unacked != 1 {
		t.Errorf("alice's subscriptions: %+v", a.Subscriptions)
	}
	if a.Unacked != 1 || a.FramesIn < 1 || a.FramesOut < 2 || a.BytesIn == 0 || a.BytesOut < 5 {
		t.Errorf("alice's counters: %+v", a)
	}
	var raw struct {
		Items []struct {
			Since string `json:"since"`
		} `json:"items"`
	}
	api.getJSON("/api/connections?sort=user", &raw)
	if len(raw.Items) != 2 || !strings.HasSuffix(raw.Items[0].Since, "Z") || len(raw.Items[0].Since) != len("2006-01-02T15:04:05.000Z") {
		t.Errorf("since %+v: want RFC 3339 with milliseconds in UTC", raw.Items)
	}

	var one connItem
	api.getJSON("/api/connections/"+url.PathEscape(a.ID), &one)
	if one.ID != a.ID || one.User != "alice" {
		t.Errorf("by id: %+v", one)
	}
	if code, body := api.do(http.MethodGet, "/api/connections/nope", nil); code != http.StatusNotFound || !strings.Contains(string(body), `"error"`) {
		t.Errorf("unknown id: %d %s", code, body)
	}
	var filtered connPage
	api.getJSON("/api/connections?user=bob", &filtered)
	if filtered.Total != 1 || filtered.Items[0].User != "bob" || len(filtered.Items[0].Subscriptions) != 0 {
		t.Errorf("user=bob: %+v", filtered)
	}
	api.getJSON("/api/connections?transport=ws", &filtered)
	if filtered.Total != 0 || filtered.Items == nil {
		t.Errorf("transport=ws: %+v", filtered)
	}
	api.getJSON("/api/connections?q=ALI", &filtered)
	if filtered.Total != 1 || filtered.Items[0].User != "alice" {
		t.Errorf("q=ALI: %+v", filtered)
	}
}

// TestAdminAPIDestinations lists queues with their depth, consumers and
// rates taken from snapshots a second apart.
func TestAdminAPIDestinations(t *testing.T) {
	srv := startServer(t, Config{})
	api := apiClient{t: t, base: startAdmin(t, srv.Server)}
	c := dialStomp(t, srv.addr, "alice")
	for i := range 3 {
		sendReceipted(t, c, "/queue/depth", fmt.Sprint("m", i))
	}
	var page destPage
	api.getJSON("/api/destinations?kind=queue", &page)
	if page.Total != 1 {
		t.Fatalf("destinations: %+v", page)
	}
	d := page.Items[0]
	if d.Name != "/queue/depth" || d.VHost != "/" || d.Messages != 3 || d.Bytes < 6 || d.Consumers != 0 || d.EnqueuedTotal != 3 || d.InRate != 0 || d.DLQ == "" {
		t.Errorf("first snapshot: %+v", d)
	}
	if d.OldestAge < 0 || d.OldestAge > 5 {
		t.Errorf("oldest age %v", d.OldestAge)
	}
	// A second snapshot, at least a second later, sees 4 more messages.
	time.Sleep(snapshotEvery)
	for i := range 4 {
		sendReceipted(t, c, "/queue/depth", fmt.Sprint("n", i))
	}
	api.getJSON("/api/destinations?q=DEPTH", &page)
	d = page.Items[0]
	if d.Messages != 7 || d.InRate <= 0 || d.InRate > 4 || d.OutRate != 0 {
		t.Errorf("second snapshot: %+v, want 7 messages and 0 < in_rate ≤ 4", d)
	}
	var o overview
	api.getJSON("/api/overview", &o)
	if o.Connections != 1 || o.Destinations < 1 || o.QueuedMessages != 7 || o.MessagesInTotal != 7 || o.Version != "dev" || o.Journal != nil || o.Cluster != nil || o.UptimeSeconds <= 0 {
		t.Errorf("overview: %+v", o)
	}
	if code, body := api.do(http.MethodGet, "/api/destinations?sort=nope", nil); code != http.StatusBadRequest || !strings.Contains(string(body), "sort") {
		t.Errorf("bad sort: %d %s", code, body)
	}
}

// TestAdminAPIPaging pages, sorts and filters 250 queues.
func TestAdminAPIPaging(t *testing.T) {
	srv := startServer(t, Config{Broker: broker.Config{MaxQueuesPerUser: 1000}})
	api := apiClient{t: t, base: startAdmin(t, srv.Server)}
	c := dialStomp(t, srv.addr, "alice")
	for i := range 250 {
		// Queue i holds 1 + i%5 messages; the last send of each waits
		// for its receipt, so all are in when the loop ends.
		for range i % 5 {
			if err := c.Send(fmt.Sprintf("/queue/p%03d", i), "", []byte("x")); err != nil {
				t.Fatal(err)
			}
		}
		sendReceipted(t, c, fmt.Sprintf("/queue/p%03d", i), "x")
	}
	var p destPage
	api.getJSON("/api/destinations", &p)
	if p.Total != 250 || len(p.Items) != 100 || p.Offset != 0 || p.Limit != 100 || p.Items[0].Name != "/queue/p000" || p.Items[99].Name != "/queue/p099" {
		t.Fatalf("first page: total %d, %d items, offset %d limit %d", p.Total, len(p.Items), p.Offset, p.Limit)
	}
	api.getJSON("/api/destinations?offset=240&limit=50", &p)
	if p.Total != 250 || len(p.Items) != 10 || p.Items[0].Name != "/queue/p240" {
		t.Errorf("last page: total %d, %d items", p.Total, len(p.Items))
	}
	api.getJSON("/api/destinations?offset=300", &p)
	if p.Total != 250 || len(p.Items) != 0 {
		t.Errorf("past the end: total %d, %d items", p.Total, len(p.Items))
	}
	api.getJSON("/api/destinations?sort=messages&order=desc&limit=3", &p)
	if len(p.Items) != 3 || p.Items[0].Messages != 5 || p.Items[0].Name != "/queue/p249" || p.Items[1].Name != "/queue/p244" {
		t.Errorf("by messages desc: %+v", p.Items)
	}
	api.getJSON("/api/destinations?q=P12&limit=1000", &p)
	if p.Total != 10 || len(p.Items) != 10 || p.Items[0].Name != "/queue/p120" || p.Items[9].Name != "/queue/p129" {
		t.Errorf("q=P12: total %d, first %+v", p.Total, p.Items)
	}
	api.getJSON("/api/destinations?limit=5000", &p)
	if p.Limit != maxListLimit || len(p.Items) != 250 {
		t.Errorf("limit past the maximum: limit %d, %d items", p.Limit, len(p.Items))
	}
	for _, q := range []string{"offset=-1", "limit=0", "limit=x", "order=up", "sort=vhost"} {
		if code, _ := api.do(http.MethodGet, "/api/destinations?"+q, nil); code != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", q, code)
		}
	}
}

// TestAdminAPIDurables lists a durable subscription while its client is
// away.
func TestAdminAPIDurables(t *testing.T) {
	srv := startServer(t, Config{})
	api := apiClient{t: t, base: startAdmin(t, srv.Server)}
	rc := dialRaw(t, srv.addr)
	rc.connect("login:carol", "passcode:x", "client-id:c1")
	rc.send(frame("SUBSCRIBE", "", "id:s", "destination:/topic/news", "durable-subscription-name:feed", "receipt:r"))
	if f := rc.next(5 * time.Second); f.Command.String() != "RECEIPT" {
		t.Fatalf("subscribe: %s %s", f.Command, f.Body)
	}
	var p durablePage
	api.getJSON("/api/durables", &p)
	if p.Total != 1 || p.Items[0].Topic != "/topic/news" || p.Items[0].User != "carol" || !p.Items[0].Active || p.Items[0].LastActive != nil {
		t.Fatalf("durables: %+v", p)
	}
	api.getJSON("/api/durables?q=nothing-like-it", &p)
	if p.Total != 0 {
		t.Errorf("q: %+v", p)
	}
}

// TestAdminAPIJournalAndClusterAbsent answers enabled false without a
// journal or a cluster, and enabled true with fields absent for a
// journal that cannot describe itself.
func TestAdminAPIJournalAndClusterAbsent(t *testing.T) {
	srv := startServer(t, Config{})
	api := apiClient{t: t, base: startAdmin(t, srv.Server)}
	for _, path := range []string{"/api/journal", "/api/cluster"} {
		code, body := api.do(http.MethodGet, path, nil)
		if code != http.StatusOK || strings.TrimSpace(string(body)) != `{"enabled":false}` {
			t.Errorf("%s: %d %s", path, code, body)
		}
	}
	srv2 := startServer(t, Config{Broker: broker.Config{Journal: nopJournal{}}})
	if err := srv2.Recover(); err != nil {
		t.Fatal(err)
	}
	api2 := apiClient{t: t, base: startAdmin(t, srv2.Server)}
	code, body := api2.do(http.MethodGet, "/api/journal", nil)
	if code != http.StatusOK || strings.TrimSpace(string(body)) != `{"enabled":true}` {
		t.Errorf("opaque journal: %d %s", code, body)
	}
}

// TestAdminAPIWebSocketConnection lists a STOMP-over-WebSocket client as
// transport ws, with its bytes, and an operator close reaches it as an
// ERROR frame.
func TestAdminAPIWebSocketConnection(t *testing.T) {
	srv, wsURL := startWebServer(t, Config{AdminToken: "0123456789abcdef"})
	api := apiClient{t: t, base: startAdmin(t, srv.Server), auth: bearer("0123456789abcdef")}
	conn, _ := dialWS(t, wsURL, "v12.stomp")
	if err := wsutil.WriteClientText(conn, []byte("CONNECT\naccept-version:1.2\nhost:x\nlogin:wendy\npasscode:x\n\n\x00")); err != nil {
		t.Fatal(err)
	}
	if data, _ := readWS(t, conn); !strings.HasPrefix(string(data), "CONNECTED\n") {
		t.Fatalf("got %q", data)
	}
	var p connPage
	// The writer counts its bytes once the write has returned, which may
	// be after the client has read them.
	poll(t, "the CONNECTED counted", func() bool {
		api.getJSON("/api/connections?transport=ws", &p)
		return p.Total == 1 && p.Items[0].BytesOut > 0
	})
	if p.Items[0].User != "wendy" || p.Items[0].Transport != "ws" || p.Items[0].BytesIn == 0 {
		t.Fatalf("ws connections: %+v", p)
	}
	api.postJSON("/api/connections/"+p.Items[0].ID+"/close", map[string]string{"reason": "bye"}, http.StatusOK, nil)
	data, _ := readWS(t, conn)
	if !strings.HasPrefix(string(data), "ERROR\n") || !strings.Contains(string(data), "error-code:closed-by-operator") || !strings.Contains(string(data), `message:closed by an operator\c bye`) {
		t.Errorf("after the close: %q", data)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err := wsutil.ReadServerData(conn)
	var closed wsutil.ClosedError
	if !errors.As(err, &closed) || closed.Code != ws.StatusPolicyViolation {
		t.Errorf("after the ERROR: %v, want close 1008", err)
	}
}

// infoJournal is a journal describing itself as failed.
type infoJournal struct {
	nopJournal
	info persistence.Info
}

func (j infoJournal) Info() persistence.Info { return j.info }

// fakeCluster is a cluster node that answers readiness and describes
// itself; no STOMP traffic reaches its broker.Cluster methods here.
type fakeCluster struct {
	broker.Cluster
	ready error
}

func (fakeCluster) Attach(*broker.Broker)         {}
func (f fakeCluster) Ready(context.Context) error { return f.ready }
func (fakeCluster) Info() cluster.Info {
	return cluster.Info{Name: "east", Node: "node-a", SessionNode: "node-a.1", Servers: []string{"nats://127.0.0.1:4222"}}
}

// TestAdminAPIJournalFailedAndCluster: a failed journal's state and
// error; a cluster node's name, readiness and why it is not ready.
func TestAdminAPIJournalFailedAndCluster(t *testing.T) {
	j := infoJournal{info: persistence.Info{Dir: "/j", Sync: "interval", Size: 10, Segments: 1,
		Failed: errors.New("fsync: input/output error"), Fsync: persistence.FsyncSummary{Count: 3, P50: time.Millisecond, P99: 2 * time.Millisecond, Max: 3 * time.Millisecond}}}
	srv := startServer(t, Config{Broker: broker.Config{Journal: j}, Cluster: fakeCluster{ready: errors.New("not connected to NATS")}})
	api := apiClient{t: t, base: startAdmin(t, srv.Server)}
	var got journalJSON
	api.getJSON("/api/journal", &got)
	if got.State != "failed" || got.Error != "fsync: input/output error" || got.Sync != "interval" || got.Fsync == nil || got.Fsync.P99 != 0.002 || got.Fsync.Count != 3 {
		t.Errorf("journal: %+v %+v", got, got.Fsync)
	}
	var c clusterJSON
	api.getJSON("/api/cluster", &c)
	if !c.Enabled || c.Name != "east" || c.Node != "node-a" || c.Ready == nil || *c.Ready || c.Error != "not connected to NATS" ||
		len(c.Nodes) != 1 || !c.Nodes[0].Self || c.Nodes[0].Name != "node-a" {
		t.Errorf("cluster: %+v", c)
	}
	var o overview
	api.getJSON("/api/overview", &o)
	if o.Node != "node-a" || o.Cluster == nil || o.Journal == nil || o.Journal.State != "failed" {
		t.Errorf("overview: node %q, cluster %+v, journal %+v", o.Node, o.Cluster, o.Journal)
	}
}

// A connection's times are formatted only when encoded: null before
// CONNECT, RFC 3339 in UTC with milliseconds after, and read back.
func TestLazyTimeJSON(t *testing.T) {
	at := time.Date(2026, 12, 5, 4, 30, 1, 234_567_000, time.FixedZone("x", 3600))
	for _, tt := range []struct {
		in   lazyTime
		want string
	}{
		{lazyTime{}, "null"},
		{lazyTime(at), `"2026-12-05T03:30:01.234Z"`},
	} {
		b, err := json.Marshal(tt.in)
		if err != nil || string(b) != tt.want {
			t.Errorf("Marshal(%v) = %s, %v; want %s", time.Time(tt.in), b, err, tt.want)
		}
		var back lazyTime
		if err := json.Unmarshal(b, &back); err != nil || !time.Time(back).Equal(time.Time(tt.in).Truncate(time.Millisecond)) {
			t.Errorf("Unmarshal(%s) = %v, %v", b, time.Time(back), err)
		}
	}
}

// A sort the wires answer alone (id, transport, since, bytes in and out)
// reads only the page's sessions, and must page exactly like the general
// path, which a filter forces ("tcp" matches every connection here).
func TestAdminAPIWireSortMatchesGeneral(t *testing.T) {
	srv := startServer(t, Config{})
	api := apiClient{t: t, base: startAdmin(t, srv.Server)}
	const n = 24
	for i := range n {
		c := dialStomp(t, srv.addr, fmt.Sprintf("user%02d", i))
		for range i % 4 { // ties in bytes, broken by id
			sendReceipted(t, c, "/queue/wire-sort", "x")
		}
	}
	for _, sort := range []string{"id", "transport", "since", "bytes_in", "bytes_out"} {
		for _, order := range []string{"asc", "desc"} {
			q := "/api/connections?sort=" + sort + "&order=" + order + "&offset=5&limit=10"
			var fast, general connPage
			api.getJSON(q, &fast)
			api.getJSON(q+"&q=tcp", &general)
			if fast.Total != n || general.Total != n || len(fast.Items) != 10 || len(general.Items) != 10 {
				t.Fatalf("%s: totals %d and %d, pages %d and %d; want %d and 10", q, fast.Total, general.Total, len(fast.Items), len(general.Items), n)
			}
			for i := range fast.Items {
				if f, g := fast.Items[i], general.Items[i]; f.ID != g.ID || f.User != g.User || len(f.Subscriptions) != len(g.Subscriptions) {
					t.Fatalf("%s: item %d is %s (%s) by the wires, %s (%s) in general", q, i, f.ID, f.User, g.ID, g.User)
				}
			}
		}
	}
}
