package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// testCert is a self-signed certificate for 127.0.0.1 written to PEM files.
type testCert struct {
	certFile, keyFile string
	pool              *x509.CertPool // trusts exactly this certificate
	serial            int64
}

// writeTestCert creates a certificate valid for 127.0.0.1 with serial and
// writes it (over any earlier one) to dir/cert.pem and dir/key.pem.
func writeTestCert(t testing.TB, dir string, serial int64) testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "stompbox test " + strconv.FormatInt(serial, 10)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour).Truncate(time.Second),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	tc := testCert{certFile: filepath.Join(dir, "cert.pem"), keyFile: filepath.Join(dir, "key.pem"), pool: x509.NewCertPool(), serial: serial}
	writePEM(t, tc.certFile, "CERTIFICATE", der)
	writePEM(t, tc.keyFile, "PRIVATE KEY", keyDER)
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	tc.pool.AddCert(leaf)
	return tc
}

func writePEM(t testing.TB, path, kind string, der []byte) {
	t.Helper()
	tmp := path + ".tmp" // renamed into place, as certificate managers do
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// startTLSServer serves native STOMP over TLS and HTTPS/WSS with cert.
func startTLSServer(t *testing.T, cert *Certificate, cfg Config) (stompAddr, wssURL string, srv *testServer) {
	t.Helper()
	cfg.Certificate = cert
	srv = startServer(t, cfg)
	for _, serve := range []func(net.Listener) error{srv.ServeTLS, srv.ServeWebTLS} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- serve(ln) }()
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = srv.Shutdown(ctx)
			if err := <-served; !errors.Is(err, ErrServerClosed) {
				t.Errorf("TLS serve returned %v, want ErrServerClosed", err)
			}
		})
		if stompAddr == "" {
			stompAddr = ln.Addr().String()
		} else {
			wssURL = "wss://" + ln.Addr().String() + "/ws"
		}
	}
	return stompAddr, wssURL, srv
}

// dialSTOMPTLS connects go-stomp over TLS and returns the client and the
// serial of the certificate the server presented.
func dialSTOMPTLS(t *testing.T, addr string, pool *x509.CertPool) (*stomp.Conn, int64) {
	t.Helper()
	nc, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatalf("TLS dial: %v", err)
	}
	conn, err := stomp.Connect(nc, stomp.ConnOpt.HeartBeat(0, 0))
	if err != nil {
		t.Fatalf("STOMP over TLS: %v", err)
	}
	t.Cleanup(func() { _ = conn.MustDisconnect() })
	return conn, nc.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

func TestTLSStompAndWSS(t *testing.T) {
	tc := writeTestCert(t, t.TempDir(), 1)
	cert, err := LoadCertificate(tc.certFile, tc.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	stompAddr, wssURL, srv := startTLSServer(t, cert, Config{})
	admin := startAdmin(t, srv.Server)

	// go-stomp over TLS: publish to a queue...
	conn, serial := dialSTOMPTLS(t, stompAddr, tc.pool)
	if serial != 1 {
		t.Fatalf("server presented serial %d, want 1", serial)
	}
	if err := conn.Send("/queue/tls", "text/plain", []byte("over tls"), stomp.SendOpt.Receipt); err != nil {
		t.Fatal(err)
	}
	// ...and a gobwas/ws client over wss consumes it.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	wsc, _, _, err := ws.Dialer{Protocols: []string{"v12.stomp"}, TLSConfig: &tls.Config{RootCAs: tc.pool}}.Dial(ctx, wssURL)
	if err != nil {
		t.Fatalf("wss dial: %v", err)
	}
	defer wsc.Close()
	for _, f := range []string{
		frame("CONNECT", "", "accept-version:1.2", "host:test"),
		frame("SUBSCRIBE", "", "id:1", "destination:/queue/tls"),
	} {
		if err := wsutil.WriteClientText(wsc, []byte(f)); err != nil {
			t.Fatal(err)
		}
	}
	readWS(t, wsc) // CONNECTED
	if msg, _ := readWS(t, wsc); !containsAll(string(msg), "MESSAGE\n", "destination:/queue/tls", "\n\nover tls\x00") {
		t.Fatalf("wss consumer got %q", msg)
	}
	checkSamples(t, scrapeUntil(t, admin, `stompbox_connections{transport="wss"}`, "1"), map[string]string{
		`stompbox_connections{transport="tls"}`:                "1",
		`stompbox_connections_accepted_total{transport="tls"}`: "1",
		`stompbox_connections_accepted_total{transport="tcp"}`: "0",
		`stompbox_connections_accepted_total{transport="wss"}`: "1",
		"stompbox_tls_certificate_expiry_timestamp_seconds":    strconv.FormatFloat(float64(cert.Leaf().NotAfter.Unix()), 'g', -1, 64),
	})

	// Plain text on the TLS port gets no STOMP session.
	plain := dialRaw(t, stompAddr)
	plain.send(frame("CONNECT", "", "accept-version:1.2", "host:test"))
	plain.expectClosed(5 * time.Second)

	// Plain HTTP on the HTTPS port is refused by the TLS layer.
	client := &http.Client{Timeout: 5 * time.Second}
	if resp, err := client.Get("http://" + wssURL[len("wss://"):]); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP to the HTTPS listener: %d, want 400 (Go's answer to HTTP on a TLS port) or an error", resp.StatusCode)
		}
	}
}

