package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/persistence"
)

// runTimeout bounds every wait on a Run in these tests.
const runTimeout = 10 * time.Second

// bound is one OnListening call.
type bound struct {
	name, addr string
}

// runHandle is one Run in a goroutine: the listeners it reported, and
// its result.
type runHandle struct {
	t      *testing.T
	cancel context.CancelFunc
	bound  chan bound // every OnListening call; capacity for all five
	done   chan error
	addrs  map[string]string // filled by waitBound
}

// startRun runs Run(opts) until the test ends (or stop); OnListening
// reports to the handle.
func startRun(t *testing.T, opts Options) *runHandle {
	t.Helper()
	h := &runHandle{t: t, bound: make(chan bound, 5), done: make(chan error, 1), addrs: map[string]string{}}
	opts.OnListening = func(name string, addr net.Addr) { h.bound <- bound{name, addr.String()} }
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- Run(ctx, opts) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-h.done: // the test asserted the result, if it cared
		case <-time.After(runTimeout):
			t.Error("Run did not return after its context ended")
		}
	})
	return h
}

// waitBound waits until the listeners names have been reported, in
// order, and returns their addresses; Run returning first fails the test.
func (h *runHandle) waitBound(names ...string) map[string]string {
	h.t.Helper()
	var got []string
	timeout := time.After(runTimeout)
	for len(got) < len(names) {
		select {
		case b := <-h.bound: // before done: a Run that returned may have bound some
			got = append(got, b.name)
			h.addrs[b.name] = b.addr
			continue
		default:
		}
		select {
		case b := <-h.bound:
			got = append(got, b.name)
			h.addrs[b.name] = b.addr
		case err := <-h.done:
			h.done <- err // for the cleanup
			h.t.Fatalf("Run returned %v after binding %v; want %v", err, got, names)
		case <-timeout:
			h.t.Fatalf("listeners bound: %v; want %v", got, names)
		}
	}
	if !slices.Equal(got, names) {
		h.t.Fatalf("listeners bound in the order %v; want %v", got, names)
	}
	return h.addrs
}

// stop ends the Run and returns its result.
func (h *runHandle) stop() error {
	h.t.Helper()
	h.cancel()
	return h.wait()
}

// wait returns Run's result (and leaves it for the cleanup).
func (h *runHandle) wait() error {
	h.t.Helper()
	select {
	case err := <-h.done:
		h.done <- err
		return err
	case <-time.After(runTimeout):
		h.t.Fatal("Run did not return")
		return nil
	}
}

// TestRunRecoversThroughRun: a persistent message receipted by one Run is
// on disk, and the next Run on the same directory recovers it and
// delivers it: the journal, its recovery and its close are Run's.
func TestRunRecoversThroughRun(t *testing.T) {
	dir := t.TempDir()
	opts := Options{
		Listen:     Listen{STOMP: "127.0.0.1:0", Admin: "127.0.0.1:0"},
		JournalDir: dir,
		Journal:    persistence.Config{Sync: persistence.SyncAlways},
	}

	first := startRun(t, opts)
	addr := first.waitBound("admin", "stomp")["stomp"]
	producer, err := stomp.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	// The receipt comes once the journal has fsynced the message.
	if err := producer.Send("/queue/run", "text/plain", []byte("kept across runs"),
		stomp.SendOpt.Receipt, stomp.SendOpt.Header("persistent", "true")); err != nil {
		t.Fatal(err)
	}
	if err := producer.Disconnect(); err != nil {
		t.Fatal(err)
	}
	if err := first.stop(); err != nil {
		t.Fatalf("first Run returned %v, want nil after its context ended", err)
	}

	second := startRun(t, opts)
	addrs := second.waitBound("admin", "stomp")
	if addrs["stomp"] == addr {
		t.Logf("the kernel gave the same port again: %s", addr) // allowed, only unusual
	}
	consumer, err := stomp.Dial("tcp", addrs["stomp"])
	if err != nil {
		t.Fatal(err)
	}
	sub, err := consumer.Subscribe("/queue/run", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-sub.C:
		if m.Err != nil {
			t.Fatal(m.Err)
		}
		if string(m.Body) != "kept across runs" {
			t.Fatalf("recovered body %q, want %q", m.Body, "kept across runs")
		}
	case <-time.After(runTimeout):
		t.Fatal("the persistent message was not recovered by the second Run")
	}
	if err := consumer.Disconnect(); err != nil {
		t.Fatal(err)
	}
	if err := second.stop(); err != nil {
		t.Fatalf("second Run returned %v, want nil", err)
	}
}

