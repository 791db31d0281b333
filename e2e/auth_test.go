//go:build e2e

package e2e

import (
	"errors"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/golang-jwt/jwt/v5"
)

// The security design (docs/security.md) against the real binary over real
// sockets: every case over native TCP and over WebSocket, raw frames.

// TestAuthUsersFile: a users file written by `stompbox passwd`. The right
// password connects; a wrong password and an unknown user get the same
// ERROR auth-failed (retryable:false; WebSocket close 1008), no sooner than
// auth.failure_delay; no password reaches the log or /metrics.
func TestAuthUsersFile(t *testing.T) {
	t.Parallel()
	const delay = 300 * time.Millisecond
	const alicePW, wrongPW, ghostPW = "correct-horse-battery-e2e", "Tr0ub4dor-wrong-e2e", "mallory-guess-e2e"
	users := filepath.Join(t.TempDir(), "users")
	writeUsers(t, users, "alice", "chat", alicePW)
	b := startAuthBroker(t, "-auth-users-file", users, "-auth-failure-delay", delay.String())
	for _, tr := range authTransports {
		t.Run(tr, func(t *testing.T) {
			c := authSession(t, b, tr, "login:alice", "passcode:"+alicePW)
			c.do("DISCONNECT\nreceipt:bye\n\n\x00", "bye")

			refused := map[string]authFrame{}
			for name, creds := range map[string][2]string{
				"WrongPassword": {"alice", wrongPW},
				"UnknownUser":   {"mallory", ghostPW},
				"NoPasscode":    {"alice", ""},
			} {
				c := dialAuth(t, b, tr)
				start := time.Now()
				c.send(connectFrame("login:"+creds[0], "passcode:"+creds[1]))
				f := c.read()
				if elapsed := time.Since(start); elapsed < delay {
					t.Errorf("%s: the ERROR came after %v, want at least auth.failure_delay %v", name, elapsed, delay)
				}
				if refused[name] = c.checkError(f, "auth-failed"); creds[1] != "" && strings.Contains(f.body+f.String(), creds[1]) {
					t.Errorf("%s: the ERROR echoes the passcode", name)
				}
			}
			wrong, unknown := refused["WrongPassword"], refused["UnknownUser"]
			if wrong.headers["message"] == "" || wrong.headers["message"] != unknown.headers["message"] || wrong.body != unknown.body {
				t.Errorf("a wrong password (%s) and an unknown user (%s) must get the same answer", wrong, unknown)
			}
			// Without credentials at all, and no anonymous access: refused too.
			c = dialAuth(t, b, tr)
			c.send(connectFrame())
			c.expectError("auth-failed")
		})
	}
	requireNoSecrets(t, b, alicePW, wrongPW, ghostPW)
	b.stop()
}

// jwtCase is a token given as the CONNECT passcode and the ERROR body it
// must get ("" for CONNECTED).
type jwtCase struct {
	name, token, refusal string
}

