package cluster_test

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/server/cluster/clustertest"
)

// benchHistory is the history rule of the history benchmarks.
var benchHistory = broker.Config{TopicHistory: []broker.HistoryRule{{Pattern: "/topic/bench.hist.#", Size: 1000}}}

// startHistoryNodes starts k nodes with benchHistory on one nats-server.
func startHistoryNodes(b *testing.B, e *benchEnv, k int) []string {
	b.Helper()
	e.nats = clustertest.StartNATS(b, 1)
	var addrs []string
	for i := range k {
		n := startNode(b, e.nats.URLs(), "node-"+string(rune('a'+i)), nodeOpts{broker: benchHistory, unlimitedConns: true})
		waitFor(b, 15*time.Second, "node ready", n.ready)
		e.stops = append(e.stops, n.stop)
		addrs = append(addrs, n.addr)
	}
	return addrs
}

// BenchmarkClusterHistoryFanout is BenchmarkClusterFanout for a topic
// with history on 3 nodes: every SEND is stored in the rule's JetStream
// stream (R1) and every node's mirror delivers it to its 10 subscribers.
func BenchmarkClusterHistoryFanout(b *testing.B) {
	const subscribers = 30
	e := &benchEnv{b: b}
	addrs := startHistoryNodes(b, e, 3)
	const topic = "/topic/bench.hist.fanout"
	pub := e.dial(addrs[0])
	counts := e.fanoutSubscribers(pub, addrs, topic, subscribers)
	b.Run("nodes=3", func(b *testing.B) { benchFanout(b, pub, topic, counts) })
	e.close()
}

// BenchmarkClusterHistoryLatency is BenchmarkClusterHopLatency for a topic
// with history: from SEND to MESSAGE through JetStream and the mirror, on
// the publisher's node (local) and on another node (across).
func BenchmarkClusterHistoryLatency(b *testing.B) {
	e := &benchEnv{b: b}
	addrs := startHistoryNodes(b, e, 2)
	e.hopCases(e.dial(addrs[0]), "/topic/bench.hist.hop.", []hopCase{{"local", addrs[0]}, {"across", addrs[1]}})
	e.close()
}

// benchConn is a raw STOMP connection for the resume benchmark.
type benchConn struct {
	c net.Conn
	r *bufio.Reader
}

func benchRaw(b *testing.B, addr string) *benchConn {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(benchWait))
	return &benchConn{c: c, r: bufio.NewReader(c)}
}

// exchange writes frame and returns the command and headers of the next
// frame the server sends.
func (bc *benchConn) exchange(b *testing.B, frame string) (string, map[string]string) {
	if _, err := bc.c.Write([]byte(frame + "\x00")); err != nil {
		b.Fatal(err)
	}
	raw, err := bc.r.ReadString(0)
	if err != nil {
		b.Fatal(err)
	}
	head, _, _ := strings.Cut(strings.TrimLeft(raw, "\n"), "\n\n")
	lines := strings.Split(head, "\n")
	hs := map[string]string{}
	for _, l := range lines[1:] {
		k, v, _ := strings.Cut(l, ":")
		if _, seen := hs[k]; !seen {
			hs[k] = v
		}
	}
	return lines[0], hs
}

// BenchmarkClusterResume measures a session resume, from the CONNECT
// presenting the token to its CONNECTED (resumed:true): on the node that
// parked the session (same-node) and on another node, which fetches it
// over NATS (other-node). Each op parks a fresh session with 3
// subscriptions first (outside the measured time).
func BenchmarkClusterResume(b *testing.B) {
	e := &benchEnv{b: b}
	addrs := startHistoryNodes(b, e, 2)
	for _, tc := range []struct {
		name string
		to   string
	}{{"same-node", addrs[0]}, {"other-node", addrs[1]}} {
		b.Run(tc.name, func(b *testing.B) {
			lat := make([]time.Duration, 0, b.N)
			b.ReportAllocs()
			for range b.N {
				old := benchRaw(b, addrs[0])
				cmd, hs := old.exchange(b, "CONNECT\naccept-version:1.2\nhost:/\n\n")
				tok := hs["resume-token"]
				if cmd != "CONNECTED" || tok == "" {
					b.Fatalf("CONNECT: %s %v", cmd, hs)
				}
				for _, d := range []string{"/topic/bench.a", "/topic/bench.b", "/topic/bench.hist.c"} {
					if cmd, _ := old.exchange(b, "SUBSCRIBE\nid:"+d+"\ndestination:"+d+"\nreceipt:r\n\n"); cmd != "RECEIPT" {
						b.Fatalf("SUBSCRIBE: %s", cmd)
					}
				}
				_ = old.c.Close()
				nc := benchRaw(b, tc.to)
				start := time.Now()
				// The old node notices the drop at once (a closed socket), but
				// a resume racing it takes the session over: either way it is
				// resumed.
				cmd, hs = nc.exchange(b, "CONNECT\naccept-version:1.2\nhost:/\nresume-token:"+tok+"\n\n")
				lat = append(lat, time.Since(start))
				if cmd != "CONNECTED" || hs["resumed"] != "true" {
					b.Fatalf("resume on %s: %s %v", tc.name, cmd, hs)
				}
				_, _ = nc.c.Write([]byte("DISCONNECT\n\n\x00"))
				_ = nc.c.Close()
			}
			b.StopTimer()
			reportPercentiles(b, lat)
		})
	}
	e.close()
}
