package server

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/persistence"
)

// TestAdminAPIQueueActions peeks at, purges, moves back from a DLQ and
// deletes queues a client filled, as an admin.
func TestAdminAPIQueueActions(t *testing.T) {
	srv := startServer(t, Config{AdminToken: "tok", Broker: broker.Config{MaxRedeliveries: 1}})
	api := apiClient{t: t, base: startAdmin(t, srv.Server), auth: bearer("tok")}
	c := dialStomp(t, srv.addr, "alice")
	sendReceipted(t, c, "/queue/jobs", "first job")
	if err := c.Send("/queue/jobs", "application/octet-stream", []byte{0xff, 0x00, 0xfe}, stomp.SendOpt.Receipt); err != nil {
		t.Fatal(err)
	}

	var peeked struct{ Items []peekedJSON }
	api.getJSON("/api/queues/peek?destination=/queue/jobs&limit=5&preview=5", &peeked)
	if len(peeked.Items) != 2 {
		t.Fatalf("peek: %+v", peeked)
	}
	p0, p1 := peeked.Items[0], peeked.Items[1]
	if p0.Body != "first" || p0.BodyEncoding != "text" || p0.BodySize != 9 || p0.ID == "" || p0.Enqueued == nil || p0.Unacked || len(p0.Headers) == 0 {
		t.Errorf("first peeked: %+v", p0)
	}
	if raw, _ := base64.StdEncoding.DecodeString(p1.Body); p1.BodyEncoding != "base64" || string(raw) != "\xff\x00\xfe" {
		t.Errorf("binary peeked: %+v", p1)
	}
	for _, q := range []string{"limit=101", "preview=0", "preview=4097", "limit=x"} {
		if code, _ := api.do(http.MethodGet, "/api/queues/peek?destination=/queue/jobs&"+q, nil); code != http.StatusBadRequest {
			t.Errorf("peek %s: %d, want 400", q, code)
		}
	}
	if code, _ := api.do(http.MethodGet, "/api/queues/peek?destination=/queue/none", nil); code != http.StatusNotFound {
		t.Errorf("peek of no queue: %d, want 404", code)
	}

	var purged struct{ Purged int }
	api.postJSON("/api/queues/purge", map[string]string{"vhost": "/", "destination": "/queue/jobs"}, http.StatusOK, &purged)
	if purged.Purged != 2 {
		t.Errorf("purged %d, want 2", purged.Purged)
	}
	api.postJSON("/api/queues/purge", map[string]string{"destination": "/queue/jobs"}, http.StatusNotFound, nil)
	api.postJSON("/api/queues/purge", map[string]string{"destination": "/topic/x"}, http.StatusNotFound, nil)
	api.postJSON("/api/queues/purge", map[string]string{}, http.StatusBadRequest, nil)
	api.postJSON("/api/queues/purge", map[string]any{"destination": "/queue/jobs", "extra": 1}, http.StatusBadRequest, nil)

	// A message NACKed past max-redeliveries goes to the DLQ; move-dlq
	// puts it back.
	sub, err := c.Subscribe("/queue/retry", stomp.AckClientIndividual)
	if err != nil {
		t.Fatal(err)
	}
	sendReceipted(t, c, "/queue/retry", "doomed")
	for range 2 {
		select {
		case m := <-sub.C:
			if m.Err != nil {
				t.Fatal(m.Err)
			}
			if err := c.Nack(m); err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no delivery")
		}
	}
	if err := sub.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	var dlq destPage
	poll(t, "the DLQ", func() bool {
		api.getJSON("/api/destinations?kind=dlq", &dlq)
		return dlq.Total == 1 && dlq.Items[0].Messages == 1
	})
	if dlq.Items[0].Name != "/queue/DLQ.retry" {
		t.Fatalf("dlq: %+v", dlq.Items)
	}
	sendReceipted(t, c, "/queue/plain", "x")
	api.postJSON("/api/queues/move-dlq", map[string]any{"destination": "/queue/plain"}, http.StatusConflict, nil)
	api.postJSON("/api/queues/move-dlq", map[string]any{"destination": "/queue/DLQ.retry", "max": -1}, http.StatusBadRequest, nil)
	var moved struct{ Moved int }
	api.postJSON("/api/queues/move-dlq", map[string]any{"vhost": "/", "destination": "/queue/DLQ.retry", "max": 0}, http.StatusOK, &moved)
	if moved.Moved != 1 {
		t.Errorf("moved %d, want 1", moved.Moved)
	}
	api.getJSON("/api/queues/peek?destination=/queue/retry", &peeked)
	if len(peeked.Items) != 1 || peeked.Items[0].Body != "doomed" || peeked.Items[0].Deliveries != 0 {
		t.Errorf("moved back: %+v", peeked.Items)
	}

	var deleted struct{ Deleted int }
	api.postJSON("/api/queues/delete", map[string]string{"destination": "/queue/retry"}, http.StatusOK, &deleted)
	if deleted.Deleted != 1 {
		t.Errorf("deleted %d, want 1", deleted.Deleted)
	}
	var after destPage
	api.getJSON("/api/destinations?q=/queue/retry", &after)
	if after.Total != 0 {
		t.Errorf("after delete: %+v", after.Items)
	}
	if code, _ := api.do(http.MethodGet, "/api/queues/purge", nil); code != http.StatusMethodNotAllowed {
		t.Errorf("GET of an action: %d, want 405", code)
	}
}