// TestAuthJWT: HS256 (secret file), RS256 (PEM keys file) and ES256 (JWKS
// keys file). A valid token as the passcode connects; an expired one, one
// not valid yet, one for another audience or none, one without exp, one
// signed by another key, a tampered one and an alg=none one are refused
// with auth-failed; so is an HS256 token whose "secret" is the RSA public
// key PEM. The tokens' claims grant destinations. No token or secret
// reaches the log or /metrics.
func TestAuthJWT(t *testing.T) {
	t.Parallel()
	secret, otherSecret := randomHex(t), randomHex(t)
	rsaKey, rsaOther, ecKey, ecOther := newKeys(t)
	rsaPEM := publicKeyPEM(t, &rsaKey.PublicKey)
	for _, setup := range []struct {
		name, flag, file string
		data             []byte
		good, other      jwtKey
	}{
		{"HS256", "-auth-jwt-secret-file", "secret", []byte(secret + "\n"),
			jwtKey{method: jwt.SigningMethodHS256, key: []byte(secret)}, jwtKey{method: jwt.SigningMethodHS256, key: []byte(otherSecret)}},
		{"RS256", "-auth-jwt-keys-file", "keys.pem", rsaPEM,
			jwtKey{method: jwt.SigningMethodRS256, key: rsaKey}, jwtKey{method: jwt.SigningMethodRS256, key: rsaOther}},
		{"ES256", "-auth-jwt-keys-file", "jwks.json", ecJWKS(t, &ecKey.PublicKey, "e2e-es"),
			jwtKey{method: jwt.SigningMethodES256, key: ecKey, kid: "e2e-es"}, jwtKey{method: jwt.SigningMethodES256, key: ecOther, kid: "e2e-es"}},
	} {
		t.Run(setup.name, func(t *testing.T) {
			t.Parallel()
			file := writeFile(t, t.TempDir(), setup.file, setup.data)
			b := startAuthBroker(t, setup.flag, file, "-auth-jwt-audience", authAudience, "-auth-failure-delay", "0s")
			now := time.Now()
			good := setup.good.sign(t, tokenClaims("alice", nil))
			head, _, _ := strings.Cut(good, ".")
			_, sig, _ := strings.Cut(good[len(head)+1:], ".")
			granting := algNoneToken(t, tokenClaims("alice", jwt.MapClaims{"publish": []string{"#"}}))
			cases := []jwtCase{
				{"Valid", good, ""},
				{"Expired", setup.good.sign(t, tokenClaims("alice", jwt.MapClaims{"exp": now.Add(-5 * time.Minute).Unix(), "iat": now.Add(-time.Hour).Unix()})), "token expired"},
				{"NotValidYet", setup.good.sign(t, tokenClaims("alice", jwt.MapClaims{"nbf": now.Add(5 * time.Minute).Unix()})), "token not valid yet"},
				{"WrongAudience", setup.good.sign(t, tokenClaims("alice", jwt.MapClaims{"aud": "another-service"})), "wrong audience"},
				{"NoAudience", setup.good.sign(t, tokenClaims("alice", jwt.MapClaims{"aud": nil})), "wrong audience"},
				{"NoExpiry", setup.good.sign(t, tokenClaims("alice", jwt.MapClaims{"exp": nil})), "invalid token"},
				{"OtherKey", setup.other.sign(t, tokenClaims("alice", nil)), "invalid token"},
				{"Tampered", head + "." + strings.Split(granting, ".")[1] + "." + sig, "invalid token"},
				{"AlgNone", algNoneToken(t, tokenClaims("alice", nil)), "invalid token"},
			}
			if setup.name == "RS256" {
				confused := jwtKey{method: jwt.SigningMethodHS256, key: rsaPEM}
				cases = append(cases, jwtCase{"HS256SignedWithThePublicKey", confused.sign(t, tokenClaims("alice", nil)), "invalid token"})
			}
			secrets := []string{secret, otherSecret}
			for _, tr := range authTransports {
				t.Run(tr, func(t *testing.T) {
					for _, tc := range cases {
						secrets = append(secrets, tc.token)
						c := dialAuth(t, b, tr)
						f := c.connect("login:ignored-e2e", "passcode:"+tc.token)
						switch {
						case tc.refusal == "" && f.command != "CONNECTED":
							t.Errorf("%s: got %s, want CONNECTED", tc.name, f)
						case tc.refusal != "":
							if f = c.checkError(f, "auth-failed"); !strings.Contains(f.body, tc.refusal) || strings.Contains(f.String(), tc.token) {
								t.Errorf("%s: ERROR body %q, want %q (and not the token)", tc.name, f.body, tc.refusal)
							}
						}
					}
					secrets = append(secrets, checkTokenGrants(t, b, tr, setup.good)...)
				})
			}
			requireNoSecrets(t, b, secrets...)
			b.stop()
			// -print-config shows the key file's path, never its contents.
			out, errOut, status := runStompbox(t, nil, "-print-config", setup.flag, file, "-auth-jwt-audience", authAudience)
			if status != 0 || !strings.Contains(out, file) || strings.Contains(out+errOut, secret) {
				t.Errorf("-print-config: exit %d; want 0, the path %s and no secret:\n%s%s", status, file, out, errOut)
			}
		})
	}
}

