// Package clustertest runs nats-servers with JetStream inside a test
// process: one server, or a cluster of n routed together on 127.0.0.1,
// that a test can kill and restart server by server. Tests of any package
// use it to exercise stompbox's cluster mode without an external NATS.
package clustertest

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Bounds of the waits. A local server is up in milliseconds and a local
// cluster elects a JetStream leader in a second or two; the bounds leave
// room for a loaded machine, and a test fails instead of hanging.
const (
	readyTimeout   = 10 * time.Second
	clusterTimeout = 30 * time.Second
	pollEvery      = 20 * time.Millisecond
)

// clusterName is the NATS cluster name of every harness cluster.
const clusterName = "clustertest"

// NATS is a set of in-process nats-servers with JetStream. Its methods
// fail the test (t.Fatalf) on error, so they must be called from the test's
// goroutine.
type NATS struct {
	t testing.TB

	mu      sync.Mutex
	servers []*server.Server // nil while killed
	opts    []*server.Options
	shut    bool
}

// StartNATS starts n nats-servers with JetStream, each storing under
// t.TempDir(). With n > 1 they form one NATS cluster on 127.0.0.1 and
// StartNATS returns once every server is routed to every other and
// JetStream has a leader. With n == 1 it is a single server without a
// cluster. Shutdown runs at the test's cleanup.
func StartNATS(t testing.TB, n int) *NATS {
	t.Helper()
	if n < 1 {
		t.Fatalf("clustertest: StartNATS(%d): need at least one server", n)
	}
	root := t.TempDir()
	var routes []string
	var clusterPorts []int
	if n > 1 {
		// nats-server refuses JetStream in a cluster without configured
		// routes, the first server included, so every server gets the full
		// list (its own address too: nats-server ignores a route to itself).
		// That needs every route port before any server starts: reserved by
		// listening on port 0 and closing. Restart reuses the same ports.
		clusterPorts = freePorts(t, n)
		for _, p := range clusterPorts {
			routes = append(routes, "nats-route://127.0.0.1:"+strconv.Itoa(p))
		}
	}
	c := &NATS{t: t, servers: make([]*server.Server, n), opts: make([]*server.Options, n)}
	t.Cleanup(c.Shutdown)
	for i := range n {
		o := &server.Options{
			ServerName:             fmt.Sprintf("n%d", i),
			Host:                   "127.0.0.1",
			Port:                   server.RANDOM_PORT,
			JetStream:              true,
			StoreDir:               filepath.Join(root, fmt.Sprintf("n%d", i)),
			NoSigs:                 true,
			NoLog:                  true,
			DisableJetStreamBanner: true,
		}
		if n > 1 {
			o.Cluster = server.ClusterOpts{Name: clusterName, Host: "127.0.0.1", Port: clusterPorts[i]}
			o.Routes = server.RoutesFromStr(strings.Join(routes, ","))
		}
		srv := c.start(i, o)
		// Restart listens on the same client port.
		o.Port = srv.Addr().(*net.TCPAddr).Port
		c.mu.Lock()
		c.servers[i], c.opts[i] = srv, o
		c.mu.Unlock()
	}
	c.waitCluster()
	return c
}

// start starts one server and waits until it accepts clients.
func (c *NATS) start(i int, o *server.Options) *server.Server {
	c.t.Helper()
	// NewServer keeps the options; each start gets its own copy.
	srv, err := server.NewServer(o.Clone())
	if err != nil {
		c.t.Fatalf("clustertest: server %d: %v", i, err)
	}
	srv.Start()
	if !srv.ReadyForConnections(readyTimeout) {
		srv.Shutdown()
		c.t.Fatalf("clustertest: server %d not ready for connections within %s (port taken?)", i, readyTimeout)
	}
	return srv
}