// TestAdminAPICloseConnection closes a client's connection with a reason
// the client reads in its ERROR.
func TestAdminAPICloseConnection(t *testing.T) {
	srv := startServer(t, Config{AdminToken: "tok"})
	api := apiClient{t: t, base: startAdmin(t, srv.Server), auth: bearer("tok")}
	c, err := stomp.Dial("tcp", srv.addr, stomp.ConnOpt.Login("alice", "x"))
	if err != nil {
		t.Fatal(err)
	}
	sub, err := c.Subscribe("/topic/t", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	var conns connPage
	api.getJSON("/api/connections", &conns)
	if conns.Total != 1 {
		t.Fatalf("connections: %+v", conns)
	}
	api.postJSON("/api/connections/nope/close", map[string]string{"reason": "x"}, http.StatusNotFound, nil)
	var closed struct{ Closed bool }
	api.postJSON("/api/connections/"+conns.Items[0].ID+"/close", map[string]string{"reason": "maintenance\nwindow"}, http.StatusOK, &closed)
	if !closed.Closed {
		t.Error("closed false")
	}
	select {
	case m := <-sub.C:
		if m.Err == nil || !strings.Contains(m.Err.Error(), "closed by an operator: maintenance window") {
			t.Errorf("client got %v", m.Err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the client heard nothing")
	}
	poll(t, "the connection gone", func() bool {
		api.getJSON("/api/connections", &conns)
		return conns.Total == 0
	})
}

// TestAdminAPIEvents streams overview events and ends the stream at
// Shutdown; a 33rd stream is refused.
func TestAdminAPIEvents(t *testing.T) {
	srv := startServer(t, Config{})
	base := startAdmin(t, srv.Server)
	resp, err := http.Get(base + "/api/events?interval=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	events := 0
	deadline := time.After(10 * time.Second)
	for events < 2 {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("stream ended early")
			}
			if strings.HasPrefix(l, "data: ") && strings.Contains(l, `"uptime_seconds"`) {
				events++
			} else if l != "" && l != "event: overview" {
				t.Errorf("unexpected line %q", l)
			}
		case <-deadline:
			t.Fatalf("%d events in 10s", events)
		}
	}

	// One client (an address) holds at most its share; more clients, from
	// other loopback addresses, fill the rest; then everyone is refused.
	var others []*http.Response
	open := func(from string, want int) {
		t.Helper()
		client := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{
			LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}).DialContext}}
		r, err := client.Get(base + "/api/events")
		if err != nil {
			t.Fatal(err)
		}
		if r.StatusCode != want {
			body, _ := io.ReadAll(r.Body)
			t.Fatalf("a stream from %s: %d %s, want %d", from, r.StatusCode, body, want)
		}
		if want != http.StatusOK {
			r.Body.Close()
			return
		}
		others = append(others, r)
	}
	for range maxEventStreamsPerClient - 1 {
		open("127.0.0.1", http.StatusOK)
	}
	open("127.0.0.1", http.StatusServiceUnavailable)
	for c := 2; c < 2+maxEventStreams/maxEventStreamsPerClient-1; c++ {
		for range maxEventStreamsPerClient {
			open(fmt.Sprintf("127.0.0.%d", c), http.StatusOK)
		}
	}
	open("127.0.0.9", http.StatusServiceUnavailable) // all 32 taken
	others[0].Body.Close()                           // one of 127.0.0.1's ends
	poll(t, "a slot freed", func() bool {
		client := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{
			LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.9")}}).DialContext}}
		r, err := client.Get(base + "/api/events")
		if err != nil {
			t.Fatal(err)
		}
		ok := r.StatusCode == http.StatusOK
		if ok {
			others = append(others, r)
		} else {
			r.Body.Close()
		}
		return ok
	})
	for _, r := range others[1:] {
		r.Body.Close()
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	for range lines { // bounded: ends when the stream does
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("stream ended %v after Shutdown", d)
	}
}

// TestAdminAPIJournal describes a real journal.
func TestAdminAPIJournal(t *testing.T) {
	dir := t.TempDir()
	j, err := persistence.Open(dir, persistence.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = j.Close() })
	srv := startServer(t, Config{Broker: broker.Config{Journal: j}})
	if err := srv.Recover(); err != nil {
		t.Fatal(err)
	}
	api := apiClient{t: t, base: startAdmin(t, srv.Server)}
	c := dialStomp(t, srv.addr, "alice")
	if err := c.Send("/queue/durable", "", []byte("kept"), stomp.SendOpt.Receipt, stomp.SendOpt.Header("persistent", "true")); err != nil {
		t.Fatal(err)
	}
	var got journalJSON
	api.getJSON("/api/journal", &got)
	if !got.Enabled || got.Dir != dir || got.State != "ok" || got.Sync != "always" || got.Size == nil || *got.Size == 0 || got.Segments == nil || *got.Segments < 1 {
		t.Errorf("journal: %+v", got)
	}
	if got.Fsync == nil || got.Fsync.Count == 0 || got.Fsync.Max <= 0 {
		t.Errorf("fsync: %+v", got.Fsync)
	}
	var o overview
	api.getJSON("/api/overview", &o)
	if o.Journal == nil || o.Journal.State != "ok" {
		t.Errorf("overview's journal: %+v", o.Journal)
	}
}

