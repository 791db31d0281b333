package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/stompbox/stompbox/frames"
)

// Loopback sources: Linux routes all of 127.0.0.0/8 to lo, so a client
// bound to 127.0.0.2 is another address to the server.
const (
	ipA = "127.0.0.1"
	ipB = "127.0.0.2"
)

// dialer binds client sockets to the source address from.
func dialer(from string) *net.Dialer {
	return &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
}

// dialRawFrom is dialRaw from a chosen source address.
func dialRawFrom(t testing.TB, addr, from string) *rawClient {
	t.Helper()
	conn, err := dialer(from).Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, from, err)
	}
	return newRawClient(t, conn)
}

// upgradeAnswer is a refused upgrade's HTTP response.
type upgradeAnswer struct {
	status int
	header http.Header
	body   string
}

// tryUpgrade asks for a STOMP (v12.stomp) upgrade from the source address
// from, with header (may be nil). It returns the client when the server
// upgraded, or the refusal.
func tryUpgrade(t testing.TB, url string, header http.Header, from string) (*wsClient, *upgradeAnswer) {
	t.Helper()
	var refused *upgradeAnswer
	d := ws.Dialer{
		Protocols: []string{"v12.stomp"},
		NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialer(from).DialContext(ctx, network, addr)
		},
		OnStatusError: func(status int, _ []byte, resp io.Reader) {
			refused = &upgradeAnswer{status: status}
			r, err := http.ReadResponse(bufio.NewReader(resp), nil)
			if err != nil {
				refused.body = "unreadable response: " + err.Error()
				return
			}
			b, _ := io.ReadAll(r.Body)
			refused.header, refused.body = r.Header, string(b)
		},
	}
	if header != nil {
		d.Header = ws.HandshakeHeaderHTTP(header)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, br, hs, err := d.Dial(ctx, url)
	if err != nil {
		if refused == nil {
			t.Fatalf("upgrade %s from %s: %v", url, from, err)
		}
		return nil, refused
	}
	t.Cleanup(func() { _ = conn.Close() })
	if br == nil {
		br = bufio.NewReader(conn)
	}
	return &wsClient{t: t, conn: conn, br: br, hs: hs}, nil
}

// mustUpgrade is tryUpgrade for an upgrade that must succeed.
func mustUpgrade(t testing.TB, url string, header http.Header, from string) *wsClient {
	t.Helper()
	c, refused := tryUpgrade(t, url, header, from)
	if refused != nil {
		t.Fatalf("upgrade from %s refused: %d %q", from, refused.status, refused.body)
	}
	return c
}

// mustRefuseUpgrade is tryUpgrade for an upgrade that must be refused
// with status and a body containing reason.
func mustRefuseUpgrade(t testing.TB, url string, header http.Header, from string, status int, reason string) *upgradeAnswer {
	t.Helper()
	c, refused := tryUpgrade(t, url, header, from)
	if c != nil {
		t.Fatalf("upgrade from %s accepted, want %d", from, status)
	}
	if refused.status != status || !strings.Contains(refused.body, reason) {
		t.Fatalf("upgrade from %s: %d %q, want %d saying %q", from, refused.status, refused.body, status, reason)
	}
	return refused
}

// limitRefusal is the ERROR a refused native connection gets.
var limitRefusal = errorWant{message: "too many connections", code: "limit-exceeded", retryable: true}

// expectRefused requires a native connection from `from` to get the
// limit-exceeded ERROR whose body names the limit, then the close.
func expectRefused(t testing.TB, addr, from, limit string) {
	t.Helper()
	c := dialRawFrom(t, addr, from)
	f := c.expectERROR(limitRefusal)
	if !strings.Contains(string(f.Body), limit) {
		t.Errorf("refusal body %q does not name the limit %q", f.Body, limit)
	}
}

// bystanders is a source of distinct bystander queues.
var bystanders atomic.Int64

// bystander is a connected TCP client (login bob) subscribed to a queue of its own;
// alive checks that it still sends and receives.
type bystander struct {
	c     *rawClient
	queue string
}

func newBystander(t testing.TB, addr, from string) *bystander {
	t.Helper()
	b := &bystander{c: dialRawFrom(t, addr, from), queue: "/queue/bystander." + strconv.FormatInt(bystanders.Add(1), 10)}
	b.c.connect("login:bob", "passcode:bob-pw") // what fakeAuth accepts too
	b.c.send(frame("SUBSCRIBE", "", "id:b", "destination:"+b.queue, "receipt:sub"))
	b.c.expectReceipt("sub")
	return b
}

