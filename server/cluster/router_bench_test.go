package cluster

import (
	"context"
	"strconv"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/stompbox/stompbox/broker"
)

// benchRouter is a router on a fresh one-server NATS, for benchmarks.
func benchRouter(b *testing.B) *router {
	b.Helper()
	s, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: b.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		b.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		b.Fatal("nats-server not ready")
	}
	b.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	nc, err := nats.Connect(natsURL(s), nats.NoEcho(), nats.ReconnectBufSize(-1))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	r, err := newRouter(routerConfig{NC: nc, Prefix: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = r.close(ctx)
	})
	return r
}

// BenchmarkPublishTopic is what a node spends handing one topic message
// to NATS (encode into a pooled buffer, publish); nobody subscribes.
func BenchmarkPublishTopic(b *testing.B) {
	r := benchRouter(b)
	m := benchMessage()
	b.ReportAllocs()
	for b.Loop() {
		if err := r.PublishTopic("/", "bench.topic", m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublishQueue stores queue messages (R1, file storage) with up
// to 1024 awaiting their PubAck, as pipelined SENDs do.
func BenchmarkPublishQueue(b *testing.B) {
	r := benchRouter(b)
	m := benchMessage()
	sem := make(chan struct{}, 1024)
	done := broker.ClusterDoneFunc(func(err error) {
		if err != nil {
			b.Error(err)
		}
		<-sem
	})
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		sem <- struct{}{}
		mi := *m
		mi.ID = strconv.Itoa(i) // distinct ids: JetStream would store a repeated one once
		if err := r.PublishQueue("/", "/queue/bench", &mi, done); err != nil {
			b.Fatal(err)
		}
	}
	for range cap(sem) {
		sem <- struct{}{}
	}
}
