package cluster

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/stompbox/stompbox/broker"
)

// startNATS runs a one-server JetStream NATS on 127.0.0.1 (port -1: a free
// one) storing in dir; it is shut down at the end of the test.
func startNATS(t *testing.T, port int, dir string) *natsserver.Server {
	t.Helper()
	s, err := natsserver.NewServer(&natsserver.Options{
		Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir,
		NoLog: true, NoSigs: true, ServerName: "n1",
	})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

// natsURL is the client URL of s.
func natsURL(s *natsserver.Server) string { return "nats://" + s.Addr().String() }

// connect opens a connection as the link does (NoEcho, nothing buffered
// while reconnecting, reconnecting forever and fast).
func connect(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.NoEcho(), nats.ReconnectBufSize(-1), nats.MaxReconnects(-1),
		nats.ReconnectWait(50*time.Millisecond), nats.ReconnectJitter(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// newTestRouter builds a router on its own connection to url (one node).
func newTestRouter(t *testing.T, url, node string, mod func(*routerConfig)) *router {
	t.Helper()
	cfg := routerConfig{NC: connect(t, url), Prefix: "sbtest", Node: node,
		AckWait: 2 * time.Second, PublishTimeout: 2 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	r, err := newRouter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := r.close(ctx); err != nil {
			t.Errorf("router close: %v", err)
		}
	})
	return r
}

// eventually polls cond every 10ms for up to d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testMessage(id, dest, body string) *broker.Message {
	return broker.RecoveredMessage(id, dest, hdrs("destination", dest), []byte(body), true, 0)
}

// publishWait publishes m to queue and returns done's error.
func publishWait(t *testing.T, r *router, queue string, m *broker.Message) error {
	t.Helper()
	ch := make(chan error, 1)
	if err := r.PublishQueue("/", queue, m, broker.ClusterDoneFunc(func(err error) { ch <- err })); err != nil {
		return err
	}
	select {
	case err := <-ch:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("PublishQueue: done never called")
		return nil
	}
}

// offer is one message a fakeSink was offered.
type offer struct {
	m          *broker.Message
	deliveries int
	settle     broker.Settler
}

// fakeSink is a broker.QueueSink with credit the test controls; auto (if
// set) settles each offer as it arrives and gives the credit back.
type fakeSink struct {
	mu     sync.Mutex
	credit int
	offers []offer
	auto   func(o offer) // called outside mu
	feed   broker.QueueFeed
	ch     chan offer
}

func newFakeSink(credit int) *fakeSink {
	return &fakeSink{credit: credit, ch: make(chan offer, 10000)}
}

func (s *fakeSink) Credit() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.credit
}

func (s *fakeSink) Offer(m *broker.Message, deliveries int, settle broker.Settler) {
	o := offer{m, deliveries, settle}
	s.mu.Lock()
	s.credit--
	s.offers = append(s.offers, o)
	auto := s.auto
	s.mu.Unlock()
	if auto != nil {
		auto(o)
	}
	s.ch <- o
}

// give adds credit and tells the feed.
func (s *fakeSink) give(n int) {
	s.mu.Lock()
	s.credit += n
	f := s.feed
	s.mu.Unlock()
	if f != nil {
		f.More()
	}
}

// next waits for the next offer, up to d; ok false if none came.
func (s *fakeSink) next(d time.Duration) (offer, bool) {
	select {
	case o := <-s.ch:
		return o, true
	case <-time.After(d):
		return offer{}, false
	}
}

func (s *fakeSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.offers)
}

// consume starts a feed of r on queue into s and stops it at the end.
func consume(t *testing.T, r *router, queue string, s *fakeSink) broker.QueueFeed {
	f := r.ConsumeQueue("/", queue, s)
	s.mu.Lock()
	s.feed = f
	s.mu.Unlock()
	t.Cleanup(f.Stop)
	return f
}

func ids(n int, prefix string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%s", prefix, strconv.Itoa(i))
	}
	return out
}

// testutilGauge reads a gauge's value.
func testutilGauge(g interface{ Write(*dto.Metric) error }) float64 {
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		return -1
	}
	return m.GetGauge().GetValue()
}

// noLeaks checks, after every other cleanup of the test, that the
// goroutines it started (connections, routers, feeds) are gone.
// Call it first.
//
// Goroutines a nats-server runs are not counted: a server stopped by an
// earlier test may still start one while it winds down (seen as a flaky
// report), and the servers this test starts stop in its own cleanup,
// which nats-server waits for. What is checked is ours: the router's, the
// feeds', nats.go's.
func noLeaks(t *testing.T) {
	opts := []goleak.Option{goleak.IgnoreCurrent()}
	for _, f := range natsServerLoops {
		opts = append(opts, goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server"+f))
	}
	t.Cleanup(func() { goleak.VerifyNone(t, opts...) })
}

// natsServerLoops are the goroutines of a nats-server (its package path
// left out) that may outlive its Shutdown for a moment: the goroutines it
// starts through startGoRoutine, and those its stores and streams start
// themselves (seen lingering in CI on a loaded machine).
var natsServerLoops = []string{
	".(*Server).startGoRoutine.func1",
	"/ats.Register.func1",
	".(*fileStore).flushStreamStateLoop",
	".(*fileStore).cleanupOldMeta",
	".(*msgBlock).flushLoop",
	".(*consumerFileStore).flushLoop",
	".(*stream).internalLoop",
	".(*stream).signalConsumersLoop",
}
