package server

import (
	"bufio"
	"bytes"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// BenchmarkConnectWS is one browser-like connection setup per op: TCP
// connect, the WebSocket upgrade and a STOMP CONNECT in one write, the 101
// and CONNECTED read back, then a close. It is the server's cost of a
// reconnect storm (docs/benchmarks.md, connection setup).
func BenchmarkConnectWS(b *testing.B) {
	_, url := startWebServer(b, Config{MaxConnectionsPerIP: -1, ConnectionRatePerIP: -1})
	addr := strings.TrimSuffix(strings.TrimPrefix(url, "ws://"), "/ws")
	var req bytes.Buffer
	req.WriteString("GET /ws HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v12.stomp\r\n\r\n")
	if err := ws.WriteFrame(&req, ws.MaskFrameInPlace(ws.NewTextFrame([]byte(frame("CONNECT", "", "accept-version:1.2", "host:test", "heart-beat:10000,10000"))))); err != nil {
		b.Fatal(err)
	}
	br := bufio.NewReaderSize(nil, 1024)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := nc.Write(req.Bytes()); err != nil {
			b.Fatal(err)
		}
		_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		br.Reset(nc)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			b.Fatalf("upgrade: %v %v", resp, err)
		}
		h, err := ws.ReadHeader(br)
		if err != nil || h.OpCode != ws.OpText {
			b.Fatalf("CONNECTED: %v %v", h, err)
		}
		if _, err := br.Discard(int(h.Length)); err != nil {
			b.Fatal(err)
		}
		_ = nc.Close()
	}
}
