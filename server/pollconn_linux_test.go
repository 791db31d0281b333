package server

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// idleWS opens a WebSocket connection that CONNECTs with heart-beats,
// subscribes and then only holds the socket: the client keeps no reader,
// so what the process holds per connection is the server's (plus the
// client's socket). The caller closes it.
func idleWS(t testing.TB, url string) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	nc, br, _, err := ws.Dialer{Protocols: []string{"v12.stomp"}}.Dial(ctx, url)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	if br != nil {
		ws.PutReader(br)
	}
	send := func(s string) {
		if err := wsutil.WriteClientText(nc, []byte(s)); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	send(frame("CONNECT", "", "accept-version:1.2", "host:test", "heart-beat:10000,10000"))
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	msg, err := wsutil.ReadServerText(nc)
	if err != nil || !strings.HasPrefix(string(msg), "CONNECTED") {
		t.Fatalf("CONNECT: %q, %v", msg, err)
	}
	send(frame("SUBSCRIBE", "", "id:0", "destination:/topic/idle", "receipt:r"))
	if msg, err = wsutil.ReadServerText(nc); err != nil || !strings.HasPrefix(string(msg), "RECEIPT") {
		t.Fatalf("SUBSCRIBE: %q, %v", msg, err)
	}
	return nc
}

// processFootprint is the goroutines, and the heap and stack bytes in use,
// after two collections: the second frees what the first left to the
// pools' victim caches (the read buffers of a burst).
func processFootprint() (goroutines int, heap, stacks uint64) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return runtime.NumGoroutine(), m.HeapAlloc, m.StackInuse
}

// Under the epoll driver an idle connection (heart-beats negotiated, one
// subscription) holds no goroutine and no buffer; under the goroutine
// driver it holds two goroutines, which is what the test tells apart.
func TestIdleConnectionFootprint(t *testing.T) {
	const conns = 300
	for _, tc := range []struct {
		driver                 string
		minGoroutines, maxGoro int     // per connection
		maxBytes               float64 // per connection: the server's, and the client's socket
	}{
		{DriverEpoll, 0, 0, 4 << 10},
		{DriverGoroutines, 2, 2, 64 << 10},
	} {
		t.Run(tc.driver, func(t *testing.T) {
			_, url := startWebServer(t, Config{ConnectionDriver: tc.driver, ConnectionRatePerIP: -1})
			clients := []net.Conn{idleWS(t, url)} // the first one starts the driver's shared parts
			defer func() {
				for _, nc := range clients {
					_ = nc.Close()
				}
			}()
			g0, heap0, stacks0 := processFootprint()
			for range conns {
				clients = append(clients, idleWS(t, url))
			}
			var g1 int
			var heap1, stacks1 uint64
			// The upgrades' goroutines end just after their handler, an epoll
			// reader a moment (activeGrace) after its connection's last bytes.
			for range 100 {
				if g1, heap1, stacks1 = processFootprint(); g1-g0 <= tc.maxGoro*conns+5 {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			// Stacks only count when they grew: goroutines of earlier tests
			// ending meanwhile give theirs back.
			perConn := (float64(heap1) - float64(heap0) + max(0, float64(stacks1)-float64(stacks0))) / conns
			t.Logf("%s: %d goroutines for %d connections, %.0f B per connection", tc.driver, g1-g0, conns, perConn)
			// Give or take a few of the test's own (earlier servers' endings).
			if got := g1 - g0; got < tc.minGoroutines*conns-5 || got > tc.maxGoro*conns+5 {
				t.Errorf("%d goroutines for %d idle connections, want %d to %d", got, conns, tc.minGoroutines*conns, tc.maxGoro*conns)
			}
			if perConn > tc.maxBytes {
				t.Errorf("%.0f B per idle connection, want at most %.0f", perConn, tc.maxBytes)
			}
		})
	}
}

// A client may send its CONNECT in the same packet as the upgrade request:
// net/http has then read it ahead, and the driver must feed those bytes
// before it waits for the socket (which has nothing more to say).
func TestWebSocketConnectInTheUpgradePacket(t *testing.T) {
	for _, driver := range []string{DriverEpoll, DriverGoroutines} {
		t.Run(driver, func(t *testing.T) {
			srv, url := startWebServer(t, Config{ConnectionDriver: driver})
			nc, err := net.Dial("tcp", strings.TrimSuffix(strings.TrimPrefix(url, "ws://"), "/ws"))
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			var req bytes.Buffer
			req.WriteString("GET /ws HTTP/1.1\r\nHost: " + nc.RemoteAddr().String() + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
				"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v12.stomp\r\n\r\n")
			connect := ws.MaskFrameInPlace(ws.NewTextFrame([]byte(frame("CONNECT", "", "accept-version:1.2", "host:test"))))
			if err := ws.WriteFrame(&req, connect); err != nil {
				t.Fatal(err)
			}
			if _, err := nc.Write(req.Bytes()); err != nil { // one write: one packet on loopback
				t.Fatal(err)
			}
			_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
			br := bufio.NewReader(nc)
			resp, err := http.ReadResponse(br, nil)
			if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("upgrade: %v %v", resp, err)
			}
			msg, err := wsutil.ReadServerText(struct {
				io.Reader
				io.Writer
			}{br, nc})
			if err != nil || !strings.HasPrefix(string(msg), "CONNECTED\n") {
				t.Fatalf("after CONNECT in the upgrade's packet: %q, %v", msg, err)
			}
			if got := srv.metrics.transports[transportWS].accepted.Load(); got != 1 {
				t.Errorf("WebSocket connections accepted: %d, want 1", got)
			}
		})
	}
}
