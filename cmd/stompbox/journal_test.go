package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/cmd/stompbox/internal/config"
	"github.com/stompbox/stompbox/server"
)

// breakingJournal works until broken, then fails as persistence.File does
// after a failed fsync: every Append and Close return the sticky error.
type breakingJournal struct {
	mu     sync.Mutex
	failed error
	closed bool
}

func (j *breakingJournal) Append(context.Context, ...broker.JournalRecord) error { return j.Failed() }
func (j *breakingJournal) Replay(func(broker.JournalRecord) error) error         { return nil }

func (j *breakingJournal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.closed = true
	return j.failed
}

func (j *breakingJournal) Failed() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.failed
}

// TestServeExitsWhenJournalFails: once the journal has failed, serve shuts
// down on its own (no signal) and returns an error, so that run exits 1 and
// the supervisor restarts the process into recovery; the log says why at
// error level.
func TestServeExitsWhenJournalFails(t *testing.T) {
	c := config.Default()
	c.Listen = config.Listen{STOMP: "127.0.0.1:0", Admin: "127.0.0.1:0"}
	c.Journal.Dir = t.TempDir() // not opened: the fake stands in for it
	c.Auth.Anonymous = true
	c.ShutdownTimeout = config.Duration(5 * time.Second)
	var logs syncWriter
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	j := &breakingJournal{}
	open := func(prometheus.Registerer) (server.Journal, error) { return j, nil }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // only if the test fails: serve must stop without it
	done := make(chan error, 1)
	go func() { done <- serveWith(ctx, &config.Loaded{Config: c}, logger, make(chan os.Signal), open) }()
	listening := regexp.MustCompile(`msg="stompbox listening"`)
	for i := 0; i < 500 && !listening.MatchString(logs.String()); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if !listening.MatchString(logs.String()) {
		t.Fatalf("no listening line:\n%s", logs.String())
	}

	j.mu.Lock()
	j.failed = fmt.Errorf("%w: fsync 00000001.seg: %w", broker.ErrJournalFailed, syscall.EIO)
	j.mu.Unlock()
	select {
	case err := <-done:
		if !errors.Is(err, broker.ErrJournalFailed) || !errors.Is(err, syscall.EIO) {
			t.Fatalf("serve returned %v, want the journal's failure", err)
		}
	case <-time.After(5*server.JournalCheckInterval + 10*time.Second):
		t.Fatal("serve did not return after the journal failed")
	}
	j.mu.Lock()
	closed := j.closed
	j.mu.Unlock()
	if !closed {
		t.Error("the journal was not closed: the shutdown sequence must run before the exit")
	}
	out := logs.String()
	if !strings.Contains(out, `level=ERROR msg="journal failed`) || !strings.Contains(out, "exiting non-zero") {
		t.Errorf("no error-level line saying the journal failed and the process exits:\n%s", out)
	}
}
