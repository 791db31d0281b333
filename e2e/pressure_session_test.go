//go:build e2e

package e2e

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/golang-jwt/jwt/v5"
)

// Sessions under pressure from their own credentials: they end when their
// token expires or their rights are reloaded away, one address's failed
// logins cannot starve everyone's, an anonymous-only server explains why
// it refuses credentials, and heart-beats come as often as a client asks.

// expectRetryableError requires an ERROR with code and retryable:true,
// then the connection closed (1008 over WebSocket).
func (c *authConn) expectRetryableError(code string) authFrame {
	c.t.Helper()
	f := c.read()
	if f.command != "ERROR" || f.headers["error-code"] != code || f.headers["retryable"] != "true" {
		c.t.Fatalf("%s: got %s, want ERROR error-code:%s retryable:true", c.transport, f, code)
	}
	c.expectClosed(ws.StatusPolicyViolation)
	return f
}

// A JWT session ends at the token's exp (leeway 0 here) with ERROR
// token-expired, retryable: over TCP, over WebSocket (close 1008) with the
// token in CONNECT, and with the token on the upgrade request.
func TestSessionTokenExpiry(t *testing.T) {
	t.Parallel()
	secret := randomHex(t)
	key := jwtKey{method: jwt.SigningMethodHS256, key: []byte(secret)}
	file := writeFile(t, t.TempDir(), "secret", []byte(secret))
	b := startAuthBroker(t, "-auth-jwt-secret-file", file, "-auth-jwt-audience", authAudience,
		"-auth-jwt-leeway", "0s", "-auth-token-query", "access_token")
	tests := []struct {
		name string
		dial func(t *testing.T, token string) *authConn
	}{
		{"tcp", func(t *testing.T, token string) *authConn {
			return authSession(t, b, overTCP, "passcode:"+token)
		}},
		{"ws, token in CONNECT", func(t *testing.T, token string) *authConn {
			return authSession(t, b, overWS, "passcode:"+token)
		}},
		{"ws, token on the upgrade", func(t *testing.T, token string) *authConn {
			c, status, body, err := dialAuthWS(t, "ws://"+b.httpAddr+"/ws?access_token="+url.QueryEscape(token), nil)
			if err != nil {
				t.Fatalf("upgrade: %v (HTTP %d %q)", err, status, body)
			}
			if f := c.connect(); f.command != "CONNECTED" {
				t.Fatalf("CONNECT after the upgrade: %s", f)
			}
			return c
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			exp := time.Now().Add(2 * time.Second).Unix()
			c := tt.dial(t, key.sign(t, tokenClaims("expiring", jwt.MapClaims{"exp": exp, "subscribe": []string{"/queue/whatever"}})))
			c.do(subscribeFrame("1", "/queue/whatever"), "sub-1") // the session works until then
			f := c.expectRetryableError("token-expired")
			if now := time.Now(); now.Before(time.Unix(exp, 0)) || now.After(time.Unix(exp, 0).Add(3*time.Second)) {
				t.Errorf("closed at %v, want at the token's exp %v", now.Format(time.RFC3339Nano), time.Unix(exp, 0))
			}
			if !strings.Contains(f.body, "expired at") {
				t.Errorf("ERROR body %q does not say when the token expired", f.body)
			}
		})
	}
	t.Cleanup(func() {
		if m := authMetrics(t, b); !strings.Contains(m, `stompbox_disconnects_total{reason="token-expired"} 3`) {
			t.Errorf("metrics: want 3 token-expired disconnects:\n%s", grepLines(m, "disconnects_total"))
		}
		b.stop()
	})
}

