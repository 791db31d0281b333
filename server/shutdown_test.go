package server

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	"go.uber.org/goleak"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/frames"
)

// serverShutdown is the ERROR every client gets when the server goes away.
var serverShutdown = errorWant{message: "server shutting down", code: "server-shutdown", retryable: true}

// Shutdown tells every client why (raw clients see the exact ERROR; go-stomp
// surfaces it on its subscription), closes every connection, returns nil,
// makes Serve return ErrServerClosed, and stops accepting. Calling it again
// is harmless.
func TestShutdownNotifiesClients(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	srv := New(Config{Linger: 100 * time.Millisecond})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	// Runs last: if the test stops early, nothing is left running.
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })

	var raws []*rawClient
	for range 3 {
		c := dialRaw(t, addr)
		c.connect()
		raws = append(raws, c)
	}
	idle := dialRaw(t, addr) // connected at TCP level, no CONNECT yet
	gs, err := stomp.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := gs.Subscribe("/topic/news", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	if err := gs.Send("/queue/sync", "text/plain", nil, stomp.SendOpt.Receipt); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Shutdown took %v with a linger of 100ms", d)
	}
	select {
	case err := <-served:
		if !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}

	for _, c := range append(raws, idle) {
		c.expectERROR(serverShutdown)
	}
	select {
	case m := <-sub.C:
		var se *stomp.Error
		if !errors.As(m.Err, &se) || se.Message != serverShutdown.message || se.Frame == nil ||
			se.Frame.Header.Get("error-code") != serverShutdown.code || se.Frame.Header.Get("retryable") != "true" {
			t.Errorf("go-stomp subscription got %+v (err %v), want the server-shutdown ERROR", m, m.Err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("go-stomp client not told")
	}
	if err := gs.Send("/queue/sync", "text/plain", nil); err == nil {
		t.Error("go-stomp Send after shutdown succeeded")
	}
	_ = gs.Disconnect()

	if nc, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		_ = nc.Close()
		t.Error("dial after Shutdown succeeded")
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(ln2); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve after Shutdown returned %v, want ErrServerClosed", err)
	}
	if _, err := ln2.Accept(); err == nil {
		t.Error("Serve after Shutdown left its listener open")
	}
}

// startServer's cleanup shuts the server down again after the test did:
// that must be harmless (its checks run in the cleanup).
func TestShutdownTwiceViaCleanup(t *testing.T) {
	srv := startServer(t, Config{Linger: 50 * time.Millisecond})
	c := dialRaw(t, srv.addr)
	c.connect()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	c.expectERROR(serverShutdown)
}

// A client that never reads, with megabytes queued behind a blocked write,
// cannot hold Shutdown up: flushing is bounded by Linger, and when ctx
// expires first Shutdown closes what is left and returns ctx's error.
// Either way every goroutine of the server is gone.
func TestShutdownStuckClient(t *testing.T) {
	tests := []struct {
		name    string
		linger  time.Duration
		ctx     time.Duration
		wantErr error
		within  time.Duration // when Shutdown must have returned
	}{
		{"ctx expires first", 10 * time.Second, 300 * time.Millisecond, context.DeadlineExceeded, 300 * time.Millisecond},
		{"linger bounds the flush", 200 * time.Millisecond, 10 * time.Second, nil, 2 * 200 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { shutdownStuck(t, tt.linger, tt.ctx, tt.wantErr, tt.within) })
	}
}

func shutdownStuck(t *testing.T, linger, grace time.Duration, wantErr error, within time.Duration) {
	// Registered first, so it runs after every other cleanup.
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
	const (
		bodySize = 16 << 10
		messages = 512 // 8 MiB: more than the kernel buffers between the two ends
	)
	srv := startServer(t, Config{
		Linger:       linger,
		WriteTimeout: time.Minute,
		Broker:       broker.Config{MaxOutboxBytes: 64 << 20},
	})
	stuck := dialStalled(t, srv.addr, "/topic/backlog")

	pub := dialRaw(t, srv.addr)
	pub.connect()
	var batch strings.Builder
	body := strings.Repeat("z", bodySize)
	for i := range messages {
		headers := []string{"destination:/topic/backlog"}
		if i == messages-1 {
			headers = append(headers, "receipt:last")
		}
		batch.WriteString(frame("SEND", body, headers...))
	}
	pub.send(batch.String())
	pub.expectReceipt("last")
	if n := srv.Broker().Stats().SlowConsumers.Load(); n != 0 {
		t.Fatalf("%d slow consumers: the outbox limit should not be reached", n)
	}

	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	start := time.Now()
	err := srv.Shutdown(ctx)
	elapsed := time.Since(start)
	if !errors.Is(err, wantErr) {
		t.Errorf("Shutdown returned %v, want %v", err, wantErr)
	}
	if elapsed > within+time.Second {
		t.Errorf("Shutdown took %v, want about %v", elapsed, within)
	}
	if wantErr != nil && elapsed < grace {
		t.Errorf("Shutdown returned %v after %v, before its context expired", err, elapsed)
	}
	// The publisher, which reads, was told.
	pub.expectERROR(serverShutdown)

	// The stuck client's connection is gone: reading drains what the kernel
	// held and then ends.
	_ = stuck.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 256<<10)
	for range messages * bodySize / 512 {
		if _, err := stuck.Read(buf); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("stuck client's connection still open after Shutdown")
			}
			break
		}
	}
}

// Shutdown while clients are busy (each SEND answered by a RECEIPT, the
// next SEND only after it) ends promptly: the read loop of a connection
// the server is closing must not wait on a client that stopped sending
// because it got ERROR server-shutdown. The race this guards against is
// narrow, so several rounds run, each with its own server.
func TestShutdownBusyClients(t *testing.T) {
	const (
		rounds  = 8
		clients = 48
		linger  = 50 * time.Millisecond
	)
	for round := range rounds {
		if !t.Run("round "+strconv.Itoa(round), func(t *testing.T) { shutdownBusy(t, clients, linger) }) {
			break
		}
	}
}

func shutdownBusy(t *testing.T, clients int, linger time.Duration) {
	srv := startServer(t, Config{Linger: linger})
	conns := make([]*rawClient, clients)
	for i := range conns {
		conns[i] = dialRaw(t, srv.addr)
		conns[i].connect()
	}
	started := make(chan struct{}, clients)
	stopped := make([]chan struct{}, 0, clients)
	for i, c := range conns {
		done := make(chan struct{})
		stopped = append(stopped, done)
		go func() {
			defer close(done)
			send := []byte(frame("SEND", "busy", "destination:/queue/busy"+strconv.Itoa(i), "receipt:r"))
			for n := range 100_000 {
				if _, err := c.conn.Write(send); err != nil {
					return
				}
				select {
				case ev := <-c.events:
					if ev.frame == nil || ev.frame.Command != frames.CmdReceipt {
						return // ERROR server-shutdown, or the end: stop sending, stay connected
					}
				case <-time.After(10 * time.Second):
					return
				}
				if n == 0 {
					started <- struct{}{}
				}
			}
		}()
	}
	for range clients {
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatal("clients did not get going")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	err := srv.Shutdown(ctx)
	if d := time.Since(start); err != nil || d > 20*linger {
		t.Errorf("Shutdown returned %v after %v, want nil within a few lingers (%v)", err, d, linger)
	}
	for _, done := range stopped {
		<-done
	}
}