// waitCluster waits until every live server is routed to every other live
// one and, in a cluster, JetStream has a meta leader that every live
// server follows.
func (c *NATS) waitCluster() {
	c.t.Helper()
	c.mu.Lock()
	var live []*server.Server
	for _, s := range c.servers {
		if s != nil {
			live = append(live, s)
		}
	}
	clustered := len(c.servers) > 1
	c.mu.Unlock()
	deadline := time.Now().Add(clusterTimeout)
	for {
		problem := clusterProblem(live, clustered)
		if problem == "" {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("clustertest: cluster not formed within %s: %s", clusterTimeout, problem)
		}
		time.Sleep(pollEvery)
	}
}

// clusterProblem says what is not yet right with the live servers, "" when
// nothing is.
func clusterProblem(live []*server.Server, clustered bool) string {
	if !clustered {
		for _, s := range live {
			if !s.JetStreamEnabled() {
				return s.Name() + ": JetStream not enabled yet"
			}
		}
		return ""
	}
	leaders := 0
	for _, s := range live {
		if got := s.NumRemotes(); got != len(live)-1 {
			return fmt.Sprintf("%s routes to %d servers, want %d", s.Name(), got, len(live)-1)
		}
		if !s.JetStreamIsClustered() {
			return s.Name() + ": JetStream not clustered yet"
		}
		if s.JetStreamIsLeader() {
			leaders++
		}
	}
	if leaders != 1 {
		return fmt.Sprintf("%d JetStream meta leaders among the live servers, want 1", leaders)
	}
	for _, s := range live {
		if !s.JetStreamIsCurrent() {
			return s.Name() + ": JetStream meta group not current yet"
		}
	}
	return ""
}

// URLs returns the client URLs of the live servers.
func (c *NATS) URLs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var urls []string
	for i, s := range c.servers {
		if s != nil {
			urls = append(urls, c.url(i))
		}
	}
	return urls
}

// URL returns server i's client URL, also while it is killed (it comes
// back on the same port).
func (c *NATS) URL(i int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.url(i)
}

func (c *NATS) url(i int) string {
	return "nats://127.0.0.1:" + strconv.Itoa(c.opts[i].Port)
}

// Server returns server i, nil while it is killed.
func (c *NATS) Server(i int) *server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.servers[i]
}

// Kill shuts server i down, as a crash would look to its peers and
// clients; its store directory stays for Restart.
func (c *NATS) Kill(i int) {
	c.t.Helper()
	c.mu.Lock()
	s := c.servers[i]
	c.servers[i] = nil
	c.mu.Unlock()
	if s == nil {
		c.t.Fatalf("clustertest: Kill(%d): server is not running", i)
	}
	s.Shutdown()
	s.WaitForShutdown()
}

// Restart starts killed server i again with the same client port, route
// port and store directory, and waits until it is back in the cluster.
func (c *NATS) Restart(i int) {
	c.t.Helper()
	c.mu.Lock()
	if c.servers[i] != nil {
		c.mu.Unlock()
		c.t.Fatalf("clustertest: Restart(%d): server is running", i)
	}
	o := c.opts[i]
	c.mu.Unlock()
	srv := c.start(i, o)
	c.mu.Lock()
	c.servers[i] = srv
	c.mu.Unlock()
	c.waitCluster()
}

// Shutdown stops every live server and waits for them. It is safe to call
// more than once; StartNATS registers it with t.Cleanup.
func (c *NATS) Shutdown() {
	c.mu.Lock()
	if c.shut {
		c.mu.Unlock()
		return
	}
	c.shut = true
	servers := c.servers
	c.servers = make([]*server.Server, len(servers))
	c.mu.Unlock()
	for _, s := range servers {
		if s != nil {
			s.Shutdown()
		}
	}
	for _, s := range servers {
		if s != nil {
			s.WaitForShutdown()
		}
	}
}

// freePorts reserves n distinct free TCP ports on 127.0.0.1 by listening
// on port 0 and closing. Another process could take one before nats-server
// binds it; start then fails the test with a clear message.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, 0, n)
	var lns []net.Listener
	// All listeners stay open until every port is known, so the kernel
	// hands out n different ports.
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("clustertest: reserve a port: %v", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}