func (b *bystander) alive(body string) {
	b.c.t.Helper()
	b.c.send(frame("SEND", body, "destination:"+b.queue))
	f := b.c.next(5 * time.Second)
	if f.Command != frames.CmdMessage || string(f.Body) != body {
		b.c.t.Fatalf("bystander got %s %q, want MESSAGE %q", f.Command, f.Body, body)
	}
}

// waitConns waits until the server serves n connections: a closed one
// gives its admission slot back just before it leaves the table.
func waitConns(t testing.TB, srv *testServer, n int) {
	t.Helper()
	for range 500 {
		if srv.openConns() == n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%d connections served, want %d", srv.openConns(), n)
}

// refusedSeries are the admission and upgrade refusal counters with want
// values by label (missing labels: 0): the label sets are fixed.
func refusedSeries(limits, reasons map[string]int) map[string]string {
	out := map[string]string{}
	for _, l := range limitNames {
		out[`stompbox_connections_refused_total{limit="`+l+`"}`] = strconv.Itoa(limits[l])
	}
	for _, r := range upgradeRefusalNames {
		out[`stompbox_upgrade_refused_total{reason="`+r+`"}`] = strconv.Itoa(reasons[r])
	}
	return out
}

// MaxConnectionsPerIP counts native and WebSocket connections of one
// address together; another address is not affected, and a slot freed by
// a close is usable again.
func TestAdmissionPerIPCap(t *testing.T) {
	srv, url := startWebServer(t, Config{MaxConnectionsPerIP: 2, ConnectionRatePerIP: -1})
	admin := startAdmin(t, srv.Server)
	_, body := get(t, admin+"/metrics")
	checkSamples(t, body, refusedSeries(nil, nil)) // exported, at 0, before anything happens

	by := newBystander(t, srv.addr, ipA)
	wsA := mustUpgrade(t, url, nil, ipA)
	wsA.connect()

	expectRefused(t, srv.addr, ipA, "per-address connection limit")
	by.alive("after the TCP refusal")
	a := mustRefuseUpgrade(t, url, nil, ipA, http.StatusServiceUnavailable, "per-address connection limit")
	if a.header.Get("Retry-After") != "" {
		t.Errorf("503 for a cap carries Retry-After %q; only the rate knows when", a.header.Get("Retry-After"))
	}
	by.alive("after the upgrade refusal")

	dialRawFrom(t, srv.addr, ipB).connect()
	mustUpgrade(t, url, nil, ipB).connect()

	_ = wsA.conn.Close()
	waitConns(t, srv, 3) // the bystander and ipB's two
	dialRawFrom(t, srv.addr, ipA).connect()
	by.alive("after the slot was reused")

	_, body = get(t, admin+"/metrics")
	// The upgrade was refused as a connection, when accepted, before it was
	// known to be one: counted by limit only.
	checkSamples(t, body, refusedSeries(map[string]int{"per_ip": 2}, nil))
	checkSamples(t, body, map[string]string{
		`stompbox_connections_accepted_total{transport="tcp"}`: "3",
		`stompbox_connections_accepted_total{transport="ws"}`:  "2",
	})
}

// ConnectionRatePerIP: past the burst an address is refused (ERROR, or 429
// with Retry-After) until a token has come back; the upgrade token is not
// even checked for a refused upgrade.
func TestAdmissionRate(t *testing.T) {
	auth := newFakeAuth()
	srv, url := startWebServer(t, Config{
		ConnectionRatePerIP:  1, // one token a second: the steps below take milliseconds
		ConnectionBurstPerIP: 2,
		UpgradeToken:         UpgradeToken{QueryParam: "token"},
		Broker:               brokerWithAuth(auth),
	})
	admin := startAdmin(t, srv.Server)
	by := newBystander(t, srv.addr, ipA)
	bob := []string{"login:bob", "passcode:bob-pw"}
	dialRawFrom(t, srv.addr, ipA).connect(bob...) // the burst is spent

	auth.takeCalls() // the CONNECTs' logins so far
	expectRefused(t, srv.addr, ipA, "connection rate limit")
	by.alive("after the TCP refusal")
	a := mustRefuseUpgrade(t, url+"?token="+goodToken, nil, ipA, http.StatusTooManyRequests, "connection rate limit")
	if got := a.header.Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After %q, want 1 (second)", got)
	}
	by.alive("after the upgrade refusal")
	if calls := auth.takeCalls(); len(calls) != 0 {
		t.Errorf("the authenticator was asked %v for a rate-limited upgrade", calls)
	}
	dialRawFrom(t, srv.addr, ipB).connect(bob...) // another address has its own bucket

	// A token comes back after 1s: sleeping longer guarantees it, however
	// slowly this runs.
	time.Sleep(1100 * time.Millisecond)
	dialRawFrom(t, srv.addr, ipA).connect(bob...)
	time.Sleep(1100 * time.Millisecond)
	mustUpgrade(t, url+"?token="+goodToken, nil, ipA).connect()
	by.alive("after the bucket refilled")

	_, body := get(t, admin+"/metrics")
	checkSamples(t, body, refusedSeries(map[string]int{"rate": 2}, nil))
}

