//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/go-stomp/stomp/v3"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

const (
	// tlsTimeout bounds one TLS dial, one STOMP receive and one WebSocket
	// read.
	tlsTimeout = 5 * time.Second
	// reloadTimeout bounds the wait for SIGHUP to take effect.
	reloadTimeout = 10 * time.Second
)

// e2eCert is a self-signed ECDSA certificate for 127.0.0.1 in PEM files.
type e2eCert struct {
	certFile, keyFile string
	leaf              *x509.Certificate
}

// writeE2ECert creates a certificate for 127.0.0.1 with serial and writes
// it, over any earlier one, to dir/cert.pem and dir/key.pem (each written
// to a temporary file and renamed into place, as certificate managers do).
func writeE2ECert(t *testing.T, dir string, serial int64) e2eCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: "stompbox e2e " + strconv.FormatInt(serial, 10)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Duration(serial) * 24 * time.Hour).Truncate(time.Second),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	c := e2eCert{certFile: filepath.Join(dir, "cert.pem"), keyFile: filepath.Join(dir, "key.pem"), leaf: leaf}
	replaceFile(t, c.certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	replaceFile(t, c.keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	return c
}

// spki is what Chromium's --ignore-certificate-errors-spki-list takes:
// the base64 SHA-256 of the certificate's SubjectPublicKeyInfo.
func (c e2eCert) spki() string {
	sum := sha256.Sum256(c.leaf.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// replaceFile writes data to path.tmp and renames it over path.
func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// listenAttr returns the address the broker's listening line gives for
// name (admin, stomp, stomp_tls, http or https) in the text log format.
func listenAttr(t *testing.T, b *brokerProc, name string) string {
	t.Helper()
	re := regexp.MustCompile(`(?:^| )` + regexp.QuoteMeta(name) + `=(127\.0\.0\.1:\d+)(?: |$)`)
	for line := range strings.SplitSeq(b.log.String(), "\n") {
		if !strings.Contains(line, `msg="stompbox listening"`) {
			continue
		}
		if m := re.FindStringSubmatch(line); m != nil {
			return m[1]
		}
		t.Fatalf("the listening line has no %s=127.0.0.1:<port>: %s", name, line)
	}
	t.Fatalf("no listening line in the log:\n%s", b.log.String())
	return ""
}

// startTLSBroker runs the broker with native STOMP over TLS and HTTPS on
// 127.0.0.1:0 besides the plain listeners, serving cert.
func startTLSBroker(t *testing.T, cert e2eCert, flags ...string) *brokerProc {
	t.Helper()
	return startBroker(t, append([]string{"-tls-listen", "127.0.0.1:0", "-https-listen", "127.0.0.1:0",
		"-tls-cert", cert.certFile, "-tls-key", cert.keyFile}, flags...)...)
}

// tlsDial opens a TLS connection that trusts pool and returns it with the
// serial of the certificate the server presented.
func tlsDial(t *testing.T, addr string, pool *x509.CertPool) (*tls.Conn, int64) {
	t.Helper()
	nc, err := tls.DialWithDialer(&net.Dialer{Timeout: tlsTimeout}, "tcp", addr, &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatalf("TLS dial %s: %v", addr, err)
	}
	return nc, nc.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// handshakeSerial completes one TLS handshake and returns the serial the
// server presented.
func handshakeSerial(t *testing.T, addr string, pool *x509.CertPool) int64 {
	t.Helper()
	nc, serial := tlsDial(t, addr, pool)
	_ = nc.Close()
	return serial
}

// stompTLS connects go-stomp over TLS; the connection is dropped at cleanup
// unless the test disconnected it.
func stompTLS(t *testing.T, addr string, pool *x509.CertPool) (*stomp.Conn, int64) {
	t.Helper()
	nc, serial := tlsDial(t, addr, pool)
	conn, err := stomp.Connect(nc, stomp.ConnOpt.HeartBeat(0, 0))
	if err != nil {
		_ = nc.Close()
		t.Fatalf("STOMP over TLS: %v", err)
	}
	t.Cleanup(func() { _ = conn.MustDisconnect() })
	return conn, serial
}

// receive waits (bounded) for one message on sub and checks its body.
func receive(t *testing.T, sub *stomp.Subscription, want string) {
	t.Helper()
	select {
	case m := <-sub.C:
		if m.Err != nil || string(m.Body) != want {
			t.Fatalf("%s: got %q (%v), want %q", sub.Destination(), m.Body, m.Err, want)
		}
	case <-time.After(tlsTimeout):
		t.Fatalf("%s: no message %q within %v", sub.Destination(), want, tlsTimeout)
	}
}

// wssClient is a raw STOMP client on a gobwas/ws secure WebSocket.
type wssClient struct {
	t    *testing.T
	conn net.Conn
}

// dialWSS opens url (wss://.../ws) with the STOMP 1.2 subprotocol, trusting
// pool, and does CONNECT; it returns the client and the CONNECTED frame.
func dialWSS(t *testing.T, url string, pool *x509.CertPool) (*wssClient, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), tlsTimeout)
	defer cancel()
	conn, _, hs, err := ws.Dialer{Protocols: []string{"v12.stomp"}, TLSConfig: &tls.Config{RootCAs: pool}}.Dial(ctx, url)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if hs.Protocol != "v12.stomp" {
		t.Fatalf("%s: subprotocol %q, want v12.stomp", url, hs.Protocol)
	}
	c := &wssClient{t: t, conn: conn}
	c.send("CONNECT\naccept-version:1.2\nhost:127.0.0.1\nheart-beat:0,0\n\n\x00")
	connected := c.read()
	if !strings.HasPrefix(connected, "CONNECTED\n") || !strings.Contains(connected, "\nversion:1.2\n") {
		t.Fatalf("wss CONNECT: got %q, want CONNECTED version 1.2", connected)
	}
	return c, connected
}

func (c *wssClient) send(frame string) {
	c.t.Helper()
	_ = c.conn.SetWriteDeadline(time.Now().Add(tlsTimeout))
	if err := wsutil.WriteClientText(c.conn, []byte(frame)); err != nil {
		c.t.Fatalf("wss write: %v", err)
	}
}

// read returns the next STOMP frame (bounded), skipping heart-beats.
func (c *wssClient) read() string {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(tlsTimeout))
	for range 100 {
		data, _, err := wsutil.ReadServerData(c.conn)
		if err != nil {
			c.t.Fatalf("wss read: %v", err)
		}
		if s := string(data); s != "\n" && s != "\r\n" {
			return s
		}
	}
	c.t.Fatal("wss read: only heart-beats")
	return ""
}

// waitLog polls (bounded) until the broker's log holds want n times.
func waitLog(t *testing.T, b *brokerProc, want string, n int) {
	t.Helper()
	deadline := time.Now().Add(reloadTimeout)
	for strings.Count(b.log.String(), want) < n {
		if time.Now().After(deadline) {
			t.Fatalf("the log does not show %q %d times within %v:\n%s", want, n, reloadTimeout, b.log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitSerial polls (bounded) until a new handshake presents serial.
func waitSerial(t *testing.T, addr string, pool *x509.CertPool, want int64) {
	t.Helper()
	deadline := time.Now().Add(reloadTimeout)
	for {
		got := handshakeSerial(t, addr, pool)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("new handshakes still present serial %d after %v, want %d", got, reloadTimeout, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// adminSamples scrapes http://admin/metrics into "name{labels}" -> value.
func adminSamples(t *testing.T, admin string) map[string]string {
	t.Helper()
	client := &http.Client{Timeout: tlsTimeout}
	res, err := client.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", res.Status)
	}
	samples := map[string]string{}
	sc := bufio.NewScanner(io.LimitReader(res.Body, 8<<20))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.LastIndexByte(line, ' '); i > 0 {
			samples[line[:i]] = line[i+1:]
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return samples
}

// TestTLSProcessReloadOnSIGHUP: the real binary serves native STOMP over
// TLS and STOMP over wss with a certificate from files; SIGHUP swaps in the
// files' new certificate for new handshakes while connections opened before
// keep working, and a broken key file keeps the certificate in use. The
// outcome of each reload is logged and counted on the admin /metrics.
func TestTLSProcessReloadOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	first := writeE2ECert(t, dir, 1)
	b := startTLSBroker(t, first)
	tlsAddr, httpsAddr, admin := listenAttr(t, b, "stomp_tls"), listenAttr(t, b, "https"), listenAttr(t, b, "admin")
	pool := x509.NewCertPool()
	pool.AddCert(first.leaf)

	// go-stomp over TLS: a consumer and a producer on a queue.
	consumer, serial := stompTLS(t, tlsAddr, pool)
	if serial != 1 {
		t.Fatalf("server presented serial %d, want 1", serial)
	}
	queue, err := consumer.Subscribe("/queue/e2e.tls", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	producer, _ := stompTLS(t, tlsAddr, pool)
	if err := producer.Send("/queue/e2e.tls", "text/plain", []byte("before reload"), stomp.SendOpt.Receipt); err != nil {
		t.Fatal(err)
	}
	receive(t, queue, "before reload")

	// gobwas/ws over wss: CONNECT, and a subscription to a topic.
	wss, connected := dialWSS(t, "wss://"+httpsAddr+"/ws", pool)
	t.Logf("wss CONNECTED: %q", connected)
	wss.send("SUBSCRIBE\nid:1\ndestination:/topic/e2e.tls\nreceipt:sub-1\n\n\x00")
	if f := wss.read(); !containsAll(f, "RECEIPT\n", "receipt-id:sub-1\n") {
		t.Fatalf("wss SUBSCRIBE: got %q, want RECEIPT sub-1", f)
	}

	// A second certificate over the same files, then SIGHUP.
	second := writeE2ECert(t, dir, 2)
	pool.AddCert(second.leaf)
	if err := b.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, b, `msg="TLS certificate reloaded"`, 1)
	waitSerial(t, tlsAddr, pool, 2)
	if got := handshakeSerial(t, httpsAddr, pool); got != 2 {
		t.Errorf("HTTPS listener presents serial %d after the reload, want 2", got)
	}

	// The connections opened before the reload still work: over the old
	// TLS connections to the old consumer, and to the old wss subscriber.
	if err := producer.Send("/queue/e2e.tls", "text/plain", []byte("after reload"), stomp.SendOpt.Receipt); err != nil {
		t.Fatalf("TLS connection opened before the reload: %v", err)
	}
	receive(t, queue, "after reload")
	if err := producer.Send("/topic/e2e.tls", "text/plain", []byte("to wss"), stomp.SendOpt.Receipt); err != nil {
		t.Fatal(err)
	}
	if f := wss.read(); !containsAll(f, "MESSAGE\n", "destination:/topic/e2e.tls\n", "\n\nto wss\x00") {
		t.Fatalf("wss connection opened before the reload got %q, want the MESSAGE", f)
	}
	// A new STOMP session gets the new certificate and works too.
	fresh, serial := stompTLS(t, tlsAddr, pool)
	if serial != 2 {
		t.Fatalf("new STOMP session: serial %d, want 2", serial)
	}
	if err := fresh.Send("/queue/e2e.tls", "text/plain", []byte("fresh"), stomp.SendOpt.Receipt); err != nil {
		t.Fatal(err)
	}
	receive(t, queue, "fresh")

	// A broken key file: the reload fails and serial 2 stays in use.
	replaceFile(t, second.keyFile, []byte("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"))
	if err := b.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, b, `msg="TLS certificate reload failed; the previous certificate stays in use"`, 1)
	if got := handshakeSerial(t, tlsAddr, pool); got != 2 {
		t.Fatalf("after a failed reload: serial %d, want 2 (kept)", got)
	}
	if strings.Count(b.log.String(), `msg="TLS certificate reloaded"`) != 1 {
		t.Errorf("the failed reload was also logged as a success:\n%s", b.log.String())
	}

	samples := adminSamples(t, admin)
	for name, want := range map[string]string{
		`stompbox_tls_certificate_reloads_total{result="success"}`: "1",
		`stompbox_tls_certificate_reloads_total{result="failure"}`: "1",
	} {
		if got := samples[name]; got != want {
			t.Errorf("%s = %q, want %s", name, got, want)
		}
	}
	expiry, err := strconv.ParseFloat(samples["stompbox_tls_certificate_expiry_timestamp_seconds"], 64)
	if err != nil || int64(expiry) != second.leaf.NotAfter.Unix() {
		t.Errorf("stompbox_tls_certificate_expiry_timestamp_seconds = %v (%v), want %d (serial 2's NotAfter)",
			expiry, err, second.leaf.NotAfter.Unix())
	}

	// No UNSUBSCRIBE: go-stomp v3.1.3's Unsubscribe can wait forever for
	// its RECEIPT while a message sits unread in the subscription's channel
	// (go-stomp issue 122); DISCONNECT releases the subscription anyway.
	for _, c := range []*stomp.Conn{fresh, producer, consumer} {
		if err := c.Disconnect(); err != nil {
			t.Errorf("DISCONNECT: %v", err)
		}
	}
	wss.send("DISCONNECT\nreceipt:bye\n\n\x00")
	if f := wss.read(); !containsAll(f, "RECEIPT\n", "receipt-id:bye\n") {
		t.Errorf("wss DISCONNECT: got %q, want RECEIPT bye", f)
	}
	b.stop()
}

// TestBrowserWSS: stomp.js in headless Chromium, on the demo page the real
// broker serves over HTTPS, connects over wss:// (same origin) with a
// self-signed test certificate, subscribes, publishes and gets its message
// back. Chromium accepts exactly that certificate: its SPKI hash is passed
// with --ignore-certificate-errors-spki-list.
func TestBrowserWSS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), browserTestTimeout)
	defer cancel()
	cert := writeE2ECert(t, t.TempDir(), 1)
	b := startTLSBroker(t, cert)
	httpsAddr, admin := listenAttr(t, b, "https"), listenAttr(t, b, "admin")
	requireDemoBuilt(t, b.httpAddr)
	br := startBrowser(t, ctx, chromedp.Flag("ignore-certificate-errors-spki-list", cert.spki()))

	page := br.openTab(t, "wss", "https://"+httpsAddr+"/")
	page.installHarness(t)
	var active bool
	// The page's own chat client must have connected before it is stopped:
	// the wss count below expects its connection as well as the scenario's.
	page.eval(t, `(async () => {
		await e2e.waitFor('the chat client CONNECTED', () => window.stompboxChat.client.connected);
		await window.stompboxChat.client.deactivate();
		return window.stompboxChat.client.active;
	})()`, &active)
	if active {
		t.Fatal("the page's chat client is still active after deactivate()")
	}

	var got struct {
		Location  string   `json:"location"`
		Secure    bool     `json:"secure"`
		BrokerURL string   `json:"brokerURL"`
		SocketURL string   `json:"socketURL"`
		Protocol  string   `json:"protocol"`
		Version   string   `json:"version"`
		Bodies    []string `json:"bodies"`
		Errors    int      `json:"errors"`
	}
	page.eval(t, `(async () => {
		const dest = '/topic/' + e2e.unique('wss');
		const c = await e2e.connect();
		const bodies = [];
		await e2e.subscribe(c, dest, (m) => bodies.push(m.body));
		await e2e.publish(c, { destination: dest, body: 'hello over wss \u2713' });
		await e2e.waitFor('the MESSAGE on ' + dest, () => bodies.length >= 1);
		const result = {
			location: location.href, secure: window.isSecureContext,
			brokerURL: c.brokerURL, socketURL: c.webSocket.url, protocol: c.webSocket.protocol,
			version: c.ev.connected[0].headers.version, bodies: bodies, errors: c.ev.errors.length,
		};
		await e2e.close(c);
		return result;
	})()`, &got)

	wantURL := "wss://" + httpsAddr + "/ws"
	if got.Location != "https://"+httpsAddr+"/" || !got.Secure {
		t.Errorf("page %q (secure context %v), want https://%s/ as a secure context", got.Location, got.Secure, httpsAddr)
	}
	if got.BrokerURL != wantURL || got.SocketURL != wantURL {
		t.Errorf("stomp.js brokerURL %q, WebSocket url %q; want both %s", got.BrokerURL, got.SocketURL, wantURL)
	}
	if got.Protocol != "v12.stomp" || got.Version != "1.2" {
		t.Errorf("subprotocol %q, CONNECTED version %q; want v12.stomp, 1.2", got.Protocol, got.Version)
	}
	if len(got.Bodies) != 1 || got.Bodies[0] != "hello over wss \u2713" || got.Errors != 0 {
		t.Errorf("received %q with %d ERROR frames, want the one message and no ERROR", got.Bodies, got.Errors)
	}

	// The broker saw secure WebSocket connections only (the page's own chat
	// client and the scenario's).
	samples := adminSamples(t, admin)
	if n, _ := strconv.Atoi(samples[`stompbox_connections_accepted_total{transport="wss"}`]); n < 2 {
		t.Errorf(`stompbox_connections_accepted_total{transport="wss"} = %q, want at least 2`, samples[`stompbox_connections_accepted_total{transport="wss"}`])
	}
	if n := samples[`stompbox_connections_accepted_total{transport="ws"}`]; n != "" && n != "0" {
		t.Errorf(`stompbox_connections_accepted_total{transport="ws"} = %s, want 0: the page used plain ws`, n)
	}

	br.close()
	b.stop()
}
