package cluster_test

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/server"
	"github.com/stompbox/stompbox/server/cluster"
)

// node is one stompbox node of a test cluster: a server with its cluster
// link, serving STOMP on a 127.0.0.1 port.
type node struct {
	t     testing.TB
	srv   *server.Server
	link  *cluster.Node
	addr  string
	admin *httptest.Server
	done  chan error
	stop  func()
	// crashed: the node's NATS connection was cut; closing it is then
	// expected to fail.
	crashed bool
}

type nodeOpts struct {
	broker      broker.Config
	ackWait     time.Duration
	presenceTTL time.Duration // cluster.Config.PresenceTTL (presence_test.go)
	// unlimitedConns lifts the per-address connection limits (benchmarks
	// that connect thousands of times from 127.0.0.1).
	unlimitedConns bool
}

// startNode starts a stompbox node named name joined to the NATS servers
// at urls; the test's cleanup stops it (unless the test did).
func startNode(t testing.TB, urls []string, name string, o nodeOpts) *node {
	t.Helper()
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	link, err := cluster.New(ctx, cluster.Config{URLs: urls, Name: "sbtest", NodeName: name,
		AckWait: o.ackWait, PublishTimeout: 3 * time.Second, Registerer: reg,
		MaxQueueMessages: 100000, PresenceTTL: o.presenceTTL})
	if err != nil {
		t.Fatalf("cluster.New: %v", err)
	}
	sc := server.Config{Broker: o.broker, Cluster: link, Registry: reg}
	if o.unlimitedConns {
		sc.MaxConnectionsPerIP, sc.ConnectionRatePerIP = -1, -1
	}
	srv := server.New(sc)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &node{t: t, srv: srv, link: link, addr: ln.Addr().String(), done: make(chan error, 1)}
	go func() { n.done <- srv.Serve(ln) }()
	n.admin = httptest.NewServer(srv.AdminHandler())
	stopped := false
	n.stop = func() {
		if stopped {
			return
		}
		stopped = true
		n.admin.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("%s: shutdown: %v", name, err)
		}
		if err := <-n.done; !errors.Is(err, server.ErrServerClosed) {
			t.Errorf("%s: Serve returned %v", name, err)
		}
		if err := link.Close(ctx); err != nil && !n.crashed {
			t.Errorf("%s: cluster close: %v", name, err)
		}
	}
	t.Cleanup(n.stop)
	waitFor(t, 15*time.Second, name+" ready", func() bool { return n.ready() })
	return n
}

// ready reports whether the node's /readyz passes.
func (n *node) ready() bool {
	resp, err := http.Get(n.admin.URL + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// dial connects a go-stomp client to the node.
func (n *node) dial(t testing.TB) *stomp.Conn {
	t.Helper()
	c, err := stomp.Dial("tcp", n.addr, stomp.ConnOpt.HeartBeat(0, 0))
	if err != nil {
		t.Fatalf("dial %s: %v", n.addr, err)
	}
	t.Cleanup(func() { _ = c.MustDisconnect() })
	return c
}

// waitFor polls cond every 20ms until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// recv takes the next message of sub within timeout.
func recv(t testing.TB, sub *stomp.Subscription, timeout time.Duration) *stomp.Message {
	t.Helper()
	select {
	case m, ok := <-sub.C:
		if !ok || m.Err != nil {
			t.Fatalf("subscription %s ended: %v", sub.Destination(), m)
		}
		return m
	case <-time.After(timeout):
		t.Fatalf("no message on %s within %v", sub.Destination(), timeout)
	}
	return nil
}

// none asserts sub gets nothing for d.
func none(t testing.TB, sub *stomp.Subscription, d time.Duration) {
	t.Helper()
	select {
	case m := <-sub.C:
		t.Fatalf("unexpected message on %s: %q", sub.Destination(), m.Body)
	case <-time.After(d):
	}
}

// sendReceipted sends body to dest with a RECEIPT (and persistent:true).
func sendReceipted(t testing.TB, c *stomp.Conn, dest, body string, opts ...func(*frame.Frame) error) {
	t.Helper()
	opts = append(opts, stomp.SendOpt.Receipt, stomp.SendOpt.Header("persistent", "true"))
	if err := c.Send(dest, "text/plain", []byte(body), opts...); err != nil {
		t.Fatalf("send %s: %v", dest, err)
	}
}

// probeTopic publishes probes on pub to topic until sub has one, so that
// the subscription's interest has propagated through NATS.
func probeTopic(t testing.TB, pub *stomp.Conn, topic string, subs ...*stomp.Subscription) {
	t.Helper()
	for _, sub := range subs {
		deadline := time.Now().Add(10 * time.Second)
		for got := false; !got; {
			if time.Now().After(deadline) {
				t.Fatalf("probes on %s never reached %s", topic, sub.Destination())
			}
			if err := pub.Send(topic, "text/plain", []byte("probe"), stomp.SendOpt.Receipt); err != nil {
				t.Fatal(err)
			}
			select {
			case <-sub.C:
				got = true
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	// drain probes still on their way
	for _, sub := range subs {
		for drained := false; !drained; {
			select {
			case m := <-sub.C:
				if string(m.Body) != "probe" {
					t.Fatalf("got %q while draining probes", m.Body)
				}
			case <-time.After(300 * time.Millisecond):
				drained = true
			}
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// rawExchange opens a plain TCP connection to the node, sends CONNECT and
// then frame, and returns the headers of the first frame after CONNECTED
// (command under the key ""), read within 10s.
func rawExchange(t testing.TB, addr, frame string) map[string]string {
	t.Helper()
	return rawExchangeAs(t, addr, "", frame)
}

// rawExchangeAs is rawExchange with more CONNECT headers (each line ending
// in a newline).
func rawExchangeAs(t testing.TB, addr, connectHeaders, frame string) map[string]string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("CONNECT\naccept-version:1.2\nhost:/\n" + connectHeaders + "\n\x00" + frame + "\x00")); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	for range 2 {
		raw, err := r.ReadString(0)
		if err != nil {
			t.Fatalf("reading the answer: %v", err)
		}
		head, _, _ := strings.Cut(strings.TrimLeft(raw, "\n"), "\n\n")
		lines := strings.Split(head, "\n")
		if lines[0] == "CONNECTED" {
			continue
		}
		hs := map[string]string{"": lines[0]}
		for _, l := range lines[1:] {
			k, v, _ := strings.Cut(l, ":")
			if _, seen := hs[k]; !seen {
				hs[k] = v
			}
		}
		return hs
	}
	t.Fatal("no frame after CONNECTED")
	return nil
}

// crash cuts the node off NATS as a dying process would, then stops it.
func (n *node) crash() {
	n.crashed = true
	n.link.CutNATS()
	n.stop()
}