// grepLines returns the lines of text that contain want.
func grepLines(text, want string) string {
	var out []string
	for l := range strings.SplitSeq(text, "\n") {
		if strings.Contains(l, want) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// A SIGHUP after an ACL change that removes alice's subscribe right ends
// her open sessions (TCP and WebSocket) with ERROR forbidden; bob, whose
// rights did not change, goes on.
func TestSessionReauthorizeOnSIGHUP(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	const alicePW, bobPW = "alice-reauth-e2e", "bob-reauth-e2e"
	writeUsers(t, users, "alice", "", alicePW)
	writeUsers(t, users, "bob", "", bobPW)
	const bobRule = "  - users: [bob]\n    publish: [\"/queue/b\"]\n    subscribe: [\"/queue/b\"]\n"
	acl := writeFile(t, dir, "acl.yaml", []byte("rules:\n  - users: [alice]\n    subscribe: [\"/queue/a\"]\n"+bobRule))
	b := startAuthBroker(t, "-auth-users-file", users, "-auth-acl-file", acl)

	alice := map[string]*authConn{}
	for _, tr := range authTransports {
		alice[tr] = authSession(t, b, tr, "login:alice", "passcode:"+alicePW)
		alice[tr].do(subscribeFrame("a", "/queue/a"), "sub-a")
	}
	bob := authSession(t, b, overTCP, "login:bob", "passcode:"+bobPW)
	bob.do(subscribeFrame("b", "/queue/b"), "sub-b")

	// alice keeps a rule (and so her virtual host), but not /queue/a.
	replaceFile(t, acl, []byte("rules:\n  - users: [alice]\n    publish: [\"/queue/a\"]\n"+bobRule))
	sighup(t, b, 2)
	for _, tr := range authTransports {
		f := alice[tr].expectError("forbidden")
		if !strings.Contains(f.body, "/queue/a") {
			t.Errorf("%s: ERROR body %q does not name the subscription's destination", tr, f.body)
		}
	}
	bob.send(sendFrame("/queue/b", "still here", "r"))
	got := map[string]bool{}
	for range 2 {
		got[bob.read().command] = true
	}
	if !got["MESSAGE"] || !got["RECEIPT"] {
		t.Fatalf("bob after the reload: got %v, want MESSAGE and RECEIPT", got)
	}
	if !strings.Contains(b.log.String(), "re-authorizing open sessions") {
		t.Error("the log does not say open sessions were re-authorized")
	}
	requireNoSecrets(t, b, alicePW, bobPW)
	b.stop()
}

// dialFrom connects to addr from the local IP from (127.0.0.2 is another
// loopback address: another client as far as the broker can tell).
func dialFrom(t *testing.T, from, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	d := net.Dialer{Timeout: authTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, from, err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	return nc, bufio.NewReader(nc)
}

// loginFrom CONNECTs as user from the local IP from and returns the
// answer and how long it took.
func loginFrom(t *testing.T, from, addr, user, password string) (authFrame, time.Duration) {
	t.Helper()
	nc, r := dialFrom(t, from, addr)
	start := time.Now()
	_ = nc.SetDeadline(start.Add(authTimeout))
	if _, err := io.WriteString(nc, connectFrame("login:"+user, "passcode:"+password)); err != nil {
		t.Fatal(err)
	}
	s, err := r.ReadString(0)
	if err != nil {
		t.Fatalf("CONNECT as %s from %s: %v", user, from, err)
	}
	return parseAuthFrame(s), time.Since(start)
}

// After auth.failure_backoff_after bad passwords from one address, its
// further attempts (even the right password) are answered at once,
// without the failure delay or a bcrypt check, with a retryable auth-failed
// that says when to retry; while that address keeps hammering, a good
// user from another address still connects promptly.
func TestSessionAuthFailureBackoff(t *testing.T) {
	t.Parallel()
	const delay = time.Second // auth.failure_delay: what a checked failure costs
	users := filepath.Join(t.TempDir(), "users")
	const alicePW = "alice-backoff-e2e"
	writeUsers(t, users, "alice", "", alicePW)
	acl := writeFile(t, t.TempDir(), "acl.yaml", []byte("rules:\n  - users: [alice]\n    subscribe: [\"/queue/a\"]\n"))
	b := startAuthBroker(t, "-auth-users-file", users, "-auth-acl-file", acl,
		"-auth-failure-delay", delay.String(), "-auth-failure-backoff-after", "3", "-auth-failure-backoff-max", "30s")

	for i := range 3 {
		f, took := loginFrom(t, "127.0.0.1", b.addr, "alice", "wrong")
		if f.command != "ERROR" || f.headers["error-code"] != "auth-failed" || f.headers["retryable"] != "false" {
			t.Fatalf("bad password %d: %s, want auth-failed retryable:false", i, f)
		}
		if took < delay-100*time.Millisecond {
			t.Errorf("bad password %d answered after %v, before auth.failure_delay", i, took)
		}
	}
	f, took := loginFrom(t, "127.0.0.1", b.addr, "alice", alicePW)
	if f.command != "ERROR" || f.headers["error-code"] != "auth-failed" || f.headers["retryable"] != "true" ||
		!strings.Contains(f.body, "too many failed logins from your address; retry in") {
		t.Fatalf("attempt after 3 failures: %s, want a retryable auth-failed saying when to retry", f)
	}
	if took > delay/2 {
		t.Errorf("backoff answer took %v, want it at once (well under the %v failure delay)", took, delay)
	}

	// 127.0.0.1 keeps hammering (each answer immediate) while alice logs in
	// from 127.0.0.2 five times.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				select {
				case <-stop:
					return
				default:
				}
				d := net.Dialer{Timeout: time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.1")}}
				nc, err := d.Dial("tcp", b.addr)
				if err != nil {
					continue
				}
				_ = nc.SetDeadline(time.Now().Add(2 * time.Second))
				_, _ = io.WriteString(nc, connectFrame("login:alice", "passcode:wrong-"+strconv.Itoa(i)))
				_, _ = bufio.NewReader(nc).ReadString(0)
				_ = nc.Close()
			}
		}()
	}
	for i := range 5 {
		f, took := loginFrom(t, "127.0.0.2", b.addr, "alice", alicePW)
		if f.command != "CONNECTED" {
			t.Errorf("good login %d from 127.0.0.2: %s", i, f)
		}
		if took > 2*time.Second {
			t.Errorf("good login %d from 127.0.0.2 took %v while 127.0.0.1 was backing off", i, took)
		}
	}
	close(stop)
	wg.Wait()
	requireNoSecrets(t, b, alicePW)
	b.stop()
}