// checkTokenGrants: a token granting subscribe /topic/chat.# and publish
// /topic/chat.room1 may do exactly that; anything else is ERROR forbidden.
// It returns the token.
func checkTokenGrants(t *testing.T, b *brokerProc, tr string, key jwtKey) []string {
	t.Helper()
	tok := key.sign(t, tokenClaims("chatter", jwt.MapClaims{
		"subscribe": []string{"/topic/chat.#"}, "publish": []string{"/topic/chat.room1"}}))
	c := authSession(t, b, tr, "passcode:"+tok)
	c.do(subscribeFrame("1", "/topic/chat.#"), "sub-1")
	c.send(sendFrame("/topic/chat.room1", "granted", ""))
	if m := c.expect("MESSAGE"); m.headers["destination"] != "/topic/chat.room1" || m.body != "granted" {
		t.Errorf("granted SEND delivered %s", m)
	}
	for name, frame := range map[string]string{
		"SendOtherRoom":      sendFrame("/topic/chat.room2", "x", "r"),
		"SendQueue":          sendFrame("/queue/chat.room1", "x", "r"),
		"SubscribeOther":     subscribeFrame("2", "/topic/other"),
		"SubscribeAllTopics": subscribeFrame("3", "/topic/#"),
	} {
		c := authSession(t, b, tr, "passcode:"+tok)
		c.send(frame)
		if f := c.expectError("forbidden"); !strings.Contains(f.body, `"chatter"`) {
			t.Errorf("%s: forbidden body %q does not name the user", name, f.body)
		}
	}
	return []string{tok}
}

// TestAuthACL: users alice (role chat), bob and carol, a rules file, no
// anonymous access. The rule for role chat lets alice publish and
// subscribe /topic/chat.#; bob may only subscribe /queue/reports; carol
// may use /queue/jobs in virtual host tenant-a only. What no rule names
// is denied.
func TestAuthACL(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	pw := map[string]string{"alice": "alice-e2e-password", "bob": "bob-e2e-password", "carol": "carol-e2e-password"}
	writeUsers(t, users, "alice", "chat", pw["alice"])
	writeUsers(t, users, "bob", "", pw["bob"])
	writeUsers(t, users, "carol", "ops", pw["carol"])
	acl := writeFile(t, dir, "acl.yaml", []byte(`rules:
  - roles: [chat]
    publish: ["/topic/chat.#"]
    subscribe: ["/topic/chat.#"]
  - users: [bob]
    subscribe: ["/queue/reports"]
  - users: [carol]
    vhosts: [tenant-a]
    publish: ["/queue/jobs"]
    subscribe: ["/queue/jobs"]
`))
	b := startAuthBroker(t, "-auth-users-file", users, "-auth-acl-file", acl,
		"-virtual-hosts", "tenant-a,tenant-b", "-auth-failure-delay", "0s")
	cases := []struct {
		user, action, dest string
		allow              bool
	}{
		{"alice", "publish", "/topic/chat.room1", true},
		{"alice", "subscribe", "/topic/chat.#", true},
		{"alice", "subscribe", "/topic/chat.room1", true},
		{"alice", "subscribe", "/topic/chat.*", true},
		{"alice", "publish", "/topic/other", false},
		{"alice", "subscribe", "/topic/#", false},
		{"alice", "subscribe", "/queue/reports", false},
		{"alice", "publish", "/queue/chat.room1", false},
		{"bob", "subscribe", "/queue/reports", true},
		{"bob", "publish", "/queue/reports", false},
		{"bob", "subscribe", "/topic/chat.#", false},
		{"bob", "publish", "/topic/chat.room1", false},
		{"alice", "publish", "/queue/nobody.names.this", false}, // default deny
		{"bob", "subscribe", "/topic/nobody.names.this", false},
	}
	for _, tr := range authTransports {
		t.Run(tr, func(t *testing.T) {
			for _, tc := range cases {
				c := authSession(t, b, tr, "login:"+tc.user, "passcode:"+pw[tc.user])
				frame := sendFrame(tc.dest, "acl", "r")
				if tc.action == "subscribe" {
					frame = strings.Replace(subscribeFrame("1", tc.dest), "receipt:sub-1", "receipt:r", 1)
				}
				c.send(frame)
				f := c.read()
				switch {
				case tc.allow && (f.command != "RECEIPT" || f.headers["receipt-id"] != "r"):
					t.Errorf("%s %s %s: got %s, want RECEIPT (allowed)", tc.user, tc.action, tc.dest, f)
				case !tc.allow:
					c.checkError(f, "forbidden")
				}
			}
			c := dialAuth(t, b, tr)
			c.send(connectFrame())
			if f := c.expectError("auth-failed"); !strings.Contains(f.body, "authentication required") {
				t.Errorf("anonymous CONNECT: body %q, want authentication required", f.body)
			}
			// carol: tenant-a only; an unknown host is unknown-host.
			carol := []string{"login:carol", "passcode:" + pw["carol"]}
			authSession(t, b, tr, append(carol, "host:tenant-a")...).do(sendFrame("/queue/jobs", "job", "send"), "send")
			for _, host := range []string{"host:tenant-b", "host:/"} {
				c := dialAuth(t, b, tr)
				if f := c.checkError(c.connect(append(carol, host)...), "forbidden"); !strings.Contains(f.body, "virtual host") {
					t.Errorf("carol CONNECT %s: body %q, want a virtual host refusal", host, f.body)
				}
			}
			c = dialAuth(t, b, tr)
			c.checkError(c.connect(append(carol, "host:tenant-c")...), "unknown-host")
		})
	}
	b.stop()
}

