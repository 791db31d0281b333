package server

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// startWebServer is startServer plus the HTTP listener with STOMP over
// WebSocket at /ws; it returns the ws:// URL.
func startWebServer(t testing.TB, cfg Config) (*testServer, string) {
	t.Helper()
	srv := startServer(t, cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.ServeWeb(ln) }()
	t.Cleanup(func() {
		// startServer's cleanup (registered first, so run after this one)
		// shuts the server down; wait for ServeWeb after triggering it here.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("ServeWeb returned %v, want ErrServerClosed", err)
		}
	})
	return srv, "ws://" + ln.Addr().String() + "/ws"
}

// dialWS connects a gobwas/ws client offering protocols.
func dialWS(t testing.TB, url string, protocols ...string) (net.Conn, ws.Handshake) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, br, hs, err := ws.Dialer{Protocols: protocols}.Dial(ctx, url)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	if br != nil {
		ws.PutReader(br)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn, hs
}

// readWS reads one data message from the server with a deadline.
func readWS(t testing.TB, conn net.Conn) ([]byte, ws.OpCode) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	data, op, err := wsutil.ReadServerData(conn)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return data, op
}

func TestWebSocketSmoke(t *testing.T) {
	_, url := startWebServer(t, Config{})
	conn, hs := dialWS(t, url, "v10.stomp", "v12.stomp", "v11.stomp")
	if hs.Protocol != "v12.stomp" {
		t.Fatalf("subprotocol %q, want the highest offered, v12.stomp", hs.Protocol)
	}
	if err := wsutil.WriteClientText(conn, []byte("CONNECT\naccept-version:1.2\nhost:x\n\n\x00")); err != nil {
		t.Fatal(err)
	}
	data, op := readWS(t, conn)
	if op != ws.OpText || string(data[:10]) != "CONNECTED\n" {
		t.Fatalf("got %v %q", op, data)
	}
	// One WS message holding two frames, the second split across messages.
	_ = wsutil.WriteClientText(conn, []byte("SUBSCRIBE\nid:1\ndestination:/queue/a\n\n\x00SEND\ndestination:/queue/a\n"))
	_ = wsutil.WriteClientText(conn, []byte("\nhello\x00"))
	data, op = readWS(t, conn)
	if op != ws.OpText || string(data[:8]) != "MESSAGE\n" {
		t.Fatalf("got %v %q", op, data)
	}
	_ = wsutil.WriteClientBinary(conn, []byte("SEND\ndestination:/queue/a\ncontent-length:2\n\n\xff\x00\x00"))
	data, op = readWS(t, conn)
	if op != ws.OpBinary {
		t.Fatalf("non-UTF-8 body sent as %v, want binary: %q", op, data)
	}
	_ = wsutil.WriteClientText(conn, []byte("DISCONNECT\nreceipt:bye\n\n\x00"))
	data, _ = readWS(t, conn)
	if string(data[:8]) != "RECEIPT\n" {
		t.Fatalf("got %q", data)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err := wsutil.ReadServerData(conn)
	var closed wsutil.ClosedError
	if !errors.As(err, &closed) || closed.Code != ws.StatusNormalClosure {
		t.Fatalf("after DISCONNECT: %v, want close 1000", err)
	}
}
