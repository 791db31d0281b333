package server

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/frames"
)

// breakingJournal works until broken, then fails every Append with an
// error wrapping broker.ErrJournalFailed and reports it through Failed, as
// persistence.File does after a failed fsync.
type breakingJournal struct {
	mu     sync.Mutex
	failed error
}

func (j *breakingJournal) Append(context.Context, ...broker.JournalRecord) error { return j.Failed() }
func (j *breakingJournal) Replay(func(broker.JournalRecord) error) error         { return nil }
func (j *breakingJournal) Close() error                                          { return j.Failed() }

func (j *breakingJournal) Failed() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.failed
}

func (j *breakingJournal) breakDown(err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.failed = fmt.Errorf("%w: %w", broker.ErrJournalFailed, err)
}

// Once the journal has failed, /readyz says so (503, with the reason) and
// a persistent SEND gets ERROR journal-failed (retryable: a restarted
// broker recovers); non-persistent traffic still flows until the process
// restarts.
func TestJournalFailedNotReadyAndRefused(t *testing.T) {
	j := &breakingJournal{}
	srv := startServer(t, Config{Broker: broker.Config{Journal: j}})
	if err := srv.Recover(); err != nil {
		t.Fatal(err)
	}
	admin := startAdmin(t, srv.Server)
	if code, body := get(t, admin+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz with a working journal: %d %q", code, body)
	}
	c := dialRaw(t, srv.addr)
	c.connect()
	c.send(frame("SEND", "kept", "destination:/queue/q", "persistent:true", "receipt:r1"))
	if f := c.next(5 * time.Second); f.Command != frames.CmdReceipt || header(f, "receipt-id") != "r1" {
		t.Fatalf("persistent SEND with a working journal: %s %q", f.Command, header(f, "message"))
	}

	j.breakDown(fmt.Errorf("fsync 00000001.seg: %w", syscall.EIO))
	code, body := get(t, admin+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "journal failed") || !strings.Contains(body, "input/output error") {
		t.Fatalf("/readyz after the journal failed: %d %q, want 503 naming the failure", code, body)
	}

	c.send(frame("SEND", "volatile", "destination:/queue/q", "receipt:r2"))
	if f := c.next(5 * time.Second); f.Command != frames.CmdReceipt || header(f, "receipt-id") != "r2" {
		t.Fatalf("non-persistent SEND after the failure: %s %q", f.Command, header(f, "message"))
	}
	c.send(frame("SEND", "lost", "destination:/queue/q", "persistent:true", "receipt:r3"))
	f := c.next(5 * time.Second)
	if f.Command != frames.CmdError || header(f, "error-code") != broker.CodeJournalFailed ||
		header(f, "retryable") != "true" || header(f, "receipt-id") != "r3" {
		t.Fatalf("persistent SEND after the failure: %s error-code:%q retryable:%q receipt-id:%q, want ERROR journal-failed",
			f.Command, header(f, "error-code"), header(f, "retryable"), header(f, "receipt-id"))
	}
	c.expectClosed(5 * time.Second)
}
