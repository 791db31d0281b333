package cluster_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/server"
	"github.com/stompbox/stompbox/server/cluster/clustertest"
)

// These benchmarks run whole stompbox nodes and nats-servers in the test
// process, on 127.0.0.1, driven by go-stomp clients over TCP. Starting a
// NATS cluster takes seconds, so each case sets its servers up once,
// outside the timed sub-benchmark (which the testing package calls several
// times with a growing b.N), and tears them down when the case is done.

// benchBody is the payload of every benchmark message: 128 bytes.
var benchBody = []byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" +
	"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")

// benchWait bounds every wait for deliveries inside a timed run: far more
// than a run needs, so a lost message fails the benchmark instead of
// hanging it.
const benchWait = 60 * time.Second

// benchEnv is what one benchmark case started; close stops all of it, in
// order: clients, then stompbox nodes, then NATS.
type benchEnv struct {
	b     *testing.B
	conns []*stomp.Conn
	stops []func()
	nats  *clustertest.NATS
	wg    sync.WaitGroup // the subscribers' reading goroutines
}

// quietLog drops go-stomp's log lines: it reports every subscription a
// benchmark's teardown closes, which would bury the results.
type quietLog struct{}

func (quietLog) Debugf(string, ...any)   {}
func (quietLog) Infof(string, ...any)    {}
func (quietLog) Warningf(string, ...any) {}
func (quietLog) Errorf(string, ...any)   {}
func (quietLog) Debug(string)            {}
func (quietLog) Info(string)             {}
func (quietLog) Warning(string)          {}
func (quietLog) Error(string)            {}

// benchDial connects a go-stomp client to addr without heart-beats or logs.
func benchDial(addr string) (*stomp.Conn, error) {
	return stomp.Dial("tcp", addr, stomp.ConnOpt.HeartBeat(0, 0), stomp.ConnOpt.Logger(quietLog{}))
}

// dial connects a go-stomp client to addr; close disconnects it.
func (e *benchEnv) dial(addr string) *stomp.Conn {
	e.b.Helper()
	c, err := benchDial(addr)
	if err != nil {
		e.b.Fatalf("dial %s: %v", addr, err)
	}
	e.conns = append(e.conns, c)
	return c
}

// close disconnects the clients (which closes their subscriptions'
// channels and so ends the reading goroutines), then stops the nodes and
// NATS. Every step is idempotent with the cleanups startNode and StartNATS
// registered on the parent benchmark.
func (e *benchEnv) close() {
	for _, c := range e.conns {
		_ = c.MustDisconnect()
	}
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		e.b.Error("subscriber goroutines did not end after their connections closed")
	}
	for _, stop := range slices.Backward(e.stops) {
		stop()
	}
	if e.nats != nil {
		e.nats.Shutdown()
	}
}

// startPlainNode starts a single-node stompbox server without a cluster
// link (the baseline), serving STOMP on a 127.0.0.1 port.
func startPlainNode(b *testing.B, e *benchEnv) string {
	b.Helper()
	srv := server.New(server.Config{Broker: broker.Config{}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			b.Errorf("plain node: shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, server.ErrServerClosed) {
			b.Errorf("plain node: Serve returned %v", err)
		}
	}
	b.Cleanup(stop)
	e.stops = append(e.stops, stop)
	return ln.Addr().String()
}

// startBenchNodes starts k stompbox nodes in cluster mode on nats, node i
// given the URLs urls(i), and returns their STOMP addresses.
func startBenchNodes(b *testing.B, e *benchEnv, k int, urls func(i int) []string) []string {
	b.Helper()
	var addrs []string
	for i := range k {
		n := startNode(b, urls(i), "node-"+string(rune('a'+i)), nodeOpts{})
		e.stops = append(e.stops, n.stop)
		addrs = append(addrs, n.addr)
	}
	return addrs
}

// BenchmarkClusterFanout publishes b.N topic messages from one connection
// on the first node to S subscribers (one connection each) spread evenly
// over 1, 2 or 3 nodes, and reports deliveries per second once all S*b.N
// deliveries arrived. nodes=1-nocluster is the same single node without a
// cluster link: the baseline for what the cluster costs. The nodes share
// one nats-server (topics are core NATS; one server leaves the 2 cores to
// stompbox).
func BenchmarkClusterFanout(b *testing.B) {
	const subscribers = 30
	for _, tc := range []struct {
		name    string
		nodes   int
		cluster bool
	}{{"nodes=1-nocluster", 1, false}, {"nodes=1", 1, true}, {"nodes=2", 2, true}, {"nodes=3", 3, true}} {
		e := &benchEnv{b: b}
		var addrs []string
		if tc.cluster {
			e.nats = clustertest.StartNATS(b, 1)
			addrs = startBenchNodes(b, e, tc.nodes, func(int) []string { return e.nats.URLs() })
		} else {
			addrs = []string{startPlainNode(b, e)}
		}
		const topic = "/topic/bench.fanout"
		pub := e.dial(addrs[0])
		counts := e.fanoutSubscribers(pub, addrs, topic, subscribers)
		b.Run(tc.name, func(b *testing.B) { benchFanout(b, pub, topic, counts) })
		e.close()
	}
}

// fanoutSubscribers subscribes n connections to topic, spread evenly over
// the nodes at addrs, waits until probes from pub reach them all, and
// counts what each gets from then on (a goroutine per subscription, owned
// by e).
func (e *benchEnv) fanoutSubscribers(pub *stomp.Conn, addrs []string, topic string, n int) []atomic.Int64 {
	b := e.b
	var subs []*stomp.Subscription
	counts := make([]atomic.Int64, n)
	for i := range n {
		s, err := e.dial(addrs[i%len(addrs)]).Subscribe(topic, stomp.AckAuto)
		if err != nil {
			b.Fatal(err)
		}
		subs = append(subs, s)
	}
	probeTopic(b, pub, topic, subs...)
	for i, s := range subs {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			for m := range s.C {
				if m.Err == nil {
					counts[i].Add(1)
				}
			}
		}()
	}
	return counts
}