// MaxConnections bounds every address together.
func TestAdmissionTotal(t *testing.T) {
	srv, url := startWebServer(t, Config{MaxConnections: 2, ConnectionRatePerIP: -1})
	admin := startAdmin(t, srv.Server)
	by := newBystander(t, srv.addr, ipA)
	other := dialRawFrom(t, srv.addr, ipB)
	other.connect()

	expectRefused(t, srv.addr, ipB, "server's connection limit")
	by.alive("after the TCP refusal")
	mustRefuseUpgrade(t, url, nil, ipA, http.StatusServiceUnavailable, "server's connection limit")
	by.alive("after the upgrade refusal")

	_ = other.conn.Close()
	waitConns(t, srv, 1)
	mustUpgrade(t, url, nil, ipB).connect()
	by.alive("after the slot was reused")

	_, body := get(t, admin+"/metrics")
	checkSamples(t, body, refusedSeries(map[string]int{"total": 2}, nil))
}

// Refusals over TLS: a client that handshakes gets the ERROR; a flood of
// refused connections that never send a ClientHello does not stall
// accepting (each refusal gets a bounded moment, at most refusalWorkers
// at a time, the rest are closed at once) and another address connects
// meanwhile. Every refusal is counted, answered or not.
func TestAdmissionFloodDoesNotStallAccept(t *testing.T) {
	const flood = 200
	tc := writeTestCert(t, t.TempDir(), 1)
	cert, err := LoadCertificate(tc.certFile, tc.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	stompAddr, _, srv := startTLSServer(t, cert, Config{MaxConnectionsPerIP: 1, ConnectionRatePerIP: -1})
	admin := startAdmin(t, srv.Server)
	tlsFrom := func(from string) *rawClient {
		t.Helper()
		nc, err := tls.DialWithDialer(dialer(from), "tcp", stompAddr, &tls.Config{RootCAs: tc.pool})
		if err != nil {
			t.Fatalf("TLS dial from %s: %v", from, err)
		}
		return newRawClient(t, nc)
	}
	by := tlsFrom(ipA)
	by.connect()
	// A TLS client that completes its handshake in time hears why.
	f := tlsFrom(ipA).expectERROR(limitRefusal)
	if !strings.Contains(string(f.Body), "per-address connection limit") {
		t.Errorf("refusal body %q", f.Body)
	}
	for range flood { // silent: no ClientHello, never read
		nc, err := dialer(ipA).Dial("tcp", stompAddr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = nc.Close() })
	}
	start := time.Now()
	tlsFrom(ipB).connect()
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("another address waited %v to connect during the flood", d)
	}
	by.send(frame("SEND", "x", "destination:/queue/flood", "receipt:r"))
	by.expectReceipt("r")
	body := scrapeUntil(t, admin, `stompbox_connections_refused_total{limit="per_ip"}`, strconv.Itoa(flood+1))
	checkSamples(t, body, map[string]string{`stompbox_connections{transport="tls"}`: "2"})
}

// fakeClock is a settable clock for the admission table.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

