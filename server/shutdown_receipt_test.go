package server

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stompbox/stompbox/broker"
)

// gatedJournal holds every Append until release is closed, as a slow disk
// would; entered gets a value when an Append starts waiting.
type gatedJournal struct {
	entered chan struct{}
	release chan struct{}
	appends atomic.Int32
}

func (j *gatedJournal) Append(ctx context.Context, _ ...broker.JournalRecord) error {
	j.appends.Add(1)
	j.entered <- struct{}{}
	select {
	case <-j.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (j *gatedJournal) Replay(func(broker.JournalRecord) error) error { return nil }
func (j *gatedJournal) Close() error                                  { return nil }

// TestShutdownFinishesInFlightReceipt: a persistent SEND waiting for the
// journal when shutdown begins still gets its RECEIPT (it is on disk), then
// the client gets ERROR server-shutdown; a SEND behind it is not taken.
func TestShutdownFinishesInFlightReceipt(t *testing.T) {
	j := &gatedJournal{entered: make(chan struct{}, 2), release: make(chan struct{})}
	srv := startServer(t, Config{Broker: broker.Config{Journal: j}})
	c := dialRaw(t, srv.addr)
	c.connect()
	c.send(frame("SEND", "first", "destination:/queue/q", "persistent:true", "receipt:r1") +
		frame("SEND", "second", "destination:/queue/q", "persistent:true", "receipt:r2"))
	select {
	case <-j.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the first SEND never reached the journal")
	}

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shut <- srv.Shutdown(ctx)
	}()
	for i := 0; i < 500 && !srv.isClosed(); i++ {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // let Shutdown reach the session
	close(j.release)

	c.expectReceipt("r1")
	checkERROR(t, c.next(5*time.Second), errorWant{message: "server shutting down", code: "server-shutdown", retryable: true})
	c.expectClosed(5 * time.Second)
	if err := <-shut; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if n := j.appends.Load(); n != 1 {
		t.Fatalf("%d journal appends, want 1: the SEND behind the shutdown must not be taken", n)
	}
	if got := srv.Broker().Stats().Published.Load(); got != 1 {
		t.Fatalf("published %d, want 1", got)
	}
}