// fanoutWindow is how many messages the publisher may be ahead of the
// slowest subscriber: enough to keep every node busy, few enough that no
// subscriber's outbox or NATS's slow-consumer limit is reached (topics are
// at most once across nodes: an overrun would lose messages, not measure
// throughput).
const fanoutWindow = 2000

// benchFanout is one timed run of BenchmarkClusterFanout.
func benchFanout(b *testing.B, pub *stomp.Conn, topic string, counts []atomic.Int64) {
	base := make([]int64, len(counts))
	for i := range counts {
		base[i] = counts[i].Load()
	}
	// slowest is the fewest messages any subscriber got in this run.
	slowest := func() int64 {
		low := int64(-1)
		for i := range counts {
			if n := counts[i].Load() - base[i]; low < 0 || n < low {
				low = n
			}
		}
		return low
	}
	waitUntil := func(want int64) {
		deadline := time.Now().Add(benchWait)
		for slowest() < want {
			if time.Now().After(deadline) {
				b.Fatalf("after %v a subscriber has %d of %d messages", benchWait, slowest(), want)
			}
			time.Sleep(50 * time.Microsecond)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		if i%100 == 0 && i >= fanoutWindow {
			waitUntil(int64(i - fanoutWindow))
		}
		if err := pub.Send(topic, "text/plain", benchBody); err != nil {
			b.Fatal(err)
		}
	}
	waitUntil(int64(b.N))
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)*float64(len(counts))/elapsed.Seconds(), "deliveries/s")
}

// BenchmarkClusterQueue stores persistent queue messages with receipts
// through the first node (8 producer connections, each SEND waiting for
// its RECEIPT, so 8 in flight) and consumes them with client-individual
// acks on the second and third nodes; it reports messages per second from
// the first SEND to the last message consumed. R=1 runs on one
// nats-server, R=3 on a 3-server NATS cluster, where the queue stream gets
// 3 replicas (checked once).
func BenchmarkClusterQueue(b *testing.B) {
	for _, replicas := range []int{1, 3} {
		e := &benchEnv{b: b}
		e.nats = clustertest.StartNATS(b, replicas)
		addrs := startBenchNodes(b, e, 3, func(int) []string { return e.nats.URLs() })
		const producers = 8
		var prods []*stomp.Conn
		for range producers {
			prods = append(prods, e.dial(addrs[0]))
		}
		// The stream is made on the first queue SEND: check its replicas.
		sendReceipted(b, prods[0], "/queue/bench.warmup", "warm-up")
		checkReplicas(b, e.nats.URL(0), replicas)
		round := 0
		b.Run("R="+strconv.Itoa(replicas), func(b *testing.B) {
			round++
			benchQueue(b, e, addrs[1:], prods, "/queue/bench."+strconv.Itoa(round))
		})
		e.close()
	}
}

// checkReplicas fails b unless the queue stream of vhost "/" has want
// replicas.
func checkReplicas(b *testing.B, url string, want int) {
	b.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, "SBTEST_Q_~2f")
	if err != nil {
		b.Fatalf("queue stream: %v", err)
	}
	if got := st.CachedInfo().Config.Replicas; got != want {
		b.Fatalf("queue stream has %d replicas, want %d", got, want)
	}
}

