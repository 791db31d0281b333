package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/stompbox/stompbox/frames"
)

// httpConn is a raw keep-alive HTTP/1.1 client connection.
type httpConn struct {
	t  testing.TB
	nc net.Conn
	br *bufio.Reader
}

// dialHTTP connects to addr from the source address from, over TLS when
// tlsCfg is set.
func dialHTTP(t testing.TB, addr, from string, tlsCfg *tls.Config) *httpConn {
	t.Helper()
	nc, err := dialer(from).Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	if tlsCfg != nil {
		nc = tls.Client(nc, tlsCfg)
	}
	t.Cleanup(func() { _ = nc.Close() })
	return &httpConn{t: t, nc: nc, br: bufio.NewReader(nc)}
}

// get sends a keep-alive GET with extra header lines and returns the
// response's status and body.
func (c *httpConn) get(path string, headers ...string) (int, string) {
	c.t.Helper()
	req := "GET " + path + " HTTP/1.1\r\nHost: test\r\n"
	for _, h := range headers {
		req += h + "\r\n"
	}
	if _, err := io.WriteString(c.nc, req+"\r\n"); err != nil {
		c.t.Fatalf("write request: %v", err)
	}
	return c.response()
}

// response reads one response.
func (c *httpConn) response() (int, string) {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		c.t.Fatalf("read response: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// closedWithin reports whether the server closes the connection within
// d, reading (and discarding) what it sends meanwhile.
func (c *httpConn) closedWithin(d time.Duration) bool {
	_ = c.nc.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c.br)
	return !errors.Is(err, os.ErrDeadlineExceeded)
}

func shutdownContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 10*time.Second)
}

// pageHandler stands in for the demo page.
var pageHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "page") })

// Every HTTP listener (page and WebSocket, the same over TLS, admin) closes
// a keep-alive connection idle for HTTPIdleTimeout and one that does not
// finish its request in time, and answers 431 to a header past
// HTTPMaxHeaderBytes. An upgraded WebSocket outlives both timeouts.
func TestHTTPTimeoutsOnEveryListener(t *testing.T) {
	const timeout = 300 * time.Millisecond
	tc := writeTestCert(t, t.TempDir(), 1)
	cert, err := LoadCertificate(tc.certFile, tc.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{HTTPIdleTimeout: timeout, HTTPReadTimeout: timeout, HTTPMaxHeaderBytes: 4 << 10, Page: pageHandler}
	_, wssURL, srv := startTLSServer(t, cert, cfg)
	_, wsURL := startWebServerOn(t, srv)
	admin := startAdmin(t, srv.Server)
	listeners := []struct {
		name, addr, path string
		tls              *tls.Config
	}{
		{"http", hostOf(wsURL), "/", nil},
		{"https", strings.TrimSuffix(strings.TrimPrefix(wssURL, "wss://"), "/ws"), "/", &tls.Config{RootCAs: tc.pool, ServerName: "127.0.0.1"}},
		{"admin", strings.TrimPrefix(admin, "http://"), "/healthz", nil},
	}
	for _, l := range listeners {
		t.Run(l.name, func(t *testing.T) {
			idle := dialHTTP(t, l.addr, ipA, l.tls)
			if status, _ := idle.get(l.path); status != http.StatusOK {
				t.Fatalf("GET %s: %d", l.path, status)
			}
			start := time.Now()
			if !idle.closedWithin(5 * time.Second) {
				t.Fatal("idle keep-alive connection still open after 5s")
			}
			if waited := time.Since(start); waited < timeout/2 {
				t.Errorf("idle connection closed after %v, before the idle timeout %v", waited, timeout)
			}

			slow := dialHTTP(t, l.addr, ipA, l.tls)
			if _, err := io.WriteString(slow.nc, "GET "+l.path+" HTTP/1.1\r\nHost: test\r\n"); err != nil {
				t.Fatal(err)
			}
			if !slow.closedWithin(5 * time.Second) {
				t.Fatal("a request never finished is still read after 5s")
			}

			big := dialHTTP(t, l.addr, ipA, l.tls)
			if status, _ := big.get(l.path, "X-Big: "+strings.Repeat("a", 8<<10)); status != http.StatusRequestHeaderFieldsTooLarge {
				t.Errorf("8 KiB header: %d, want 431", status)
			}
		})
	}

	// Upgraded, a WebSocket is the driver's: past both timeouts it works.
	for _, url := range []string{wsURL, wssURL} {
		d := ws.Dialer{Protocols: []string{"v12.stomp"}, TLSConfig: &tls.Config{RootCAs: tc.pool}}
		c := dialWSClientWith(t, d, url)
		c.connect("heart-beat:0,0")
		time.Sleep(3 * timeout) // past ReadTimeout and IdleTimeout, nothing sent
		c.text(frame("SUBSCRIBE", "", "id:1", "destination:/queue/edge", "receipt:r1"))
		if f, _ := c.next(); f.Command != frames.CmdReceipt {
			t.Fatalf("%s after idling: got %s, want RECEIPT", url, f.Command)
		}
	}
}

// startWebServerOn serves STOMP over WebSocket for srv on another port.
func startWebServerOn(t testing.TB, srv *testServer) (*testServer, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.ServeWeb(ln) }()
	t.Cleanup(func() {
		ctx, cancel := shutdownContext()
		defer cancel()
		_ = srv.Shutdown(ctx)
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("ServeWeb returned %v, want ErrServerClosed", err)
		}
	})
	return srv, "ws://" + ln.Addr().String() + "/ws"
}

