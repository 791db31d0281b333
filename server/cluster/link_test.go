package cluster

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/stompbox/stompbox/server/cluster/clustertest"
)

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitReady polls l.ready until it returns nil.
func waitReady(t *testing.T, l *link, d time.Duration) {
	t.Helper()
	var err error
	waitFor(t, d, "link ready", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		err = l.ready(ctx)
		return err == nil
	})
}

func mustOpen(t *testing.T, cfg Config) *link {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := openLink(ctx, cfg)
	if err != nil {
		t.Fatalf("openLink: %v", err)
	}
	return l
}

func closeLink(t *testing.T, l *link) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
}

// freePort reserves a port on 127.0.0.1 by listening on port 0 and
// closing: good enough for a test that needs the number before a server
// binds it.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// logBuffer is a goroutine-safe slog sink.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestConfigWithDefaults(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Skip("no host name on this machine:", err)
	}
	got := Config{}.withDefaults()
	if got.Name != "stompbox" || got.NodeName != host || got.AckWait != 30*time.Second ||
		got.PublishTimeout != 5*time.Second || got.Logger == nil {
		t.Fatalf("defaults: %+v", got)
	}
	set := Config{Name: "c", NodeName: "n", AckWait: time.Second, PublishTimeout: 2 * time.Second}.withDefaults()
	if set.Name != "c" || set.NodeName != "n" || set.AckWait != time.Second || set.PublishTimeout != 2*time.Second {
		t.Fatalf("set values overridden: %+v", set)
	}
}

func TestSplitListen(t *testing.T) {
	for _, tc := range []struct {
		in   string
		host string
		port int
		bad  bool
	}{
		{"127.0.0.1:0", "127.0.0.1", server.RANDOM_PORT, false},
		{"127.0.0.1:-1", "127.0.0.1", server.RANDOM_PORT, false},
		{"0.0.0.0:4222", "0.0.0.0", 4222, false},
		{"[::1]:6222", "::1", 6222, false},
		{"localhost", "", 0, true},
		{"127.0.0.1:x", "", 0, true},
		{"127.0.0.1:70000", "", 0, true},
		{"127.0.0.1:-2", "", 0, true},
	} {
		host, port, err := splitListen(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("%q: no error", tc.in)
			}
			continue
		}
		if err != nil || host != tc.host || port != tc.port {
			t.Errorf("%q: %q %d %v, want %q %d", tc.in, host, port, err, tc.host, tc.port)
		}
	}
}

