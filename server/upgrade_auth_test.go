package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/frames"
	"github.com/stompbox/stompbox/wsadapter"
)

// The tokens of fakeAuth: distinctive, so that finding one in a response
// or a log is unambiguous.
const (
	goodToken = "good-token-7f3a9c"
	badToken  = "bad-token-41d2e8"
	downToken = "down-token-93b0c1" // the check cannot run
)

// authCall is one Authenticate call as fakeAuth saw it.
type authCall struct {
	login       string
	fromUpgrade bool
}

// fakeAuth accepts the upgrade token goodToken (as "token-user") and the
// CONNECT login bob/bob-pw, refuses the rest, and records every call. Its
// error for a bad token quotes the token, as a careless Authenticator
// might: the server must not pass that on.
type fakeAuth struct {
	mu  sync.Mutex
	log []authCall // guarded by mu
}

func newFakeAuth() *fakeAuth { return &fakeAuth{} }

func brokerWithAuth(a broker.Authenticator) broker.Config { return broker.Config{Authenticator: a} }

func (a *fakeAuth) Authenticate(_ context.Context, c broker.Credentials) (*broker.Principal, error) {
	a.mu.Lock()
	a.log = append(a.log, authCall{login: c.Login, fromUpgrade: c.FromUpgrade})
	a.mu.Unlock()
	switch {
	case c.FromUpgrade && c.Passcode == goodToken && c.RemoteAddr != "":
		return &broker.Principal{Name: "token-user"}, nil
	case c.FromUpgrade && c.Passcode == downToken:
		return nil, fmt.Errorf("%w: key file unreadable", broker.ErrAuthUnavailable)
	case c.FromUpgrade:
		return nil, fmt.Errorf("token %s is not valid", c.Passcode)
	case c.Login == "bob" && c.Passcode == "bob-pw":
		return &broker.Principal{Name: "bob"}, nil
	}
	return nil, errors.New("unknown login")
}

// takeCalls returns the calls so far and forgets them.
func (a *fakeAuth) takeCalls() []authCall {
	a.mu.Lock()
	defer a.mu.Unlock()
	calls := a.log
	a.log = nil
	return calls
}

