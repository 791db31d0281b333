//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/golang-jwt/jwt/v5"
)

// Helpers of auth_test.go: a raw STOMP client over TCP or WebSocket, token
// minting, users files written by `stompbox passwd`, and the checks that
// no secret reaches the log or /metrics.

const (
	// authTimeout bounds every dial, read and write of the auth tests.
	authTimeout = 5 * time.Second
	// authQuiet is how long a subscriber that must get nothing is watched.
	authQuiet = 500 * time.Millisecond
	// authAudience is the aud the JWT brokers require.
	authAudience = "stompbox-e2e"
)

// The two transports every case runs over.
const (
	overTCP = "tcp"
	overWS  = "ws"
)

var authTransports = []string{overTCP, overWS}

// authFrame is one STOMP frame the broker sent.
type authFrame struct {
	command string
	headers map[string]string // the first value of each header, unescaped
	body    string
}

func (f authFrame) String() string {
	out := f.command
	for k, v := range f.headers {
		out += " " + k + ":" + v
	}
	return out + " body=" + f.body
}

// parseAuthFrame splits "COMMAND\nk:v\n...\n\nbody\x00".
func parseAuthFrame(s string) authFrame {
	s = strings.TrimSuffix(strings.TrimLeft(s, "\r\n"), "\x00")
	head, body, _ := strings.Cut(s, "\n\n")
	lines := strings.Split(strings.ReplaceAll(head, "\r\n", "\n"), "\n")
	f := authFrame{command: lines[0], headers: map[string]string{}, body: body}
	unescape := strings.NewReplacer(`\r`, "\r", `\n`, "\n", `\c`, ":", `\\`, `\`)
	for _, l := range lines[1:] {
		k, v, _ := strings.Cut(l, ":")
		if _, dup := f.headers[k]; !dup {
			f.headers[k] = unescape.Replace(v)
		}
	}
	return f
}

// authConn is a raw STOMP 1.2 client over TCP or WebSocket (subprotocol
// v12.stomp, one frame per text message).
type authConn struct {
	t         *testing.T
	transport string
	nc        net.Conn
	r         *bufio.Reader // TCP: frames end with NUL
	wsr       io.Reader     // WebSocket: the handshake's reader, or nc
}

// dialAuth opens a connection to b over transport (no CONNECT yet).
func dialAuth(t *testing.T, b *brokerProc, transport string) *authConn {
	t.Helper()
	if transport == overWS {
		c, status, body, err := dialAuthWS(t, "ws://"+b.httpAddr+"/ws", nil)
		if err != nil {
			t.Fatalf("WebSocket upgrade: %v (HTTP %d %q)", err, status, body)
		}
		return c
	}
	nc, err := net.DialTimeout("tcp", b.addr, authTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	return &authConn{t: t, transport: overTCP, nc: nc, r: bufio.NewReader(nc)}
}

// dialAuthWS upgrades url with the STOMP 1.2 subprotocol and header. A
// refused upgrade returns the error (ws.StatusError), status and body.
func dialAuthWS(t *testing.T, url string, header http.Header) (c *authConn, status int, body string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), authTimeout)
	defer cancel()
	d := ws.Dialer{Protocols: []string{"v12.stomp"}, OnStatusError: func(code int, _ []byte, resp io.Reader) {
		status = code
		if res, rerr := http.ReadResponse(bufio.NewReader(resp), nil); rerr == nil {
			b, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
			body = res.Header.Get("WWW-Authenticate") + "\n" + string(b)
		}
	}}
	if header != nil {
		d.Header = ws.HandshakeHeaderHTTP(header)
	}
	nc, br, hs, err := d.Dial(ctx, url)
	if err != nil {
		return nil, status, body, err
	}
	t.Cleanup(func() { _ = nc.Close() })
	if hs.Protocol != "v12.stomp" {
		t.Fatalf("%s: subprotocol %q, want v12.stomp", url, hs.Protocol)
	}
	c = &authConn{t: t, transport: overWS, nc: nc, wsr: nc}
	if br != nil {
		c.wsr = br // it reads on from nc once its buffer is drained
	}
	return c, http.StatusSwitchingProtocols, "", nil
}

func (c *authConn) send(frame string) {
	c.t.Helper()
	_ = c.nc.SetWriteDeadline(time.Now().Add(authTimeout))
	var err error
	if c.transport == overWS {
		err = wsutil.WriteClientText(c.nc, []byte(frame))
	} else {
		_, err = io.WriteString(c.nc, frame)
	}
	if err != nil {
		c.t.Fatalf("%s write: %v", c.transport, err)
	}
}

// next reads the next frame within d, skipping heart-beats. Over
// WebSocket a close frame is a wsutil.ClosedError.
func (c *authConn) next(d time.Duration) (authFrame, error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(d))
	for range 100 {
		var s string
		if c.transport == overWS {
			data, _, err := wsutil.ReadServerData(struct {
				io.Reader
				io.Writer
			}{c.wsr, c.nc})
			if err != nil {
				return authFrame{}, err
			}
			s = string(data)
		} else {
			var err error
			if s, err = c.r.ReadString(0); err != nil {
				return authFrame{}, err
			}
		}
		if strings.TrimLeft(s, "\r\n") != "" {
			return parseAuthFrame(s), nil
		}
	}
	return authFrame{}, errors.New("only heart-beats")
}

// read returns the next frame or fails the test.
func (c *authConn) read() authFrame {
	c.t.Helper()
	f, err := c.next(authTimeout)
	if err != nil {
		c.t.Fatalf("%s read: %v", c.transport, err)
	}
	return f
}

// expect reads the next frame and requires its command.
func (c *authConn) expect(command string) authFrame {
	c.t.Helper()
	f := c.read()
	if f.command != command {
		c.t.Fatalf("%s: got %s, want %s", c.transport, f, command)
	}
	return f
}

// expectError reads the next frame and checks it with checkError.
func (c *authConn) expectError(code string) authFrame {
	c.t.Helper()
	return c.checkError(c.read(), code)
}

// checkError requires f to be an ERROR with error-code code and
// retryable:false, then the connection to close: EOF over TCP, a close
// frame with code 1008 (policy) over WebSocket.
func (c *authConn) checkError(f authFrame, code string) authFrame {
	c.t.Helper()
	if f.command != "ERROR" || f.headers["error-code"] != code || f.headers["retryable"] != "false" {
		c.t.Errorf("%s: got %s, want ERROR error-code:%s retryable:false", c.transport, f, code)
		return f
	}
	c.expectClosed(1008)
	return f
}

// expectClosed requires the broker to close the connection (bounded);
// over WebSocket with wsCode.
func (c *authConn) expectClosed(wsCode ws.StatusCode) {
	c.t.Helper()
	f, err := c.next(authTimeout)
	var closed wsutil.ClosedError
	switch {
	case err == nil:
		c.t.Fatalf("%s: got %s, want the connection closed", c.transport, f)
	case c.transport == overWS && errors.As(err, &closed):
		if closed.Code != wsCode {
			c.t.Errorf("ws: close code %d (%q), want %d", closed.Code, closed.Reason, wsCode)
		}
	case c.transport == overWS:
		c.t.Errorf("ws: %v, want a close frame with code %d", err, wsCode)
	case !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET):
		c.t.Errorf("tcp: %v, want EOF", err)
	}
}

// expectQuiet requires that nothing arrives within authQuiet.
func (c *authConn) expectQuiet(what string) {
	c.t.Helper()
	f, err := c.next(authQuiet)
	var ne net.Error
	switch {
	case err == nil:
		c.t.Errorf("%s: %s got %s, want nothing", c.transport, what, f)
	case !errors.As(err, &ne) || !ne.Timeout():
		c.t.Errorf("%s: %s: %v, want nothing (a read timeout)", c.transport, what, err)
	}
}

// connectFrame is a STOMP 1.2 CONNECT with heart-beats off and headers
// ("name:value"; no host header unless given).
func connectFrame(headers ...string) string {
	var b strings.Builder
	b.WriteString("CONNECT\naccept-version:1.2\nheart-beat:0,0\n")
	for _, h := range headers {
		b.WriteString(h + "\n")
	}
	b.WriteString("\n\x00")
	return b.String()
}

// connect sends CONNECT with headers and returns the broker's answer.
func (c *authConn) connect(headers ...string) authFrame {
	c.t.Helper()
	c.send(connectFrame(headers...))
	return c.read()
}

// authSession dials b and CONNECTs with headers, requiring CONNECTED.
func authSession(t *testing.T, b *brokerProc, transport string, headers ...string) *authConn {
	t.Helper()
	c := dialAuth(t, b, transport)
	if f := c.connect(headers...); f.command != "CONNECTED" {
		t.Fatalf("%s CONNECT: got %s, want CONNECTED", transport, f) // not the headers: they hold a passcode
	}
	return c
}

// do sends frame (which asks for receipt r) and requires the RECEIPT.
func (c *authConn) do(frame, r string) {
	c.t.Helper()
	c.send(frame)
	if f := c.read(); f.command != "RECEIPT" || f.headers["receipt-id"] != r {
		c.t.Fatalf("%s: %q got %s, want RECEIPT %s", c.transport, strings.SplitN(frame, "\n", 2)[0], f, r)
	}
}

func subscribeFrame(id, dest string) string {
	return "SUBSCRIBE\nid:" + id + "\ndestination:" + dest + "\nreceipt:sub-" + id + "\n\n\x00"
}

// sendFrame is a SEND of body to dest, asking for receipt r unless "".
func sendFrame(dest, body, r string) string {
	if r != "" {
		r = "receipt:" + r + "\n"
	}
	return "SEND\ndestination:" + dest + "\ncontent-type:text/plain\n" + r + "\n" + body + "\x00"
}

// writeUsers adds user with roles and password to the users file at path
// with the real `stompbox passwd` (bcrypt cost 4; the password on stdin).
func writeUsers(t *testing.T, path, user, roles, password string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, stompboxBinary(t), "passwd", "-users-file", path, "-user", user, "-roles", roles, "-cost", "4")
	cmd.Stdin = strings.NewReader(password + "\n")
	cmd.Env = childEnv("halt_on_error=0 exitcode=66 atexit_sleep_ms=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("stompbox passwd -user %s: %v\n%s", user, err, out)
	}
}

// writeFile writes data to a file in dir and returns its path.
func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// jwtKey signs tokens with one algorithm and key.
type jwtKey struct {
	method jwt.SigningMethod
	key    any // []byte, *rsa.PrivateKey or *ecdsa.PrivateKey
	kid    string
}

func (k jwtKey) sign(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(k.method, claims)
	if k.kid != "" {
		tok.Header["kid"] = k.kid
	}
	s, err := tok.SignedString(k.key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// tokenClaims are valid claims for sub, expiring in a minute, with extra
// claims merged in (a nil value deletes one).
func tokenClaims(sub string, extra jwt.MapClaims) jwt.MapClaims {
	c := jwt.MapClaims{"sub": sub, "aud": authAudience, "iat": time.Now().Unix(), "exp": time.Now().Add(time.Minute).Unix()}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

// algNoneToken is an unsigned token: header {"alg":"none"}, the claims, and
// an empty signature, built by hand as an attacker would.
func algNoneToken(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc.EncodeToString(payload) + "."
}

// newKeys returns two RSA 2048 and two P-256 keys: one of each to trust,
// one to forge with.
func newKeys(t *testing.T) (rsa1, rsa2 *rsa.PrivateKey, ec1, ec2 *ecdsa.PrivateKey) {
	t.Helper()
	var errs [4]error
	rsa1, errs[0] = rsa.GenerateKey(rand.Reader, 2048)
	rsa2, errs[1] = rsa.GenerateKey(rand.Reader, 2048)
	ec1, errs[2] = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec2, errs[3] = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err := errors.Join(errs[:]...); err != nil {
		t.Fatal(err)
	}
	return rsa1, rsa2, ec1, ec2
}

// randomHex is 32 random bytes in hex: an HS256 secret of 64 characters.
func randomHex(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// publicKeyPEM is pub as a PEM PUBLIC KEY block.
func publicKeyPEM(t *testing.T, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// ecJWKS is a JWKS document holding pub (P-256) under kid.
func ecJWKS(t *testing.T, pub *ecdsa.PublicKey, kid string) []byte {
	t.Helper()
	point, err := pub.Bytes() // 0x04 || X || Y
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding
	doc, err := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
		"x": enc.EncodeToString(point[1:33]), "y": enc.EncodeToString(point[33:]),
	}}})
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// startAuthBroker is startBroker without anonymous access, logging at
// debug level so that the secrets checks see everything the broker says.
// The per-address failure backoff is off: these tests refuse many
// credentials from 127.0.0.1 on purpose and check each refusal's own
// answer (pressure_session_test.go turns it on to test it).
func startAuthBroker(t *testing.T, flags ...string) *brokerProc {
	t.Helper()
	return startBroker(t, append([]string{"-auth-anonymous=false", "-log-level", "debug", "-auth-failure-backoff-after", "0"}, flags...)...)
}

// authMetrics returns the admin listener's /metrics page.
func authMetrics(t *testing.T, b *brokerProc) string {
	t.Helper()
	client := &http.Client{Timeout: authTimeout}
	res, err := client.Get("http://" + listenAttr(t, b, "admin") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 16<<20))
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s, %v", res.Status, err)
	}
	return string(body)
}

// requireNoSecrets checks that none of secrets occurs in the broker's log
// or on its /metrics page.
func requireNoSecrets(t *testing.T, b *brokerProc, secrets ...string) {
	t.Helper()
	places := map[string]string{"the broker log": b.log.String(), "/metrics": authMetrics(t, b)}
	for where, text := range places {
		for _, s := range secrets {
			if len(s) < 8 {
				t.Fatalf("secret %q is too short to search for meaningfully", s)
			}
			if strings.Contains(text, s) {
				t.Errorf("%s contains a secret (%.12s...)", where, s)
			}
		}
	}
}

// countIn counts the occurrences of want in the broker's log.
func countIn(b *brokerProc, want string) int { return strings.Count(b.log.String(), want) }

// sighup signals b and waits (bounded) until the log shows n more
// "reloaded" or "reload failed" lines than before.
func sighup(t *testing.T, b *brokerProc, n int) {
	t.Helper()
	before := countIn(b, `msg=reloaded `) + countIn(b, `msg="reload failed`)
	if err := b.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(reloadTimeout)
	for countIn(b, `msg=reloaded `)+countIn(b, `msg="reload failed`) < before+n {
		if time.Now().After(deadline) {
			t.Fatalf("no %d reload lines within %v of SIGHUP", n, reloadTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// eventually retries try (bounded by reloadTimeout) until it returns "";
// it fails with try's last answer.
func eventually(t *testing.T, what string, try func() string) {
	t.Helper()
	deadline := time.Now().Add(reloadTimeout)
	for {
		msg := try()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %s after %v", what, msg, reloadTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