// MaxConnectionsPerIP counts every HTTP connection when it is accepted:
// idle keep-alive connections past the cap get a 503 and are closed, and
// their slot is free again once one closes. The refusals are counted by
// limit.
func TestHTTPKeepAliveConnectionsCapped(t *testing.T) {
	const limit = 3
	srv, url := startWebServer(t, Config{MaxConnectionsPerIP: limit, ConnectionRatePerIP: -1, Page: pageHandler})
	admin := startAdmin(t, srv.Server)
	addr := hostOf(url)
	var kept []*httpConn
	for range limit {
		c := dialHTTP(t, addr, ipA, nil)
		if status, body := c.get("/"); status != http.StatusOK || body != "page" {
			t.Fatalf("GET /: %d %q", status, body)
		}
		kept = append(kept, c)
	}
	for range 5 {
		c := dialHTTP(t, addr, ipA, nil)
		status, body := c.response() // sent before any request
		if status != http.StatusServiceUnavailable || !strings.Contains(body, "per-address connection limit") {
			t.Fatalf("connection past the cap: %d %q, want 503 naming the limit", status, body)
		}
		if !c.closedWithin(5 * time.Second) {
			t.Fatal("refused connection left open")
		}
	}
	other := dialHTTP(t, addr, ipB, nil) // another address has its own slots
	if status, _ := other.get("/"); status != http.StatusOK {
		t.Fatalf("another address: %d", status)
	}
	for _, c := range kept { // still served, on the same connections
		if status, _ := c.get("/"); status != http.StatusOK {
			t.Fatalf("kept connection: %d", status)
		}
	}
	_ = kept[0].nc.Close()
	waitAdmitted(t, srv.Server, limit) // two of ipA, one of ipB
	if status, _ := dialHTTP(t, addr, ipA, nil).get("/"); status != http.StatusOK {
		t.Fatalf("after a close: %d", status)
	}
	_, body := get(t, admin+"/metrics")
	checkSamples(t, body, refusedSeries(map[string]int{"per_ip": 5}, nil))
}

// waitAdmitted waits until the server holds n admission slots.
func waitAdmitted(t testing.TB, srv *Server, n int) {
	t.Helper()
	for range 500 {
		if srv.admission.held() == n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%d admission slots held, want %d", srv.admission.held(), n)
}

// An upgraded connection holds one slot, the one its HTTP connection took
// when accepted, and gives it back when it ends.
func TestHTTPUpgradeHoldsOneSlot(t *testing.T) {
	srv, url := startWebServer(t, Config{MaxConnectionsPerIP: 2, ConnectionRatePerIP: -1, Page: pageHandler})
	c := mustUpgrade(t, url, nil, ipA)
	c.connect()
	waitAdmitted(t, srv.Server, 1)
	// The WebSocket layer writes to the socket itself: a batch of frames
	// stays one writev (net.Buffers needs the *net.TCPConn).
	srv.mu.Lock()
	for sc := range srv.conns {
		if nc := sc.base().stream.(wsStream).NetConn(); reflect.TypeOf(nc) != reflect.TypeFor[*net.TCPConn]() {
			t.Errorf("the WebSocket writes to a %T, want the *net.TCPConn", nc)
		}
	}
	srv.mu.Unlock()
	page := dialHTTP(t, hostOf(url), ipA, nil)
	if status, _ := page.get("/"); status != http.StatusOK {
		t.Fatalf("GET / beside one WebSocket: %d", status)
	}
	waitAdmitted(t, srv.Server, 2)
	mustRefuseUpgrade(t, url, nil, ipA, http.StatusServiceUnavailable, "per-address connection limit")
	_ = page.nc.Close()
	waitAdmitted(t, srv.Server, 1)
	mustUpgrade(t, url, nil, ipA).connect()
	waitAdmitted(t, srv.Server, 2)
	_ = c.conn.Close()
	waitAdmitted(t, srv.Server, 1)
	waitConns(t, srv, 1)
}

// dialWSClientWith upgrades with a prepared dialer.
func dialWSClientWith(t testing.TB, d ws.Dialer, url string) *wsClient {
	t.Helper()
	ctx, cancel := shutdownContext()
	defer cancel()
	conn, br, hs, err := d.Dial(ctx, url)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if br == nil {
		br = bufio.NewReader(conn)
	}
	return &wsClient{t: t, conn: conn, br: br, hs: hs}
}