func TestEmbeddedOptionsErrors(t *testing.T) {
	for name, e := range map[string]EmbeddedConfig{
		"cluster without routes": {Listen: "127.0.0.1:0", ClusterListen: "127.0.0.1:0"},
		"routes without cluster": {Listen: "127.0.0.1:0", Routes: []string{"nats-route://127.0.0.1:6222"}},
		"bad listen":             {Listen: "nowhere"},
		"bad cluster listen":     {Listen: "127.0.0.1:0", ClusterListen: "x", Routes: []string{"nats-route://127.0.0.1:6222"}},
		"bad route":              {Listen: "127.0.0.1:0", ClusterListen: "127.0.0.1:0", Routes: []string{"::"}},
	} {
		if _, err := embeddedOptions(Config{Embedded: &e}.withDefaults()); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestOpenLinkEmbeddedSingle(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	logs := &logBuffer{}
	l := mustOpen(t, Config{
		NodeName: "solo",
		Embedded: &EmbeddedConfig{Listen: "127.0.0.1:0", StoreDir: t.TempDir()},
		Logger:   slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	if l.srv == nil {
		t.Fatal("no embedded server")
	}
	port := l.srv.Addr().(*net.TCPAddr).Port
	if port == 0 || port == 4222 {
		t.Fatalf("127.0.0.1:0 must give a random port, got %d", port)
	}
	if !l.connected() {
		t.Fatal("in-process link not connected")
	}
	waitReady(t, l, 10*time.Second)
	if !strings.Contains(logs.String(), "Server is ready") || !strings.Contains(logs.String(), "component=nats-server") {
		t.Fatalf("nats-server logs not bridged into slog:\n%s", logs)
	}

	// The server also listens for other clients on its port.
	other, err := nats.Connect("nats://127.0.0.1:" + strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	sub, err := other.SubscribeSync("hello")
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := l.nc.Publish("hello", []byte("from the node")); err != nil {
		t.Fatal(err)
	}
	msg, err := sub.NextMsg(5 * time.Second)
	if err != nil || string(msg.Data) != "from the node" {
		t.Fatalf("message from the in-process link: %v %v", msg, err)
	}
	other.Close()
	closeLink(t, l)
	if l.srv.Running() {
		t.Fatal("embedded server still running after close")
	}
}

func TestOpenLinkEmbeddedTwoNodes(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	pa, pb := freePort(t), freePort(t)
	routes := []string{
		"nats-route://127.0.0.1:" + strconv.Itoa(pa),
		"nats-route://127.0.0.1:" + strconv.Itoa(pb),
	}
	a := mustOpen(t, Config{Name: "two", NodeName: "a", Embedded: &EmbeddedConfig{
		Listen: "127.0.0.1:-1", ClusterListen: "127.0.0.1:" + strconv.Itoa(pa), Routes: routes, StoreDir: t.TempDir(),
	}})
	b := mustOpen(t, Config{Name: "two", NodeName: "b", Embedded: &EmbeddedConfig{
		Listen: "127.0.0.1:-1", ClusterListen: "127.0.0.1:" + strconv.Itoa(pb), Routes: routes, StoreDir: t.TempDir(),
	}})
	waitFor(t, 10*time.Second, "routes between the embedded servers", func() bool {
		return a.srv.NumRemotes() == 1 && b.srv.NumRemotes() == 1
	})
	if !a.srv.JetStreamIsClustered() {
		t.Fatal("embedded servers with routes must run clustered JetStream")
	}
	// Two JetStream servers elect a meta leader once both are up.
	waitReady(t, a, 20*time.Second)
	waitReady(t, b, 20*time.Second)

	sub, err := a.nc.SubscribeSync("across")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// Interest reaches b over the route asynchronously: republish, bounded.
	var msg *nats.Msg
	for range 50 {
		if err := b.nc.Publish("across", []byte("b to a")); err != nil {
			t.Fatal(err)
		}
		if msg, err = sub.NextMsg(100 * time.Millisecond); err == nil {
			break
		}
	}
	if msg == nil || string(msg.Data) != "b to a" {
		t.Fatalf("message between embedded nodes: %v %v", msg, err)
	}
	closeLink(t, a)
	closeLink(t, b)
}

func TestOpenLinkExternalNoEcho(t *testing.T) {
	n := clustertest.StartNATS(t, 1)
	l := mustOpen(t, Config{URLs: n.URLs(), NodeName: "ext"})
	defer closeLink(t, l)
	if l.srv != nil {
		t.Fatal("no embedded server was asked for")
	}
	waitReady(t, l, 10*time.Second)

	sub, err := l.nc.SubscribeSync("echo")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.nc.Publish("echo", []byte("own")); err != nil {
		t.Fatal(err)
	}
	if err := l.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	other, err := nats.Connect(n.URL(0))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.Publish("echo", []byte("other")); err != nil {
		t.Fatal(err)
	}
	// The other client's message arrives, the node's own never does: NATS
	// keeps order per connection, so "other" coming first proves nothing,
	// but no "own" before or after it within the wait does.
	msg, err := sub.NextMsg(5 * time.Second)
	if err != nil || string(msg.Data) != "other" {
		t.Fatalf("first message: %v %v, want the other client's", msg, err)
	}
	if msg, err := sub.NextMsg(200 * time.Millisecond); err == nil {
		t.Fatalf("node received its own publish back: %q", msg.Data)
	}
}

func TestOpenLinkWhileNATSDown(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	port := freePort(t)
	url := "nats://127.0.0.1:" + strconv.Itoa(port)
	l := mustOpen(t, Config{URLs: []string{url}, NodeName: "early"})
	if l.connected() {
		t.Fatal("connected with no NATS up")
	}
	err := l.ready(context.Background())
	if err == nil || !strings.Contains(err.Error(), "not connected to NATS") || !strings.Contains(err.Error(), url) {
		t.Fatalf("ready with NATS down: %v", err)
	}
	t.Log(err)
	// No buffering while down: the publish fails at once.
	start := time.Now()
	if err := l.nc.Publish("x", []byte("lost")); err == nil {
		t.Fatal("publish while disconnected succeeded")
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("publish while disconnected took %s", d)
	}

	// NATS comes up on the address the node was given.
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	if !srv.ReadyForConnections(5 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	waitFor(t, 10*time.Second, "link connects by itself", l.connected)
	waitReady(t, l, 10*time.Second)
	if err := l.nc.Publish("x", []byte("kept")); err != nil {
		t.Fatalf("publish once connected: %v", err)
	}
	closeLink(t, l)
}

func TestLinkReadyWithoutJetStream(t *testing.T) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	if !srv.ReadyForConnections(5 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	l := mustOpen(t, Config{URLs: []string{srv.ClientURL()}, NodeName: "nojs"})
	defer closeLink(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = l.ready(ctx)
	if err == nil || !strings.Contains(err.Error(), "JetStream") {
		t.Fatalf("ready without JetStream: %v", err)
	}
	t.Log(err)
	// The answer is cached: the same error, without asking again.
	l.mu.Lock()
	at := l.readyAt
	l.mu.Unlock()
	if err2 := l.ready(ctx); err2 == nil || err2.Error() != err.Error() {
		t.Fatalf("second ready: %v", err2)
	}
	l.mu.Lock()
	again := l.readyAt
	l.mu.Unlock()
	if !again.Equal(at) {
		t.Fatal("ready asked JetStream again within the cache time")
	}
}

func TestOpenLinkBadFiles(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.pem")
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	url := []string{"nats://127.0.0.1:1"}
	for name, tc := range map[string]struct {
		cfg  Config
		want string
	}{
		"creds missing":   {Config{URLs: url, CredsFile: missing}, "cluster.nats_creds_file"},
		"ca missing":      {Config{URLs: url, TLSCA: missing}, "cluster.nats_tls_ca"},
		"ca garbage":      {Config{URLs: url, TLSCA: garbage}, "root certificate"},
		"cert missing":    {Config{URLs: url, TLSCert: missing, TLSKey: missing}, "cluster.nats_tls_cert"},
		"cert unreadable": {Config{URLs: url, TLSCert: garbage, TLSKey: garbage}, "cluster.nats_tls_cert"},
		"cert alone":      {Config{URLs: url, TLSCert: garbage}, "set both or neither"},
		"key alone":       {Config{URLs: url, TLSKey: garbage}, "set both or neither"},
		"no url":          {Config{}, "no NATS URL"},
	} {
		l, err := openLink(context.Background(), tc.cfg)
		if err == nil {
			l.close(context.Background())
			t.Errorf("%s: no error", name)
			continue
		}
		t.Logf("%s: %v", name, err)
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want it to mention %q", name, err, tc.want)
		}
		if strings.Contains(name, "missing") && !strings.Contains(err.Error(), missing) {
			t.Errorf("%s: %v does not name the file", name, err)
		}
	}
}

func TestOpenLinkEmbeddedPortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = openLink(context.Background(), Config{Embedded: &EmbeddedConfig{
		Listen: ln.Addr().String(), StoreDir: t.TempDir(),
	}})
	if err == nil || !strings.Contains(err.Error(), "embedded nats-server") {
		t.Fatalf("embedded server on a taken port: %v", err)
	}
	t.Log(err)
}

func TestLinkCloseCutShort(t *testing.T) {
	n := clustertest.StartNATS(t, 1)
	l := mustOpen(t, Config{URLs: n.URLs(), NodeName: "slow"})
	// A subscription whose handler is stuck keeps the drain from finishing.
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	if _, err := l.nc.Subscribe("stuck", func(*nats.Msg) {
		entered <- struct{}{}
		<-release
	}); err != nil {
		t.Fatal(err)
	}
	other, err := nats.Connect(n.URL(0))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := l.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := other.Publish("stuck", nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("handler never ran")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = l.close(ctx)
	close(release)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("close with a stuck drain: %v, want the deadline", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("close took %s past its deadline", d)
	}
	if !l.nc.IsClosed() {
		t.Fatal("connection not closed after a cut-short drain")
	}
}

func TestLinkReadyWithoutJetStreamQuorum(t *testing.T) {
	n := clustertest.StartNATS(t, 3)
	l := mustOpen(t, Config{URLs: []string{n.URL(0)}, NodeName: "quorum"})
	defer closeLink(t, l)
	waitReady(t, l, 10*time.Second)
	// Two of three servers gone: the survivor has no JetStream leader and
	// cannot elect one. The link stays connected, ready says what is wrong.
	n.Kill(1)
	n.Kill(2)
	var err error
	waitFor(t, 30*time.Second, "ready fails without a JetStream quorum", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err = l.ready(ctx)
		return err != nil
	})
	t.Log(err)
	if !l.connected() || !strings.Contains(err.Error(), "connected to NATS but JetStream") {
		t.Fatalf("ready without quorum: %v (connected %v)", err, l.connected())
	}
}