// failingBroker is a broker whose actions fail as a broken journal or a
// full queue makes them, which a test cannot easily bring the real one
// to.
type failingBroker struct {
	adminBroker
	moved int
	err   error
}

func (f failingBroker) PurgeQueue(string, string) (int, error) { return 0, f.err }
func (f failingBroker) MoveDeadLetters(string, string, int) (int, error) {
	return f.moved, f.err
}

// TestAdminAPIActionErrors maps the broker's failures to 503, and a move
// that stopped part-way answers what it moved.
func TestAdminAPIActionErrors(t *testing.T) {
	srv := startServer(t, Config{AdminToken: "tok"})
	api := apiClient{t: t, base: startAdmin(t, srv.Server), auth: bearer("tok")}
	srv.admin.broker = failingBroker{adminBroker: srv.Broker(), err: fmt.Errorf("journal: %w", broker.ErrJournalFailed)}
	api.postJSON("/api/queues/purge", map[string]string{"destination": "/queue/x"}, http.StatusServiceUnavailable, nil)

	srv.admin.broker = failingBroker{adminBroker: srv.Broker(), moved: 2, err: fmt.Errorf("/queue/x: %w", broker.ErrQueueFull)}
	var partial struct {
		Error string
		Moved int
	}
	api.postJSON("/api/queues/move-dlq", map[string]string{"destination": "/queue/DLQ.x"}, http.StatusServiceUnavailable, &partial)
	if partial.Moved != 2 || !strings.Contains(partial.Error, "queue full") {
		t.Errorf("partial move: %+v", partial)
	}
}
