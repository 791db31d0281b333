package server

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stompbox/stompbox/broker"
)

// startAdmin serves the admin endpoint of srv on 127.0.0.1:0.
func startAdmin(t *testing.T, srv *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.ServeAdmin(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("ServeAdmin returned %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// metricLine returns the sample line of an unlabelled metric.
func metricLine(body, name string) string {
	for line := range strings.SplitSeq(body, "\n") {
		if strings.HasPrefix(line, name+" ") {
			return line
		}
	}
	return ""
}

func TestAdminMetricsAfterAScenario(t *testing.T) {
	srv := startServer(t, Config{Broker: broker.Config{MaxRedeliveries: 1}})
	admin := startAdmin(t, srv.Server)

	c := dialRaw(t, srv.addr)
	c.connect()
	c.send(frame("SUBSCRIBE", "", "id:s", "destination:/queue/jobs", "ack:client-individual"))
	c.send(frame("SEND", "one", "destination:/queue/jobs"))
	c.send(frame("SEND", "two", "destination:/queue/jobs", "receipt:r"))
	var acks []string
	for len(acks) < 2 {
		f := c.next(5 * time.Second)
		if f.Command.String() == "MESSAGE" {
			acks = append(acks, header(f, "ack"))
		}
	}
	c.send(frame("ACK", "", "id:"+acks[0]))
	c.send(frame("NACK", "", "id:"+acks[1])) // redelivered once
	var again string
	for again == "" {
		if f := c.next(5 * time.Second); f.Command.String() == "MESSAGE" {
			again = header(f, "ack")
		}
	}
	c.send(frame("NACK", "", "id:"+again, "receipt:done")) // past max-redeliveries: to the DLQ
	for {
		if f := c.next(5 * time.Second); f.Command.String() == "RECEIPT" && header(f, "receipt-id") == "done" {
			break
		}
	}

	code, body := get(t, admin+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	want := map[string]string{
		"stompbox_sessions":                     "stompbox_sessions 1",
		"stompbox_messages_published_total":     "stompbox_messages_published_total 2",
		"stompbox_messages_delivered_total":     "stompbox_messages_delivered_total 3",
		"stompbox_messages_redelivered_total":   "stompbox_messages_redelivered_total 1",
		"stompbox_messages_dead_lettered_total": "stompbox_messages_dead_lettered_total 1",
		"stompbox_slow_consumers_total":         "stompbox_slow_consumers_total 0",
	}
	for name, line := range want {
		if got := metricLine(body, name); got != line {
			t.Errorf("%s: got %q, want %q", name, got, line)
		}
	}
	for _, name := range []string{"go_goroutines", "process_open_fds"} {
		if metricLine(body, name) == "" {
			t.Errorf("%s missing: the Go and process collectors must be registered", name)
		}
	}
}

func TestAdminHealthAndReadiness(t *testing.T) {
	srv := startServer(t, Config{})
	admin := startAdmin(t, srv.Server)
	if code, body := get(t, admin+"/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	if code, body := get(t, admin+"/readyz"); code != http.StatusOK || body != "ready\n" {
		t.Fatalf("/readyz while serving: %d %q", code, body)
	}

	// A server with a journal is not ready until it has recovered.
	j := &nopJournal{}
	unrecovered := startServer(t, Config{Broker: broker.Config{Journal: j}})
	admin2 := startAdmin(t, unrecovered.Server)
	if code, body := get(t, admin2+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "not recovered") {
		t.Fatalf("/readyz before Recover: %d %q", code, body)
	}
	if err := unrecovered.Recover(); err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, admin2+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz after Recover: %d", code)
	}
}

// Shutting down makes /readyz fail at once, so a load balancer stops
// sending clients while connections are being told.
func TestAdminNotReadyWhileShuttingDown(t *testing.T) {
	srv := New(Config{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	h := srv.AdminHandler()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "shutting down") {
		t.Fatalf("/readyz after Shutdown: %d %q", rec.Code, rec.Body.String())
	}
}

// nopJournal has nothing to replay.
type nopJournal struct{}

// readAroundJournal is a journal whose recovery read around damage.
type readAroundJournal struct{ nopJournal }

func (readAroundJournal) Damage() string { return "journal recovered around 1 damaged range(s)" }

// A journal that recovered around damage is ready (everything good was
// recovered), and /readyz says what it found.
func TestAdminReadyReportsJournalDamage(t *testing.T) {
	srv := startServer(t, Config{Broker: broker.Config{Journal: readAroundJournal{}}})
	if err := srv.Recover(); err != nil {
		t.Fatal(err)
	}
	admin := startAdmin(t, srv.Server)
	if code, body := get(t, admin+"/readyz"); code != http.StatusOK || body != "ready\njournal recovered around 1 damaged range(s)\n" {
		t.Fatalf("/readyz: %d %q", code, body)
	}
}

func (nopJournal) Append(context.Context, ...broker.JournalRecord) error { return nil }
func (nopJournal) Replay(func(broker.JournalRecord) error) error         { return nil }
func (nopJournal) Close() error                                          { return nil }
