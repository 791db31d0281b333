package persistence

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stompbox/stompbox/broker"
	jt "github.com/stompbox/stompbox/persistence/journaltest"
)

// gateFS is a quotaFS whose segment fsyncs can be held: the flusher then
// stays in its round while a test queues the requests of the next one.
type gateFS struct {
	*quotaFS
	mu     sync.Mutex
	gate   chan struct{} // while set, Datasync waits for it to close
	inSync chan struct{} // told when a Datasync waits at the gate
}

func (g *gateFS) Create(path string) (segmentFile, error) {
	sf, err := g.quotaFS.Create(path)
	if err != nil {
		return nil, err
	}
	return gateFile{sf, g}, nil
}

func (g *gateFS) hold() { g.mu.Lock(); g.gate = make(chan struct{}); g.mu.Unlock() }

func (g *gateFS) release() {
	g.mu.Lock()
	close(g.gate)
	g.gate = nil
	g.mu.Unlock()
}

type gateFile struct {
	segmentFile
	g *gateFS
}

func (f gateFile) Datasync() error {
	f.g.mu.Lock()
	gate := f.g.gate
	f.g.mu.Unlock()
	if gate != nil {
		f.g.inSync <- struct{}{}
		<-gate
	}
	return f.segmentFile.Datasync()
}

// TestDiskFullRotationKeepsOrder: in one flusher round, a removal that
// finds no room when the active segment's last chunk is written (its
// writes run out of space twice) waits; a message behind it that needs
// the next segment must not be written there ahead of it, and so be
// acknowledged while the removal before it is not on disk (found by
// review: the rotation path wrote it).
func TestDiskFullRotationKeepsOrder(t *testing.T) {
	dir := t.TempDir()
	g := &gateFS{quotaFS: newQuotaFS(1 << 30), inSync: make(chan struct{}, 1)}
	cfg := fullConfig(t, nil)
	f := openOn(t, dir, cfg, g)
	ctx := context.Background()
	removal := func(i int) broker.JournalRecord { return jt.Remove(medium(i)) }
	msgLen, _, _ := encode([]broker.JournalRecord{medium(0)})
	remLen, _, _ := encode([]broker.JournalRecord{removal(0)})
	L, R := int64(len(msgLen)), int64(len(remLen))
	mustAppend(t, f, medium(500)) // the message the removal below acknowledges: it may not come back
	// Fill the active segment until the next message needs the next
	// segment but two removals still fit.
	for i := 1; ; i++ {
		if i > 100 {
			t.Fatal("could not arrange the active segment")
		}
		rem := cfg.SegmentSize - f.offset
		if rem < L && rem >= 2*R {
			break
		}
		if rem >= L+2*R {
			mustAppend(t, f, medium(i))
		} else {
			mustAppend(t, f, removal(1000+i))
		}
	}

	// Hold the flusher in the fsync of a waited Append (X), queue the
	// removal (F, a Forget) and a message (G) that needs the next segment,
	// and make F's writes run out of space twice.
	g.hold()
	xDone := make(chan error, 1)
	go func() { xDone <- f.Append(ctx, removal(2000)) }()
	select {
	case <-g.inSync:
	case <-time.After(5 * time.Second):
		t.Fatal("the flusher never reached the fsync")
	}
	f.Forget(removal(500))
	gDone := make(asyncOutcome, 1)
	if err := f.AppendAsync(gDone, medium(600)); err != nil {
		t.Fatal(err)
	}
	g.quotaFS.mu.Lock()
	g.quotaFS.writeNone = 2
	g.quotaFS.mu.Unlock()
	g.release()
	if err := <-xDone; err != nil {
		t.Fatal(err)
	}
	var gErr error
	select {
	case gErr = <-gDone:
	case <-time.After(5 * time.Second):
		t.Fatal("the message behind the waiting removal was never answered")
	}
	wantFull(t, f, "a message behind a removal waiting for room", gErr)
	// The removal is written once there is room (the next retry), and
	// then messages are taken again.
	appendWhenRoom(t, f, medium(700))
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	for _, r := range replay(t, open(t, dir, Config{MinFree: -1, Logger: testLogger(t, nil)})) {
		switch r.MessageID {
		case medium(500).MessageID:
			t.Error("the acknowledged message came back: its removal was lost")
		case medium(600).MessageID:
			t.Error("the refused message was written")
		}
	}
}