// TestTLSCertificateReload: a reload swaps the certificate for new
// handshakes, keeps connections open, and a broken file keeps the old one.
func TestTLSCertificateReload(t *testing.T) {
	dir := t.TempDir()
	first := writeTestCert(t, dir, 1)
	cert, err := LoadCertificate(first.certFile, first.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	stompAddr, _, srv := startTLSServer(t, cert, Config{})
	admin := startAdmin(t, srv.Server)
	old, serial := dialSTOMPTLS(t, stompAddr, first.pool)
	if serial != 1 {
		t.Fatalf("serial %d, want 1", serial)
	}

	second := writeTestCert(t, dir, 2)
	if err := cert.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, serial := dialSTOMPTLS(t, stompAddr, second.pool); serial != 2 {
		t.Fatalf("after reload: serial %d, want 2", serial)
	}
	if err := old.Send("/queue/reload", "text/plain", []byte("still here"), stomp.SendOpt.Receipt); err != nil {
		t.Fatalf("connection opened before the reload: %v", err)
	}

	if err := os.WriteFile(second.keyFile, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cert.Reload(); err == nil {
		t.Fatal("reload of a broken key succeeded")
	}
	if _, serial := dialSTOMPTLS(t, stompAddr, second.pool); serial != 2 {
		t.Fatalf("after a failed reload: serial %d, want 2 (kept)", serial)
	}
	_, body := get(t, admin+"/metrics")
	checkSamples(t, body, map[string]string{
		`stompbox_tls_certificate_reloads_total{result="success"}`: "1",
		`stompbox_tls_certificate_reloads_total{result="failure"}`: "1",
	})
}

func TestTLSMinVersion(t *testing.T) {
	tc := writeTestCert(t, t.TempDir(), 1)
	cert, err := LoadCertificate(tc.certFile, tc.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	stompAddr, _, _ := startTLSServer(t, cert, Config{TLSMinVersion: tls.VersionTLS13})
	_, err = tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", stompAddr,
		&tls.Config{RootCAs: tc.pool, MaxVersion: tls.VersionTLS12})
	if err == nil {
		t.Fatal("TLS 1.2 client accepted with TLSMinVersion 1.3")
	}
	nc, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", stompAddr, &tls.Config{RootCAs: tc.pool})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if v := nc.ConnectionState().Version; v != tls.VersionTLS13 {
		t.Fatalf("negotiated %x, want TLS 1.3", v)
	}
}

func TestLoadCertificateErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadCertificate(filepath.Join(dir, "missing.pem"), filepath.Join(dir, "missing.key")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing files: %v", err)
	}
	srv := New(Config{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.ServeTLS(ln); !errors.Is(err, errNoCertificate) {
		t.Fatalf("ServeTLS without a certificate: %v", err)
	}
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
