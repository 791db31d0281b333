package clustertest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func connect(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func TestStartNATSSingle(t *testing.T) {
	n := StartNATS(t, 1)
	if got := len(n.URLs()); got != 1 {
		t.Fatalf("URLs: %d, want 1", got)
	}
	if n.Server(0).JetStreamIsClustered() {
		t.Fatal("one server must not be a JetStream cluster")
	}
	nc, err := nats.Connect(n.URL(0))
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := js.AccountInfo(ctx); err != nil {
		t.Fatalf("JetStream on a single server: %v", err)
	}
	nc.Close()
	n.Shutdown()
	n.Shutdown() // idempotent
}

func TestStartNATSCluster(t *testing.T) {
	n := StartNATS(t, 3)
	urls := n.URLs()
	if len(urls) != 3 {
		t.Fatalf("URLs: %v, want 3", urls)
	}
	for i, u := range urls {
		if u != n.URL(i) {
			t.Fatalf("URLs()[%d] = %s, URL(%d) = %s", i, u, i, n.URL(i))
		}
	}

	// Core NATS across the cluster: publish on server 0, receive on 2.
	sub := connect(t, n.URL(2))
	s, err := sub.SubscribeSync("clustertest.hello")
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Flush(); err != nil {
		t.Fatal(err)
	}
	pub := connect(t, n.URL(0))
	// Interest travels over the routes asynchronously; republish until it
	// arrives (bounded).
	var msg *nats.Msg
	for range 50 {
		if err := pub.Publish("clustertest.hello", []byte("hi")); err != nil {
			t.Fatal(err)
		}
		if msg, err = s.NextMsg(100 * time.Millisecond); err == nil {
			break
		}
	}
	if msg == nil || string(msg.Data) != "hi" {
		t.Fatalf("message across the cluster: %v, %v", msg, err)
	}

	// An R3 stream keeps quorum with one server down.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js, err := jetstream.New(pub)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "R3", Subjects: []string{"r3.>"}, Replicas: 3, Storage: jetstream.FileStorage,
	}); err != nil {
		t.Fatalf("create R3 stream: %v", err)
	}
	if _, err := js.Publish(ctx, "r3.a", []byte("1")); err != nil {
		t.Fatalf("publish with 3 servers: %v", err)
	}
	n.Kill(1)
	if n.Server(1) != nil {
		t.Fatal("Server(1) after Kill must be nil")
	}
	if got := n.URLs(); len(got) != 2 {
		t.Fatalf("URLs after Kill: %v", got)
	}
	// The stream may have had its leader on server 1: a new one is elected
	// within seconds; publish until one answers (bounded by ctx).
	var acked *jetstream.PubAck
	for ctx.Err() == nil {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		acked, err = js.Publish(pctx, "r3.a", []byte("2"))
		pcancel()
		if err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("publish to R3 with a server down: %v", err)
	}
	if acked.Sequence != 2 {
		t.Fatalf("second message stored at sequence %d, want 2", acked.Sequence)
	}

	n.Restart(1)
	if got := n.Server(1); got == nil || got.NumRemotes() != 2 {
		t.Fatal("server 1 did not rejoin with routes to both peers")
	}
	// The restarted server is a current replica of R3 again, asked
	// through a client connected to it.
	rc := connect(t, n.URL(1))
	rjs, err := jetstream.New(rc)
	if err != nil {
		t.Fatal(err)
	}
	state := "no answer"
	for ctx.Err() == nil {
		if state = replicaState(ctx, rjs, "n1"); state == "current" {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if state != "current" {
		t.Fatalf("n1 as R3 replica after restart: %s", state)
	}
	info, err := rjs.Stream(ctx, "R3")
	if err != nil {
		t.Fatal(err)
	}
	if got := info.CachedInfo().State.Msgs; got != 2 {
		t.Fatalf("R3 holds %d messages, want 2", got)
	}
}

// replicaState says how server name stands in stream's replica group.
func replicaState(ctx context.Context, js jetstream.JetStream, name string) string {
	s, err := js.Stream(ctx, "R3")
	if err != nil {
		return err.Error()
	}
	ci := s.CachedInfo().Cluster
	if ci == nil {
		return "no cluster info"
	}
	if ci.Leader == name {
		return "current"
	}
	for _, r := range ci.Replicas {
		if r.Name == name {
			if r.Current && !r.Offline {
				return "current"
			}
			return "catching up"
		}
	}
	return "not a replica"
}
