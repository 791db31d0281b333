package server

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/stompbox/stompbox/frames"
	"github.com/stompbox/stompbox/wsadapter"
)

// wsClient is a gobwas/ws client that sees every frame the server sends,
// control frames included, and can send hand-built frames (unmasked,
// fragmented, a header without its payload).
type wsClient struct {
	t    testing.TB
	conn net.Conn
	br   *bufio.Reader
	hs   ws.Handshake
	// pings counts the server's pings readFrame skipped.
	pings int
}

// dialWSClient upgrades to url with header (may be nil) and protocols.
func dialWSClient(t testing.TB, url string, header http.Header, protocols ...string) *wsClient {
	t.Helper()
	d := ws.Dialer{Protocols: protocols}
	if header != nil {
		d.Header = ws.HandshakeHeaderHTTP(header)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, br, hs, err := d.Dial(ctx, url)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if br == nil { // nothing was read past the handshake
		br = bufio.NewReader(conn)
	}
	return &wsClient{t: t, conn: conn, br: br, hs: hs}
}

// dialWSRefused tries an upgrade that must be refused and returns the HTTP
// status and response body.
func dialWSRefused(t testing.TB, url string, header http.Header, protocols ...string) (int, string) {
	t.Helper()
	var body string
	d := ws.Dialer{
		Protocols: protocols,
		OnStatusError: func(_ int, _ []byte, resp io.Reader) {
			r, err := http.ReadResponse(bufio.NewReader(resp), nil)
			if err != nil {
				body = "unreadable response: " + err.Error()
				return
			}
			b, _ := io.ReadAll(r.Body)
			body = string(b)
		},
	}
	if header != nil {
		d.Header = ws.HandshakeHeaderHTTP(header)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, _, hs, err := d.Dial(ctx, url)
	if err == nil {
		_ = conn.Close()
		t.Fatalf("upgrade accepted (subprotocol %q), want it refused", hs.Protocol)
	}
	var status ws.StatusError
	if !errors.As(err, &status) {
		t.Fatalf("dial: %v, want an HTTP status error", err)
	}
	return int(status), body
}

// send writes one masked frame.
func (c *wsClient) send(op ws.OpCode, fin bool, payload []byte) {
	c.t.Helper()
	f := ws.MaskFrameInPlace(ws.NewFrame(op, fin, append([]byte(nil), payload...)))
	if err := ws.WriteFrame(c.conn, f); err != nil {
		c.t.Fatalf("write %v: %v", op, err)
	}
}

// text sends s as one text message.
func (c *wsClient) text(s string) {
	c.t.Helper()
	c.send(ws.OpText, true, []byte(s))
}

// raw writes bytes as they are.
func (c *wsClient) raw(b []byte) {
	c.t.Helper()
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// readFrame reads the next frame the server sent, whatever it is except
// the server's liveness pings, which it skips (and counts) without
// answering. Server frames are never masked and never carry RSV bits.
func (c *wsClient) readFrame() ws.Frame {
	c.t.Helper()
	for {
		_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		f, err := ws.ReadFrame(c.br)
		if err != nil {
			c.t.Fatalf("reading a frame from the server: %v", err)
		}
		if f.Header.Masked || f.Header.Rsv != 0 {
			c.t.Fatalf("server frame %v masked=%v rsv=%d", f.Header.OpCode, f.Header.Masked, f.Header.Rsv)
		}
		if f.Header.OpCode != ws.OpPing {
			return f
		}
		c.pings++
	}
}

// message reads the next frame and requires an unfragmented data message.
func (c *wsClient) message() (ws.OpCode, []byte) {
	c.t.Helper()
	f := c.readFrame()
	if !f.Header.OpCode.IsData() || !f.Header.Fin {
		c.t.Fatalf("got %v (fin %v) %q, want one whole data message", f.Header.OpCode, f.Header.Fin, f.Payload)
	}
	return f.Header.OpCode, f.Payload
}

// next reads the next WebSocket message, skipping heart-beats, and
// requires it to hold exactly one STOMP frame and nothing else.
func (c *wsClient) next() (*frames.Frame, ws.OpCode) {
	c.t.Helper()
	for range 100 {
		op, payload := c.message()
		if string(payload) == "\n" {
			continue
		}
		return oneFrame(c.t, payload), op
	}
	c.t.Fatal("only heart-beats")
	return nil, 0
}

// expectClose requires the next frame to be a close frame with code, and
// then the end of the TCP stream.
func (c *wsClient) expectClose(code ws.StatusCode) {
	c.t.Helper()
	f := c.readFrame()
	if f.Header.OpCode != ws.OpClose {
		c.t.Fatalf("got %v %q, want close %d", f.Header.OpCode, f.Payload, code)
	}
	if len(f.Payload) < 2 {
		c.t.Fatalf("close frame without a status code, want %d", code)
	}
	if got := ws.StatusCode(binary.BigEndian.Uint16(f.Payload)); got != code {
		c.t.Fatalf("close code %d (reason %q), want %d", got, f.Payload[2:], code)
	}
	c.expectEOF()
}

// expectEOF requires the server to end the TCP stream with nothing more.
func (c *wsClient) expectEOF() {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if f, err := ws.ReadFrame(c.br); err != io.EOF {
		c.t.Fatalf("after the close frame: %v %q, %v; want the end of the stream", f.Header.OpCode, f.Payload, err)
	}
}

// connect sends CONNECT (STOMP 1.2 unless headers say otherwise) and
// returns CONNECTED.
func (c *wsClient) connect(headers ...string) *frames.Frame {
	c.t.Helper()
	if !strings.Contains(strings.Join(headers, "\n"), "accept-version:") {
		headers = append(headers, "accept-version:1.2")
	}
	c.text(frame("CONNECT", "", append([]string{"host:test"}, headers...)...))
	f, _ := c.next()
	if f.Command != frames.CmdConnected {
		c.t.Fatalf("got %s %v, want CONNECTED", f.Command, f.Headers)
	}
	return f
}

// frameCollector keeps owned copies of what a Parser finds.
type frameCollector struct {
	frames     []*frames.Frame
	heartbeats int
}

func (h *frameCollector) HandleFrame(f *frames.Frame) error {
	h.frames = append(h.frames, f.Clone())
	return nil
}

func (h *frameCollector) HandleHeartbeat() error {
	h.heartbeats++
	return nil
}

// oneFrame parses a WebSocket message that must hold exactly one STOMP
// frame: no second frame, no trailing EOL, no partial frame.
func oneFrame(t testing.TB, payload []byte) *frames.Frame {
	t.Helper()
	p := frames.NewParser(frames.Limits{MaxBody: 64 << 20})
	var h frameCollector
	if err := p.Parse(append([]byte(nil), payload...), &h); err != nil {
		t.Fatalf("message %q: %v", payload, err)
	}
	if len(h.frames) != 1 || h.heartbeats != 0 || p.Buffered() != 0 {
		t.Fatalf("message holds %d frames, %d EOLs and %d bytes of an unfinished frame, want exactly one frame: %q",
			len(h.frames), h.heartbeats, p.Buffered(), payload)
	}
	return h.frames[0]
}

// The highest STOMP subprotocol offered wins, unknown ones beside it are
// ignored, and none offered is fine (STOMP 1.2 by CONNECT's negotiation).
func TestWebSocketSubprotocols(t *testing.T) {
	_, url := startWebServer(t, Config{})
	tests := []struct {
		name    string
		offered []string
		want    string
		accept  string // CONNECT's accept-version
		version string // CONNECTED's version
	}{
		{"all three, unordered", []string{"v10.stomp", "v12.stomp", "v11.stomp"}, "v12.stomp", "1.0,1.1,1.2", "1.2"},
		{"only 1.1", []string{"v11.stomp"}, "v11.stomp", "1.1", "1.1"},
		{"only 1.0", []string{"v10.stomp"}, "v10.stomp", "1.0", "1.0"},
		{"1.0 and 1.1", []string{"v10.stomp", "v11.stomp"}, "v11.stomp", "1.0,1.1", "1.1"},
		{"unknown beside a known one", []string{"mqtt", "v11.stomp", "wamp"}, "v11.stomp", "1.1", "1.1"},
		{"none", nil, "", "1.0,1.1,1.2", "1.2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialWSClient(t, url, nil, tt.offered...)
			if c.hs.Protocol != tt.want {
				t.Fatalf("subprotocol %q, want %q", c.hs.Protocol, tt.want)
			}
			f := c.connect("accept-version:" + tt.accept)
			if got := header(f, "version"); got != tt.version {
				t.Fatalf("CONNECTED version %q, want %s", got, tt.version)
			}
			if got := header(f, "server"); !strings.HasPrefix(got, "stompbox/") {
				t.Errorf("CONNECTED server %q", got)
			}
		})
	}
}

// Only unknown subprotocols offered: the upgrade is refused with 400 and a
// body that says what to offer instead.
func TestWebSocketUnknownSubprotocolRefused(t *testing.T) {
	_, url := startWebServer(t, Config{})
	for _, offered := range [][]string{{"mqtt"}, {"mqtt", "v13.stomp", "stomp"}} {
		status, body := dialWSRefused(t, url, nil, offered...)
		if status != http.StatusBadRequest {
			t.Errorf("offered %v: status %d, want 400", offered, status)
		}
		if !strings.Contains(body, "v12.stomp") {
			t.Errorf("offered %v: body %q does not name the supported subprotocols", offered, body)
		}
	}
	// The server is unharmed.
	dialWSClient(t, url, nil, "v12.stomp").connect()
}

// Origin policy: without an allowlist only the broker's own host may
// connect from a browser; an allowlist replaces that rule; "*" allows
// anyone; a client without Origin (not a browser) is always accepted.
func TestWebSocketOrigin(t *testing.T) {
	tests := []struct {
		name    string
		allowed []string
		origin  string // "self" stands for http://<listener address>
		ok      bool
	}{
		{"default: other host", nil, "http://evil.example", false},
		{"default: same host and port", nil, "self", true},
		{"default: same host, other port", nil, "http://127.0.0.1:1", false},
		{"default: opaque origin", nil, "null", false},
		{"default: no Origin", nil, "", true},
		{"list: listed", []string{"https://app.example"}, "https://app.example", true},
		{"list: other scheme", []string{"https://app.example"}, "http://app.example", false},
		{"list: other host", []string{"https://app.example"}, "https://evil.example", false},
		{"list: same host not listed", []string{"https://app.example"}, "self", false},
		{"list: no Origin", []string{"https://app.example"}, "", true},
		{"star: any", []string{"*"}, "https://anything.example", true},
		{"star: opaque origin", []string{"*"}, "null", true},
	}
	servers := map[string]string{} // allowlist -> ws URL, one server each
	for _, tt := range tests {
		key := strings.Join(tt.allowed, ",")
		if _, ok := servers[key]; !ok {
			_, servers[key] = startWebServer(t, Config{WebSocket: wsadapter.Config{AllowedOrigins: tt.allowed}})
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := servers[strings.Join(tt.allowed, ",")]
			origin := tt.origin
			if origin == "self" {
				origin = "http://" + hostOf(url)
			}
			var h http.Header
			if origin != "" {
				h = http.Header{"Origin": {origin}}
			}
			if tt.ok {
				c := dialWSClient(t, url, h, "v12.stomp")
				c.connect()
				return
			}
			status, body := dialWSRefused(t, url, h, "v12.stomp")
			if status != http.StatusForbidden {
				t.Fatalf("Origin %q: status %d, want 403", origin, status)
			}
			if !strings.Contains(body, "not allowed") {
				t.Errorf("Origin %q: body %q does not say why", origin, body)
			}
		})
	}
}

// hostOf returns host:port of a ws:// URL.
func hostOf(url string) string {
	return strings.TrimSuffix(strings.TrimPrefix(url, "ws://"), "/ws")
}

// A request to the WebSocket path that is not a valid upgrade gets a 4xx
// answer and then the server closes the connection: a client must not be
// able to hold a socket open that no one reads or closes.
func TestWebSocketBadHandshakeClosed(t *testing.T) {
	_, url := startWebServer(t, Config{})
	addr := hostOf(url)
	tests := []struct {
		name    string
		request string
	}{
		{"plain GET", "GET /ws HTTP/1.1\r\nHost: " + addr + "\r\n\r\n"},
		{"bad version", "GET /ws HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := io.WriteString(conn, tt.request); err != nil {
				t.Fatal(err)
			}
			_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("no HTTP answer: %v", err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode < 400 || resp.StatusCode >= 500 {
				t.Fatalf("status %d, want a 4xx refusal", resp.StatusCode)
			}
			rest, err := io.ReadAll(br)
			if err != nil {
				t.Fatalf("status %d, then the connection stayed open (%v) after %q", resp.StatusCode, err, rest)
			}
		})
	}
}
