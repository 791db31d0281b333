package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stompbox/stompbox/server/cluster/clustertest"
)

// TestHistoryOnThreeNATS: on a three-server NATS cluster the history stream
// gets 3 replicas by itself, and nodes connected to different servers see
// the same epoch (the stream's creation time is the cluster's, not a
// server's) and the same sequences.
func TestHistoryOnThreeNATS(t *testing.T) {
	noLeaks(t)
	c := clustertest.StartNATS(t, 3)
	a := newTestRouter(t, c.URL(0), "a", nil)
	b := newTestRouter(t, c.URL(2), "b", nil)
	sa, sb := &fakeHistSink{}, &fakeHistSink{}
	a.KeepHistory("/", 0, chatRule, sa)
	b.KeepHistory("/", 0, chatRule, sb)
	for i := range 3 {
		topic := fmt.Sprint("chat.", i)
		// The stream's first leader election may take a retry.
		eventually(t, 20*time.Second, "a publish", func() bool {
			return publishHistoryWait(t, a, topic, histMessage(fmt.Sprint("c", i), topic, "x")) == nil
		})
	}
	for name, s := range map[string]*fakeHistSink{"a": sa, "b": sb} {
		got := s.waitDeliveries(t, 3)
		for i, d := range got {
			if d.seq != uint64(i+1) || d.topic != fmt.Sprint("chat.", i) {
				t.Fatalf("%s: delivery %d: seq %d topic %q", name, i, d.seq, d.topic)
			}
		}
	}
	ea, eb := sa.startCalls(), sb.startCalls()
	if ea[len(ea)-1].epoch != eb[len(eb)-1].epoch {
		t.Fatalf("epochs differ: a %+v, b %+v", ea, eb)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := a.js.Stream(ctx, historyStreamName("sbtest", "/", historyRuleID(chatRule.Pattern)))
	if err != nil {
		t.Fatal(err)
	}
	if r := st.CachedInfo().Config.Replicas; r != 3 {
		t.Fatalf("history stream has %d replicas", r)
	}
}