// runJournal is a journal for Run's hook: Replay waits for release (nil:
// at once) and returns replayErr; Failed returns what breakDown set;
// Close is recorded.
type runJournal struct {
	release   chan struct{}
	replayErr error

	mu     sync.Mutex
	failed error
	closed bool
}

func (j *runJournal) Append(context.Context, ...broker.JournalRecord) error { return j.Failed() }

func (j *runJournal) Replay(func(broker.JournalRecord) error) error {
	if j.release != nil {
		select {
		case <-j.release:
		case <-time.After(runTimeout): // a test that fails must not hang Run
		}
	}
	return j.replayErr
}

func (j *runJournal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.closed = true
	return nil
}

func (j *runJournal) Failed() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.failed
}

func (j *runJournal) breakDown(err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.failed = err
}

func (j *runJournal) isClosed() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.closed
}

// open is Options.OpenJournal for j.
func (j *runJournal) open(prometheus.Registerer) (Journal, error) { return j, nil }

// readyz returns /readyz's status and body.
func readyz(t *testing.T, admin string) (int, string) {
	t.Helper()
	client := http.Client{Timeout: runTimeout}
	resp, err := client.Get("http://" + admin + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// TestRunAdminAnswersDuringRecovery: the admin listener is bound before
// the journal is replayed, and /readyz says 503 while it is; the STOMP
// listeners are bound only after recovery, and then /readyz says ready.
func TestRunAdminAnswersDuringRecovery(t *testing.T) {
	j := &runJournal{release: make(chan struct{})}
	h := startRun(t, Options{
		Listen:      Listen{STOMP: "127.0.0.1:0", HTTP: "127.0.0.1:0", Admin: "127.0.0.1:0"},
		OpenJournal: j.open,
	})
	admin := h.waitBound("admin")["admin"]
	if code, body := readyz(t, admin); code != http.StatusServiceUnavailable || !strings.Contains(body, "journal not recovered yet") {
		t.Fatalf("/readyz during recovery: %d %q; want 503, journal not recovered yet", code, body)
	}
	select {
	case b := <-h.bound:
		t.Fatalf("%s bound before recovery ended", b.name)
	default:
	}
	close(j.release)
	h.waitBound("stomp", "http")
	code, body := 0, ""
	for range 500 { // the serving loops register a moment after binding
		if code, body = readyz(t, admin); code == http.StatusOK {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code != http.StatusOK || body != "ready\n" {
		t.Fatalf("/readyz after recovery: %d %q; want 200 ready", code, body)
	}
	if err := h.stop(); err != nil {
		t.Fatalf("Run returned %v, want nil", err)
	}
	if !j.isClosed() {
		t.Error("the journal was not closed")
	}
}

// TestRunRecoveryFails: a journal that cannot be replayed stops Run with
// its error, after the admin listener (only) was bound, and is closed.
func TestRunRecoveryFails(t *testing.T) {
	replayErr := errors.New("segment 7 unreadable")
	j := &runJournal{replayErr: replayErr}
	h := startRun(t, Options{Listen: Listen{STOMP: "127.0.0.1:0", Admin: "127.0.0.1:0"}, OpenJournal: j.open})
	if err := h.wait(); !errors.Is(err, replayErr) {
		t.Fatalf("Run returned %v, want the replay's error", err)
	}
	h.waitBound("admin")
	select {
	case b := <-h.bound:
		t.Fatalf("%s bound although recovery failed", b.name)
	default:
	}
	if !j.isClosed() {
		t.Error("the journal was not closed")
	}
}

// TestRunListenerInUse: a listener that cannot bind stops Run with an
// error naming it, after shutting down what was already bound, journal
// included.
func TestRunListenerInUse(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = taken.Close() }()
	j := &runJournal{}
	h := startRun(t, Options{
		Listen:      Listen{STOMP: "127.0.0.1:0", HTTP: taken.Addr().String(), Admin: "127.0.0.1:0"},
		OpenJournal: j.open,
	})
	err = h.wait()
	if !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), "listen.http") {
		t.Fatalf("Run returned %v, want listen.http: address in use", err)
	}
	addrs := h.waitBound("admin", "stomp")
	if _, err := net.DialTimeout("tcp", addrs["stomp"], runTimeout); err == nil {
		t.Error("the STOMP listener still accepts after Run returned")
	}
	if !j.isClosed() {
		t.Error("the journal was not closed")
	}
}

// TestRunJournalFails: a journal that fails while serving ends Run on
// its own, with the failure, after the ordered shutdown closed it.
func TestRunJournalFails(t *testing.T) {
	var logs lockedBuffer
	j := &runJournal{}
	h := startRun(t, Options{
		Config:      Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))},
		Listen:      Listen{STOMP: "127.0.0.1:0"},
		OpenJournal: j.open,
	})
	h.waitBound("stomp")
	j.breakDown(broker.ErrJournalFailed)
	select {
	case err := <-h.done:
		h.done <- err
		if !errors.Is(err, broker.ErrJournalFailed) {
			t.Fatalf("Run returned %v, want the journal's failure", err)
		}
	case <-time.After(5*JournalCheckInterval + runTimeout):
		t.Fatal("Run did not return after the journal failed")
	}
	if !j.isClosed() {
		t.Error("the journal was not closed")
	}
	if out := logs.String(); !strings.Contains(out, `level=ERROR msg="journal failed`) {
		t.Errorf("no error-level line saying the journal failed:\n%s", out)
	}
}

