package cluster

import (
	"errors"
	"testing"
	"time"

	"github.com/stompbox/stompbox/broker"
)

// TestPublishPastMaxInflight pushes the publishes awaiting a PubAck to
// maxInflight: a queue publish past it is refused as full (the broker
// slows the producer down), a history publish as unavailable, and
// nothing is sent; once one settles, publishing goes on.
func TestPublishPastMaxInflight(t *testing.T) {
	noLeaks(t)
	srv := startNATS(t, -1, t.TempDir())
	r := newTestRouter(t, natsURL(srv), "a", nil)
	r.KeepHistory("/", 0, broker.HistoryRule{Pattern: "/topic/news", Size: 100}, &fakeHistSink{})
	eventually(t, 5*time.Second, "history ready", func() bool { return r.historyReady() == nil })
	r.queues.inflight.Store(maxInflight)
	never := broker.ClusterDoneFunc(func(err error) { t.Errorf("done called for a refused publish: %v", err) })
	m := histMessage("q1", "news", "x")
	if err := r.PublishQueue("/", "/queue/q", m, never); !errors.Is(err, broker.ErrClusterFull) {
		t.Fatalf("queue publish past maxInflight: %v, want ErrClusterFull", err)
	}
	if err := r.PublishHistory("/", "news", 0, m, never); !errors.Is(err, broker.ErrClusterUnavailable) {
		t.Fatalf("history publish past maxInflight: %v, want ErrClusterUnavailable", err)
	}
	if n := r.queues.inflight.Load(); n != maxInflight {
		t.Fatalf("inflight %d after refusals, want %d (nothing counted)", n, maxInflight)
	}
	r.queues.inflight.Store(maxInflight - 1) // one settled
	done := make(chan error, 1)
	if err := r.PublishQueue("/", "/queue/q", m, broker.ClusterDoneFunc(func(err error) { done <- err })); err != nil {
		t.Fatalf("queue publish under maxInflight: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("queue publish: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no outcome")
	}
	r.queues.inflight.Store(0)
}