// TestAuthUpgradeToken: a JWT in the WebSocket upgrade, as the
// access_token query parameter or the stompbox_token cookie, authenticates
// a CONNECT without login and passcode. A bad token is HTTP 401 on the
// upgrade, after auth.failure_delay, and neither the 401 nor the log holds
// it; with auth.token_required an upgrade without a token is 401 too.
func TestAuthUpgradeToken(t *testing.T) {
	t.Parallel()
	const delay = 200 * time.Millisecond
	secret := randomHex(t)
	key := jwtKey{method: jwt.SigningMethodHS256, key: []byte(secret)}
	other := jwtKey{method: jwt.SigningMethodHS256, key: []byte(randomHex(t))}
	file := writeFile(t, t.TempDir(), "secret", []byte(secret))
	flags := []string{"-auth-jwt-secret-file", file, "-auth-jwt-audience", authAudience, "-auth-token-query", "access_token",
		"-auth-token-cookie", "stompbox_token", "-auth-failure-delay", delay.String()}
	valid := key.sign(t, tokenClaims("browser", nil))
	forged := other.sign(t, tokenClaims("browser", nil))
	expired := key.sign(t, tokenClaims("browser", jwt.MapClaims{"exp": time.Now().Add(-time.Hour).Unix()}))
	cookie := func(tok string) http.Header { return http.Header{"Cookie": {"stompbox_token=" + tok}} }
	query := func(b *brokerProc, tok string) string {
		return "ws://" + b.httpAddr + "/ws?access_token=" + url.QueryEscape(tok)
	}
	refused := func(t *testing.T, name, u string, h http.Header, tok string, wantDelay bool) {
		t.Helper()
		start := time.Now()
		_, status, body, err := dialAuthWS(t, u, h)
		var se ws.StatusError
		if !errors.As(err, &se) || int(se) != http.StatusUnauthorized || status != http.StatusUnauthorized {
			t.Errorf("%s: upgrade %v (HTTP %d), want ws.StatusError 401", name, err, status)
		}
		if wantDelay && time.Since(start) < delay {
			t.Errorf("%s: 401 after %v, want at least auth.failure_delay %v", name, time.Since(start), delay)
		}
		if !strings.HasPrefix(body, "Bearer") || (tok != "" && strings.Contains(body, tok)) {
			t.Errorf("%s: 401 %q: want WWW-Authenticate Bearer and no token", name, body)
		}
	}

	b := startAuthBroker(t, flags...)
	for name, dial := range map[string]func() (*authConn, int, string, error){
		"Query":  func() (*authConn, int, string, error) { return dialAuthWS(t, query(b, valid), nil) },
		"Cookie": func() (*authConn, int, string, error) { return dialAuthWS(t, "ws://"+b.httpAddr+"/ws", cookie(valid)) },
	} {
		c, status, body, err := dial()
		if err != nil {
			t.Fatalf("%s: upgrade with a valid token: %v (HTTP %d %q)", name, err, status, body)
		}
		if f := c.connect(); f.command != "CONNECTED" {
			t.Errorf("%s: CONNECT without credentials after a token upgrade: %s, want CONNECTED", name, f)
		}
	}
	// The upgrade token's claims grant destinations as a passcode's do.
	granting := key.sign(t, tokenClaims("browser", jwt.MapClaims{"publish": []string{"/topic/browser.#"}}))
	for dest, allowed := range map[string]bool{"/topic/browser.x": true, "/topic/other": false} {
		c, _, _, err := dialAuthWS(t, query(b, granting), nil)
		if err != nil {
			t.Fatal(err)
		}
		if f := c.connect(); f.command != "CONNECTED" {
			t.Fatalf("CONNECT after a granting token: %s", f)
		}
		if c.send(sendFrame(dest, "b", "r")); allowed {
			c.expect("RECEIPT")
		} else {
			c.expectError("forbidden")
		}
	}
	refused(t, "QueryForged", query(b, forged), nil, forged, true)
	refused(t, "QueryExpired", query(b, expired), nil, expired, true)
	refused(t, "CookieForged", "ws://"+b.httpAddr+"/ws", cookie(forged), forged, true)
	// A CONNECT with its own credentials is checked on its own.
	c, _, _, err := dialAuthWS(t, query(b, valid), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.checkError(c.connect("passcode:"+forged), "auth-failed")
	// Not required: an upgrade without a token is let through, but its
	// CONNECT needs credentials (no anonymous access here).
	c = dialAuth(t, b, overWS)
	c.checkError(c.connect(), "auth-failed")
	if log := b.log.String(); strings.Contains(log, "access_token=") {
		t.Errorf("the broker logged a request URL with its query")
	}
	requireNoSecrets(t, b, secret, valid, forged, expired, granting)
	b.stop()

	b = startAuthBroker(t, append(flags, "-auth-token-required")...)
	refused(t, "RequiredNoToken", "ws://"+b.httpAddr+"/ws", nil, "", false)
	refused(t, "RequiredForged", query(b, forged), nil, forged, true)
	c, status, body, err := dialAuthWS(t, query(b, valid), nil)
	if err != nil {
		t.Fatalf("token required: upgrade with a valid token: %v (HTTP %d %q)", err, status, body)
	}
	if f := c.connect(); f.command != "CONNECTED" {
		t.Errorf("token required: CONNECT after a valid token: %s, want CONNECTED", f)
	}
	requireNoSecrets(t, b, secret, valid, forged)
	b.stop()
}

// TestAuthVirtualHosts: with virtual hosts tenant-a and tenant-b (and
// anonymous access), /topic/x and /queue/jobs of one tenant are not the
// other's: a message published in tenant-a reaches only tenant-a, and
// back. An unconfigured host is ERROR unknown-host.
func TestAuthVirtualHosts(t *testing.T) {
	t.Parallel()
	b := startBroker(t, "-virtual-hosts", "tenant-a,tenant-b")
	for _, tr := range authTransports {
		t.Run(tr, func(t *testing.T) {
			subs := map[string]*authConn{}
			for _, host := range []string{"tenant-a", "tenant-b"} {
				c := authSession(t, b, tr, "host:"+host)
				c.do(subscribeFrame("t", "/topic/x"), "sub-t")
				c.do(subscribeFrame("q", "/queue/jobs"), "sub-q")
				subs[host] = c
			}
			for _, from := range [][2]string{{"tenant-a", "tenant-b"}, {"tenant-b", "tenant-a"}} {
				pub := authSession(t, b, tr, "host:"+from[0])
				pub.do(sendFrame("/topic/x", "topic from "+from[0], "send"), "send")
				pub.do(sendFrame("/queue/jobs", "job from "+from[0], "send"), "send")
				got := map[string]string{}
				for range 2 {
					m := subs[from[0]].expect("MESSAGE")
					got[m.headers["destination"]] = m.body
				}
				if got["/topic/x"] != "topic from "+from[0] || got["/queue/jobs"] != "job from "+from[0] {
					t.Errorf("%s subscriber got %v, want its own tenant's two messages", from[0], got)
				}
				subs[from[1]].expectQuiet("a message published in " + from[0])
			}
			c := dialAuth(t, b, tr)
			c.checkError(c.connect("host:tenant-c"), "unknown-host")
		})
	}
	b.stop()
}

// TestAuthStartupRefusal: without any authentication configured the
// binary exits 2, says so, and never listens.
func TestAuthStartupRefusal(t *testing.T) {
	t.Parallel()
	for name, args := range map[string][]string{
		"Flags":      {"-auth-anonymous=false"},
		"ConfigFile": {"-auth-anonymous=false", "-config", writeConfig(t, "auth:\n  acl_file: /nonexistent/acl.yaml\n")},
	} {
		args = append(args, "-listen", "127.0.0.1:0", "-http-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0")
		stdout, stderr, status := runStompbox(t, nil, args...)
		if status != 2 || !strings.Contains(stderr, "no authentication configured") {
			t.Errorf("%s: exit %d, stderr %q; want 2 and \"no authentication configured\"", name, status, stderr)
		}
		if strings.Contains(stdout+stderr, "listening") {
			t.Errorf("%s: the refused broker listened:\n%s%s", name, stdout, stderr)
		}
	}
}

// TestAuthReloadOnSIGHUP: a user added with `stompbox passwd` to the
// running broker's users file can connect after SIGHUP; a changed rules
// file grants and revokes after SIGHUP; a broken one keeps the rules.
func TestAuthReloadOnSIGHUP(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	const alicePW, davePW = "alice-reload-e2e", "dave-reload-e2e"
	writeUsers(t, users, "alice", "chat", alicePW)
	// dave has a rule before he has a password: a user no rule applies to
	// may use no virtual host, so could not even connect.
	const daveRule = "  - users: [dave]\n    subscribe: [\"/topic/dave.#\"]\n"
	acl := writeFile(t, dir, "acl.yaml", []byte("rules:\n  - users: [alice]\n    publish: [\"/topic/chat.#\"]\n"+daveRule))
	b := startAuthBroker(t, "-auth-users-file", users, "-auth-acl-file", acl, "-auth-failure-delay", "0s")
	alice := []string{"login:alice", "passcode:" + alicePW}
	// tryAs answers "" when user may do frame, else what happened.
	tryAs := func(tr string, creds []string, frame string) string {
		c := dialAuth(t, b, tr)
		if f := c.connect(creds...); f.command != "CONNECTED" {
			return "CONNECT: " + f.String()
		}
		if frame == "" {
			return ""
		}
		c.send(frame)
		if f, err := c.next(authTimeout); err != nil || f.command != "RECEIPT" {
			return "refused: " + f.String()
		}
		return ""
	}
	dave := []string{"login:dave", "passcode:" + davePW}
	for _, tr := range authTransports {
		if got := tryAs(tr, dave, ""); !strings.Contains(got, "auth-failed") {
			t.Fatalf("%s: dave before being added: %q, want auth-failed", tr, got)
		}
	}
	writeUsers(t, users, "dave", "", davePW)
	sighup(t, b, 2)
	for _, tr := range authTransports {
		eventually(t, tr+": dave connects after SIGHUP", func() string { return tryAs(tr, dave, "") })
	}

	toQueue, toChat := sendFrame("/queue/orders", "o", "r"), sendFrame("/topic/chat.room1", "c", "r")
	for _, tr := range authTransports {
		if got := tryAs(tr, alice, toQueue); !strings.Contains(got, "forbidden") {
			t.Fatalf("%s: alice SEND /queue/orders before the rule: %q, want forbidden", tr, got)
		}
		if got := tryAs(tr, alice, toChat); got != "" {
			t.Fatalf("%s: alice SEND /topic/chat.room1: %s", tr, got)
		}
	}
	// A connection open across the reload: its next SEND meets the new rules.
	held := map[string]*authConn{}
	for _, tr := range authTransports {
		held[tr] = authSession(t, b, tr, alice...)
	}
	replaceFile(t, acl, []byte("rules:\n  - users: [alice]\n    publish: [\"/queue/orders\"]\n"+daveRule))
	sighup(t, b, 2)
	for _, tr := range authTransports {
		eventually(t, tr+": the new rule grants /queue/orders", func() string { return tryAs(tr, alice, toQueue) })
		if got := tryAs(tr, alice, toChat); !strings.Contains(got, "forbidden") {
			t.Errorf("%s: alice SEND /topic/chat.room1 after the rule was removed: %q, want forbidden", tr, got)
		}
		held[tr].send(toChat)
		held[tr].expectError("forbidden")
	}
	replaceFile(t, acl, []byte("rules: [this is not: a rule\n"))
	sighup(t, b, 2)
	if countIn(b, `msg="reload failed; the previous contents stay in use"`) != 1 {
		t.Errorf("a broken rules file: want one \"reload failed\" line")
	}
	for _, tr := range authTransports {
		if got := tryAs(tr, alice, toQueue); got != "" {
			t.Errorf("%s: after a failed reload alice lost /queue/orders: %s", tr, got)
		}
	}
	requireNoSecrets(t, b, alicePW, davePW)
	b.stop()
}