// countingReloader counts reloads and fails them with err.
type countingReloader struct {
	name string
	err  error

	mu sync.Mutex
	n  int
}

func (r *countingReloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n++
	return r.err
}

func (r *countingReloader) String() string { return r.name }

func (r *countingReloader) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// TestRunReload: each value on Reload rereads every reloader (a failing
// one is logged and skipped) and re-authorizes the open sessions; no TLS
// listener: nothing to reload there. LogAttrs reach the listening line.
func TestRunReload(t *testing.T) {
	var logs lockedBuffer
	reload := make(chan os.Signal)
	users := &countingReloader{name: "users.txt"}
	acl := &countingReloader{name: "acl.yaml", err: errors.New("line 3: bad rule")}
	h := startRun(t, Options{
		Config:    Config{Logger: slog.New(slog.NewTextHandler(&logs, nil)), Version: "1.2.3"},
		Listen:    Listen{STOMP: "127.0.0.1:0"},
		Reload:    reload,
		Reloaders: []Reloader{users, acl},
		LogAttrs:  []any{"config", "stompbox.yaml"},
	})
	addr := h.waitBound("stomp")["stomp"]
	c := dialRaw(t, addr)
	c.connect()
	for range 2 {
		select {
		case reload <- syscall.SIGHUP: // unbuffered: Run has taken it
		case <-time.After(runTimeout):
			t.Fatal("Run did not take the reload")
		}
	}
	_ = c.conn.Close() // no linger for a connection the server would close at shutdown
	want := []string{
		`msg="stompbox listening" stomp=` + addr + ` websocket_path=/ws version=1.2.3 config=stompbox.yaml`,
		`msg="SIGHUP: no TLS listener, nothing to reload"`,
		`msg=reloaded file=users.txt`,
		`level=ERROR msg="reload failed; the previous contents stay in use" file=acl.yaml err="line 3: bad rule"`,
		`msg="re-authorizing open sessions" sessions=1`,
	}
	if err := h.stop(); err != nil {
		t.Fatalf("Run returned %v, want nil", err)
	}
	if users.count() != 2 || acl.count() != 2 {
		t.Errorf("reloads: users %d, acl %d; want 2 each", users.count(), acl.count())
	}
	out := logs.String()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("log lacks %s:\n%s", w, out)
		}
	}
	if n := strings.Count(out, `msg="re-authorizing open sessions"`); n != 2 {
		t.Errorf("%d re-authorizing lines, want 2", n)
	}
}

// TestRunRefusesAJournalInConfig: the journal is Run's to open and close;
// one already in Config is refused before anything is bound.
func TestRunRefusesAJournalInConfig(t *testing.T) {
	var cfg Config
	cfg.Broker.Journal = &runJournal{}
	err := Run(context.Background(), Options{Config: cfg, Listen: Listen{STOMP: "127.0.0.1:0"}})
	if err == nil || !strings.Contains(err.Error(), "Config.Broker.Journal") {
		t.Fatalf("Run returned %v, want a refusal naming Config.Broker.Journal", err)
	}
}
