package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"

	"github.com/stompbox/stompbox/broker"
)

// BenchmarkAdminDestinations10k is one console refresh of the destination
// table with 10,000 queues: the first page by depth, over a real listener.
//
//	go test -run '^$' -bench AdminDestinations10k -benchmem ./server
func BenchmarkAdminDestinations10k(b *testing.B) {
	const queues = 10_000
	srv := startServer(b, Config{Broker: broker.Config{MaxQueues: 2 * queues, MaxQueuesPerUser: -1}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.ServeAdmin(ln) }()
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			b.Errorf("ServeAdmin returned %v", err)
		}
	})
	c := dialStomp(b, srv.addr, "bench")
	for i := range queues {
		if err := c.Send(fmt.Sprintf("/queue/bench-%05d", i), "text/plain", []byte("x")); err != nil {
			b.Fatal(err)
		}
	}
	if err := c.Send("/queue/bench-00000", "text/plain", []byte("x"), stomp.SendOpt.Receipt); err != nil {
		b.Fatal(err) // the RECEIPT comes after every SEND before it was handled
	}
	url := "http://" + ln.Addr().String() + "/api/destinations?limit=50&sort=messages&order=desc"
	client := &http.Client{Timeout: 10 * time.Second}
	get := func() int64 {
		resp, err := client.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("%s: %v", resp.Status, err)
		}
		return n
	}
	get() // the first snapshot of the rates
	b.ReportAllocs()
	b.ResetTimer()
	var bytes int64
	for b.Loop() {
		bytes = get()
	}
	b.ReportMetric(float64(bytes), "B/page")
}
