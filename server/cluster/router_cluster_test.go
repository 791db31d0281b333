package cluster

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/server/cluster/clustertest"
)

// TestQueuesOnThreeNATS runs three routers, each first connected to its own
// server of a three-server NATS cluster: the queue stream gets 3 replicas
// by itself, the three feeds compete, and killing a NATS server in the
// middle of the stream loses no message whose PubAck was reported.
func TestQueuesOnThreeNATS(t *testing.T) {
	noLeaks(t)
	c := clustertest.StartNATS(t, 3)
	var routers []*router
	var sinks []*fakeSink
	for i := range 3 {
		// Node i's own server first, so that one connection has to move
		// when it dies; only that URL: the rest nats.go learns from the
		// cluster, as a node configured with one URL would.
		r := newTestRouter(t, c.URL(i), fmt.Sprint("n", i), nil)
		if got := r.replicas(); got != 3 {
			t.Fatalf("router %d computes %d replicas; servers %v", i, got, r.nc.Servers())
		}
		s := newFakeSink(5)
		s.auto = ackAll(s)
		consume(t, r, "/queue/r3", s)
		routers, sinks = append(routers, r), append(sinks, s)
	}

	var mu sync.Mutex
	stored := map[string]bool{}
	var waits sync.WaitGroup
	sent := 0
	publish := func() {
		id := fmt.Sprint("r3-", sent)
		r := routers[sent%3]
		sent++
		waits.Add(1)
		done := broker.ClusterDoneFunc(func(err error) {
			defer waits.Done()
			if err == nil {
				mu.Lock()
				stored[id] = true
				mu.Unlock()
			}
		})
		if err := r.PublishQueue("/", "/queue/r3", testMessage(id, "/queue/r3", id), done); err != nil {
			waits.Done()
		}
	}
	// Until every node consumes: the three feeds compete. (Three nodes
	// creating one durable consumer at once may take a retry for one.)
	eventually(t, 20*time.Second, "every node consuming", func() bool {
		publish()
		return sinks[0].count() > 0 && sinks[1].count() > 0 && sinks[2].count() > 0
	})
	// Then a stream with a NATS server killed in its middle.
	const n = 300
	for i := range n {
		if i == n/3 {
			c.Kill(1)
		}
		publish()
		if i%10 == 0 {
			time.Sleep(5 * time.Millisecond) // a stream, not one burst
		}
	}
	waitCh := make(chan struct{})
	go func() { waits.Wait(); close(waitCh) }()
	select {
	case <-waitCh:
	case <-time.After(30 * time.Second):
		t.Fatal("some PublishQueue never called done")
	}
	mu.Lock()
	want := len(stored)
	mu.Unlock()
	if want < sent/3 {
		t.Fatalf("only %d of %d publishes stored", want, sent)
	}
	consumed := func() map[string]int {
		got := map[string]int{}
		for _, s := range sinks {
			s.mu.Lock()
			for _, o := range s.offers {
				got[o.m.ID]++
			}
			s.mu.Unlock()
		}
		return got
	}
	eventually(t, 60*time.Second, "every stored message consumed", func() bool {
		got := consumed()
		for id := range stored {
			if got[id] == 0 {
				return false
			}
		}
		return true
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := routers[0].js.Stream(ctx, "SBTEST_Q_~2f")
	if err != nil {
		t.Fatal(err)
	}
	if r := st.CachedInfo().Config.Replicas; r != 3 {
		t.Fatalf("stream has %d replicas", r)
	}
	t.Logf("%d of %d publishes stored across the kill; consumed per node: %d %d %d; urls %s",
		want, sent, sinks[0].count(), sinks[1].count(), sinks[2].count(), strings.Join(c.URLs(), ","))
}