// The table itself, on a clock the test moves: bucket arithmetic, the
// caps, lazy cleanup, and the bound on tracked addresses.
func TestAdmissionTable(t *testing.T) {
	a1, a2, a3 := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3")
	type step struct {
		advance time.Duration
		key     netip.Addr
		release bool          // release key instead of admitting
		refused limitKind     // when !ok
		ok      bool          // admit must succeed
		retry   time.Duration // want retryAfter of a rate refusal
		tracked int           // addresses in the table afterwards
	}
	tests := []struct {
		name  string
		cfg   Config
		steps []step
	}{
		{"rate: burst, then one per interval", Config{MaxConnections: -1, MaxConnectionsPerIP: -1, ConnectionRatePerIP: 2, ConnectionBurstPerIP: 2}, []step{
			{key: a1, ok: true, tracked: 1},
			{key: a1, ok: true, tracked: 1},
			{key: a1, refused: limitRate, retry: 500 * time.Millisecond, tracked: 1},
			{advance: 250 * time.Millisecond, key: a1, refused: limitRate, retry: 250 * time.Millisecond, tracked: 1},
			{advance: 250 * time.Millisecond, key: a1, ok: true, tracked: 1},
			{key: a2, ok: true, tracked: 2}, // its own bucket
			{release: true, key: a1, tracked: 2},
			{release: true, key: a1, tracked: 2},
			{release: true, key: a1, tracked: 2},                  // idle, but its bucket is not full yet
			{advance: time.Second, key: a3, ok: true, tracked: 2}, // a1 swept on the way
		}},
		{"per-IP cap", Config{MaxConnections: -1, MaxConnectionsPerIP: 2, ConnectionRatePerIP: -1}, []step{
			{key: a1, ok: true, tracked: 1},
			{key: a1, ok: true, tracked: 1},
			{key: a1, refused: limitPerIP, tracked: 1},
			{key: a2, ok: true, tracked: 2},
			{release: true, key: a1, tracked: 2},
			{key: a1, ok: true, tracked: 2},
			{release: true, key: a2, tracked: 1}, // no bucket: gone with its last connection
		}},
		{"total cap", Config{MaxConnections: 2, MaxConnectionsPerIP: -1, ConnectionRatePerIP: -1}, []step{
			// No per-address limit: no table at all.
			{key: a1, ok: true},
			{key: a2, ok: true},
			{key: a3, refused: limitTotal},
			{release: true, key: a1},
			{key: netip.Addr{}, ok: true}, // not an IP: the total applies
			{key: a1, refused: limitTotal},
		}},
		{"table bound", Config{MaxConnections: -1, MaxConnectionsPerIP: 10, ConnectionRatePerIP: 1, ConnectionBurstPerIP: 1}, []step{
			{key: a1, ok: true, tracked: 1},
			{key: a2, ok: true, tracked: 2},
			{key: a3, refused: limitTotal, tracked: 2}, // the table holds 2
			{release: true, key: a1, tracked: 2},       // bucket empty: kept
			{key: a3, refused: limitTotal, tracked: 2},
			{advance: time.Second, key: a3, ok: true, tracked: 2}, // a1 full again: swept
			{key: a3, refused: limitRate, retry: time.Second, tracked: 2},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := &fakeClock{t: time.Unix(1000, 0)}
			a := newAdmission(tt.cfg.withDefaults(), 2, clock.now)
			for i, s := range tt.steps {
				clock.advance(s.advance)
				if s.release {
					a.release(s.key)
				} else {
					r, ok := a.admit(s.key)
					switch {
					case ok != s.ok:
						t.Fatalf("step %d: admit(%v) = %v (%v), want ok=%v", i, s.key, ok, r.limit, s.ok)
					case !ok && r.limit != s.refused:
						t.Fatalf("step %d: refused by %v, want %v", i, r.limit, s.refused)
					case !ok && r.retryAfter != s.retry:
						t.Fatalf("step %d: retry after %v, want %v", i, r.retryAfter, s.retry)
					}
				}
				if got := a.tracked(); got != s.tracked {
					t.Fatalf("step %d: %d addresses tracked, want %d", i, got, s.tracked)
				}
			}
		})
	}
}

// Zero means the default, negative unlimited.
func TestAdmissionDefaults(t *testing.T) {
	c := Config{}.withDefaults()
	if c.MaxConnections != 100_000 || c.MaxConnectionsPerIP != 1000 || c.ConnectionRatePerIP != 50 || c.ConnectionBurstPerIP != 100 {
		t.Errorf("defaults %d %d %v %d, want 100000 1000 50 100", c.MaxConnections, c.MaxConnectionsPerIP, c.ConnectionRatePerIP, c.ConnectionBurstPerIP)
	}
	c = Config{MaxConnections: -1, MaxConnectionsPerIP: -1, ConnectionRatePerIP: 0.2}.withDefaults()
	if c.MaxConnections != -1 || c.MaxConnectionsPerIP != -1 || c.ConnectionBurstPerIP != 1 {
		t.Errorf("got %d %d burst %d, want -1 -1 burst 1", c.MaxConnections, c.MaxConnectionsPerIP, c.ConnectionBurstPerIP)
	}
}