// benchQueue is one timed run of BenchmarkClusterQueue, on a queue of its
// own; its consumers are disconnected when it ends.
func benchQueue(b *testing.B, e *benchEnv, consumerAddrs []string, prods []*stomp.Conn, queue string) {
	var consumed atomic.Int64
	var conns []*stomp.Conn
	var wg sync.WaitGroup
	defer func() {
		for _, c := range conns {
			_ = c.MustDisconnect()
		}
		wg.Wait() // bounded: the channels close with their connections
	}()
	for _, addr := range consumerAddrs {
		c, err := benchDial(addr)
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
		s, err := c.Subscribe(queue, stomp.AckClientIndividual)
		if err != nil {
			b.Fatal(err)
		}
		// One goroutine reads, another acks: go-stomp's connection
		// goroutine both fills the subscription's channel and takes the
		// frames to write, so a goroutine that reads and acks deadlocks
		// with it once the channel is full. toAck holds more than the
		// 1024 unacked the node sends at most.
		toAck := make(chan *stomp.Message, 4096)
		wg.Add(2)
		go func() {
			defer wg.Done()
			defer close(toAck)
			for m := range s.C {
				if m.Err == nil {
					toAck <- m
				}
			}
		}()
		go func() {
			defer wg.Done()
			for m := range toAck {
				if err := c.Ack(m); err != nil {
					b.Error(err)
					return
				}
				consumed.Add(1)
			}
		}()
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var next atomic.Int64
	var pw sync.WaitGroup
	for _, p := range prods {
		pw.Add(1)
		go func() {
			defer pw.Done()
			for next.Add(1) <= int64(b.N) {
				err := p.Send(queue, "text/plain", benchBody, stomp.SendOpt.Receipt,
					stomp.SendOpt.Header("persistent", "true"))
				if err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	pw.Wait()
	stored := time.Since(start)
	deadline := time.Now().Add(benchWait)
	for consumed.Load() < int64(b.N) {
		if time.Now().After(deadline) {
			b.Fatalf("after %v %d of %d messages consumed", benchWait, consumed.Load(), b.N)
		}
		time.Sleep(100 * time.Microsecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(b.N)/stored.Seconds(), "stored/s")
}

// BenchmarkClusterHopLatency sends one topic message at a time, the send
// time in its body, and reports the 50th and 99th percentile of the time
// until the subscriber has it. On a 3-server NATS cluster: node a is
// connected to NATS server 0, node b to server 1, node c to server 0.
// local: publisher and subscriber both on node a; across: subscriber on
// node c (one NATS server between the nodes); across-route: subscriber on
// node b (two NATS servers and their route between the nodes).
func BenchmarkClusterHopLatency(b *testing.B) {
	e := &benchEnv{b: b}
	e.nats = clustertest.StartNATS(b, 3)
	addrs := startBenchNodes(b, e, 3, func(i int) []string { return []string{e.nats.URL(i % 2)} })
	e.hopCases(e.dial(addrs[0]), "/topic/bench.hop.", []hopCase{{"local", addrs[0]}, {"across", addrs[2]}, {"across-route", addrs[1]}})
	e.close()
}

// hopCase is one sub-benchmark of a hop latency benchmark: a subscriber
// on the node at sub.
type hopCase struct{ name, sub string }

// hopCases runs benchHop from pub to a subscriber of topic prefix+name
// for each case.
func (e *benchEnv) hopCases(pub *stomp.Conn, prefix string, cases []hopCase) {
	b := e.b
	for _, tc := range cases {
		topic := prefix + tc.name
		sub, err := e.dial(tc.sub).Subscribe(topic, stomp.AckAuto)
		if err != nil {
			b.Fatal(err)
		}
		probeTopic(b, pub, topic, sub)
		b.Run(tc.name, func(b *testing.B) { benchHop(b, pub, topic, sub) })
	}
}

// reportPercentiles sorts lat and reports its p50 and p99 in µs.
func reportPercentiles(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
}

// benchHop is one timed run of BenchmarkClusterHopLatency.
func benchHop(b *testing.B, pub *stomp.Conn, topic string, sub *stomp.Subscription) {
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		sent := time.Now()
		body := strconv.AppendInt(nil, sent.UnixNano(), 10)
		if err := pub.Send(topic, "text/plain", body); err != nil {
			b.Fatal(err)
		}
		select {
		case m, ok := <-sub.C:
			if !ok || m.Err != nil {
				b.Fatalf("subscription ended: %v", m)
			}
			got, err := strconv.ParseInt(string(m.Body), 10, 64)
			if err != nil || got != sent.UnixNano() {
				b.Fatalf("got %q, want the message sent at %d", m.Body, sent.UnixNano())
			}
			lat = append(lat, time.Since(sent))
		case <-time.After(10 * time.Second):
			b.Fatal("no message within 10s")
		}
	}
	b.StopTimer()
	reportPercentiles(b, lat)
}