// principalOf waits for the broker's "connected" log line of session and
// returns the principal it names.
func principalOf(t *testing.T, logs *lockedBuffer, session string) string {
	t.Helper()
	line := regexp.MustCompile(`msg=connected session=` + regexp.QuoteMeta(session) + ` .*principal=(\S+)`)
	for range 200 { // the line is written just after CONNECTED is queued
		if m := line.FindStringSubmatch(logs.String()); m != nil {
			return m[1]
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no connected line for session %s in the log", session)
	return ""
}

// The upgrade token: taken from the query parameter (first) or the cookie,
// checked by the Authenticator before upgrading, and then the session's
// principal unless CONNECT brings its own credentials. Refusals are 401,
// never echo the token, and are counted; a foreign origin is refused
// before any token is looked at.
func TestUpgradeToken(t *testing.T) {
	const authDelay = 150 * time.Millisecond
	var logs lockedBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	auth := newFakeAuth()
	start := func(required bool) (*testServer, string, string, *bystander) {
		b := brokerWithAuth(auth)
		b.AuthFailureDelay = authDelay
		srv, url := startWebServer(t, Config{
			Logger:       logger,
			Broker:       b,
			WebSocket:    wsadapter.Config{AllowedOrigins: []string{"https://ok.example"}},
			UpgradeToken: UpgradeToken{QueryParam: "access_token", Cookie: "stomp_token", Required: required},
		})
		by := newBystander(t, srv.addr, ipA)
		return srv, url, startAdmin(t, srv.Server), by
	}
	// The bystanders authenticate with CONNECT credentials...
	_, optURL, optAdmin, optBy := start(false)
	_, reqURL, reqAdmin, reqBy := start(true)
	auth.takeCalls() // ...which are not what this test is about

	upgrade, connect := authCall{fromUpgrade: true}, authCall{}
	bob := authCall{login: "bob"}
	tests := []struct {
		name      string
		required  bool
		query     string // access_token value
		cookie    string // stomp_token value; "-" sends the cookie empty
		origin    string
		connect   []string // extra CONNECT headers
		status    int      // 101: upgraded
		body      string   // part of a refusal's body
		wwwAuth   string
		retry     string // Retry-After
		principal string // "" with status 101: CONNECT must fail auth
		calls     []authCall
	}{
		{name: "query token", query: goodToken, status: 101, principal: "token-user", calls: []authCall{upgrade}},
		{name: "cookie token", cookie: goodToken, status: 101, principal: "token-user", calls: []authCall{upgrade}},
		{name: "query before cookie", query: goodToken, cookie: badToken, status: 101, principal: "token-user", calls: []authCall{upgrade}},
		{name: "allowed origin and token", origin: "https://ok.example", query: goodToken, status: 101, principal: "token-user", calls: []authCall{upgrade}},
		{name: "CONNECT credentials override the token", query: goodToken, connect: []string{"login:bob", "passcode:bob-pw"},
			status: 101, principal: "bob", calls: []authCall{upgrade, bob}},
		{name: "CONNECT credentials are checked despite the token", query: goodToken, connect: []string{"login:bob", "passcode:wrong"},
			status: 101, calls: []authCall{upgrade, bob}},
		{name: "no token: CONNECT authenticates", status: 101, calls: []authCall{connect}},
		{name: "bad query token", query: badToken, status: 401, body: "authentication failed", wwwAuth: `Bearer error="invalid_token"`, calls: []authCall{upgrade}},
		{name: "bad cookie token", cookie: badToken, status: 401, body: "authentication failed", wwwAuth: `Bearer error="invalid_token"`, calls: []authCall{upgrade}},
		{name: "authentication unavailable", query: downToken, status: 503, body: "authentication unavailable", retry: "1", calls: []authCall{upgrade}},
		{name: "foreign origin before the token", origin: "https://evil.example", query: badToken, status: 403, body: "not allowed"},
		{name: "required: no token", required: true, status: 401, body: "authentication required", wwwAuth: "Bearer"},
		{name: "required: empty cookie", required: true, cookie: "-", status: 401, body: "authentication required", wwwAuth: "Bearer"},
		{name: "required: cookie token", required: true, cookie: goodToken, status: 101, principal: "token-user", calls: []authCall{upgrade}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url, by := optURL, optBy
			if tt.required {
				url, by = reqURL, reqBy
			}
			if tt.query != "" {
				url += "?access_token=" + tt.query
			}
			h := http.Header{}
			switch tt.cookie {
			case "":
			case "-":
				h.Set("Cookie", "stomp_token=")
			default:
				h.Set("Cookie", "stomp_token="+tt.cookie)
			}
			if tt.origin != "" {
				h.Set("Origin", tt.origin)
			}
			began := time.Now()
			c, refused := tryUpgrade(t, url, h, ipA)
			took := time.Since(began)
			switch {
			case tt.status == 101 && refused != nil:
				t.Fatalf("refused: %d %q", refused.status, refused.body)
			case tt.status != 101 && c != nil:
				t.Fatalf("upgraded, want %d", tt.status)
			case refused != nil:
				if refused.status != tt.status || !strings.Contains(refused.body, tt.body) {
					t.Errorf("refusal %d %q, want %d saying %q", refused.status, refused.body, tt.status, tt.body)
				}
				if got := refused.header.Get("Retry-After"); got != tt.retry {
					t.Errorf("Retry-After %q, want %q", got, tt.retry)
				}
				if strings.Contains(refused.body, goodToken) || strings.Contains(refused.body, badToken) || strings.Contains(refused.body, downToken) {
					t.Errorf("refusal body %q holds the token", refused.body)
				}
				if got := refused.header.Get("WWW-Authenticate"); got != tt.wwwAuth {
					t.Errorf("WWW-Authenticate %q, want %q", got, tt.wwwAuth)
				}
				if tt.body == "authentication failed" && took < authDelay {
					t.Errorf("a refused token was answered after %v, before the auth failure delay %v", took, authDelay)
				}
			default:
				c.text(frame("CONNECT", "", append([]string{"accept-version:1.2", "host:test"}, tt.connect...)...))
				f, _ := c.next()
				if tt.principal == "" {
					if f.Command != frames.CmdError || header(f, "error-code") != broker.CodeAuthFailed {
						t.Fatalf("got %s %v, want ERROR auth-failed", f.Command, f.Headers)
					}
				} else {
					if f.Command != frames.CmdConnected {
						t.Fatalf("got %s %v %q, want CONNECTED", f.Command, f.Headers, f.Body)
					}
					if got := principalOf(t, &logs, header(f, "session")); got != tt.principal {
						t.Errorf("session's principal %q, want %q", got, tt.principal)
					}
				}
			}
			if got := auth.takeCalls(); !slices.Equal(got, tt.calls) {
				t.Errorf("authenticator calls %+v, want %+v", got, tt.calls)
			}
			by.alive(tt.name)
		})
	}

	for admin, want := range map[string]map[string]int{
		optAdmin: {"auth": 3, "origin": 1},
		reqAdmin: {"auth": 2},
	} {
		_, body := get(t, admin+"/metrics")
		checkSamples(t, body, refusedSeries(nil, want))
	}
	text := logs.String()
	for _, secret := range []string{goodToken, badToken, downToken, "access_token="} {
		if strings.Contains(text, secret) {
			t.Errorf("the log holds %q:\n%s", secret, grepLines(text, "level="))
		}
	}
	if !strings.Contains(text, `msg="websocket upgrade refused" remote=`) || !strings.Contains(text, "path=/ws") {
		t.Errorf("refused upgrades are not logged with their path:\n%s", text)
	}
}

// Origin allowlist with wildcard subdomains, end to end: what passes is
// upgraded and connects, what does not gets 403 (before the subprotocol
// is judged), and every refusal is counted by reason.
func TestUpgradeOriginWildcards(t *testing.T) {
	srv, url := startWebServer(t, Config{WebSocket: wsadapter.Config{
		AllowedOrigins: []string{"https://*.example.com", "http://app.test:8080"},
	}})
	admin := startAdmin(t, srv.Server)
	by := newBystander(t, srv.addr, ipA)
	tests := []struct {
		origin    string
		protocols []string
		status    int
	}{
		{"https://a.example.com", nil, 101},
		{"https://a.b.example.com", nil, 101},
		{"https://A.Example.COM", nil, 101},
		{"https://a.example.com:443", nil, 101},
		{"http://app.test:8080", nil, 101},
		{"HTTP://APP.TEST:8080", nil, 101},
		{"", nil, 101}, // not a browser
		{"https://example.com", nil, 403},
		{"https://evil-example.com", nil, 403},
		{"https://example.com.evil.test", nil, 403},
		{"http://a.example.com", nil, 403},
		{"https://a.example.com:8443", nil, 403},
		{"http://app.test", nil, 403},
		{"null", nil, 403},
		{"https://evil.test", []string{"mqtt"}, 403}, // origin first
		{"https://a.example.com", []string{"mqtt"}, 400},
	}
	for _, tt := range tests {
		t.Run(tt.origin+" "+strings.Join(tt.protocols, ","), func(t *testing.T) {
			h := http.Header{}
			if tt.origin != "" {
				h.Set("Origin", tt.origin)
			}
			protocols := tt.protocols
			if protocols == nil {
				protocols = []string{"v12.stomp"}
			}
			if tt.status == 101 {
				c := dialWSClient(t, url, h, protocols...)
				c.connect()
			} else if status, body := dialWSRefused(t, url, h, protocols...); status != tt.status {
				t.Errorf("status %d %q, want %d", status, body, tt.status)
			}
			by.alive(tt.origin)
		})
	}
	_, body := get(t, admin+"/metrics")
	checkSamples(t, body, refusedSeries(nil, map[string]int{"origin": 8, "subprotocol": 1}))
}
