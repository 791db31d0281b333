package cluster

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/stompbox/stompbox/broker"
)

func TestNATSDownAndBack(t *testing.T) {
	noLeaks(t)
	dir := t.TempDir()
	srv := startNATS(t, -1, dir)
	port := srv.Addr().(*net.TCPAddr).Port
	a := newTestRouter(t, natsURL(srv), "a", nil)
	b := newTestRouter(t, natsURL(srv), "b", nil)
	sb := newFakeSink(100)
	sb.auto = ackAll(sb)
	consume(t, b, "/queue/r", sb)
	if err := publishWait(t, a, "/queue/r", testMessage("r1", "/queue/r", "x")); err != nil {
		t.Fatal(err)
	}
	if o, ok := sb.next(5 * time.Second); !ok || o.m.ID != "r1" {
		t.Fatalf("before the outage: %+v %v", o, ok)
	}

	srv.Shutdown()
	srv.WaitForShutdown()
	eventually(t, 5*time.Second, "both disconnected", func() bool { return !a.nc.IsConnected() && !b.nc.IsConnected() })
	err := publishWait(t, a, "/queue/r", testMessage("lost", "/queue/r", "x"))
	if !errors.Is(err, broker.ErrClusterUnavailable) {
		t.Fatalf("PublishQueue while down: %v", err)
	}
	if err := a.PublishTopic("/", "t", testMessage("t", "/topic/t", "x")); !errors.Is(err, broker.ErrClusterUnavailable) {
		t.Fatalf("PublishTopic while down: %v", err)
	}
	time.Sleep(300 * time.Millisecond) // the feed backs off meanwhile

	startNATS(t, port, dir)
	eventually(t, 10*time.Second, "both reconnected", func() bool { return a.nc.IsConnected() && b.nc.IsConnected() })
	// JetStream recovers its stream from dir; until its leader is back a
	// publish may be refused as unavailable, which is what a producer
	// would be told too.
	var lastErr error
	eventually(t, 10*time.Second, "publish after restart", func() bool {
		lastErr = publishWait(t, a, "/queue/r", testMessage("r2", "/queue/r", "x"))
		if lastErr != nil && !errors.Is(lastErr, broker.ErrClusterUnavailable) {
			t.Fatalf("publish after restart: %v", lastErr)
		}
		return lastErr == nil
	})
	o, ok := sb.next(10 * time.Second)
	if !ok || o.m.ID != "r2" || o.deliveries != 1 {
		t.Fatalf("after the outage the feed offered %+v %v", o, ok)
	}
}