// A broker with only auth.anonymous tells a client that sends credentials
// why it refuses them.
func TestSessionAnonymousOnlyExplains(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	for _, tr := range authTransports {
		c := dialAuth(t, b, tr)
		f := c.connect("login:alice", "passcode:secret-anon-e2e")
		c.checkError(f, "auth-failed")
		if !strings.Contains(f.body, "this server accepts only anonymous clients; no users are configured: connect without login and passcode") {
			t.Errorf("%s: ERROR body %q, want the anonymous-only explanation", tr, f.body)
		}
		authSession(t, b, tr) // without credentials: accepted
	}
	b.stop()
}

// heart-beat:1000,1000 against the real binary's defaults (interval 10s,
// min_interval 1s): CONNECTED says 1000,10000 and an EOL arrives about
// every second (2 to 5 in 3.5s).
func TestSessionHeartbeatOneSecond(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	nc, err := net.DialTimeout("tcp", b.addr, authTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	r := bufio.NewReader(nc)
	_ = nc.SetDeadline(time.Now().Add(authTimeout))
	if _, err := io.WriteString(nc, "CONNECT\naccept-version:1.2\nheart-beat:1000,1000\n\n\x00"); err != nil {
		t.Fatal(err)
	}
	s, err := r.ReadString(0)
	if err != nil {
		t.Fatal(err)
	}
	if f := parseAuthFrame(s); f.command != "CONNECTED" || f.headers["heart-beat"] != "1000,10000" {
		t.Fatalf("got %s, want CONNECTED heart-beat:1000,10000", f)
	}
	end := time.Now().Add(3500 * time.Millisecond)
	_ = nc.SetReadDeadline(end)
	beats := 0
	for range 1000 {
		c, err := r.ReadByte()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			break
		}
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if c != '\n' {
			t.Fatalf("byte %q, want only heart-beat EOLs", c)
		}
		beats++
	}
	if beats < 2 || beats > 5 {
		t.Errorf("%d heart-beats in 3.5s, want about 3 (one a second)", beats)
	}
	b.stop()
}
