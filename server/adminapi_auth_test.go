package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/server/auth"
)

// writeUsers writes a users file of user:password:roles lines (bcrypt at
// the lowest cost) and loads it.
func writeUsers(t *testing.T, lines ...string) *auth.Users {
	t.Helper()
	var b strings.Builder
	for _, l := range lines {
		user, rest, _ := strings.Cut(l, ":")
		pass, roles, _ := strings.Cut(rest, ":")
		h, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s:%s", user, h)
		if roles != "" {
			b.WriteString(":" + roles)
		}
		b.WriteString("\n")
	}
	path := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	u, err := auth.LoadUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestAdminAPIAuthMatrix checks every credential against a read endpoint
// and an action.
func TestAdminAPIAuthMatrix(t *testing.T) {
	users := writeUsers(t, "root:rootpw:admin", "watcher:watchpw:monitor,other", "plain:plainpw:other")
	srv := startServer(t, Config{
		AdminToken: "admin-secret", AdminReadToken: "read-secret", AdminUsers: users,
		Broker: broker.Config{AuthFailureDelay: time.Millisecond},
	})
	base := startAdmin(t, srv.Server)
	c := dialStomp(t, srv.addr, "alice")
	purge := map[string]string{"destination": "/queue/auth"}

	cases := []struct {
		name      string
		auth      func(*http.Request)
		read, act int
	}{
		{"no credentials", nil, 401, 401},
		{"read token", bearer("read-secret"), 200, 403},
		{"admin token", bearer("admin-secret"), 200, 200},
		{"wrong token", bearer("admin-secret-not"), 401, 401},
		{"basic admin", basicAuth("root", "rootpw"), 200, 200},
		{"basic monitor", basicAuth("watcher", "watchpw"), 200, 403},
		{"basic no role", basicAuth("plain", "plainpw"), 403, 403},
		{"basic wrong password", basicAuth("root", "nope"), 401, 401},
		{"basic unknown user", basicAuth("nobody", "x"), 401, 401},
	}
	for _, tc := range cases {
		api := apiClient{t: t, base: base, auth: tc.auth}
		code, body := api.do(http.MethodGet, "/api/overview", nil)
		if code != tc.read {
			t.Errorf("%s: read %d %s, want %d", tc.name, code, body, tc.read)
		}
		if code == http.StatusUnauthorized {
			var e map[string]string
			if json.Unmarshal(body, &e) != nil || e["error"] == "" {
				t.Errorf("%s: 401 body %s", tc.name, body)
			}
		}
		sendReceipted(t, c, "/queue/auth", "x") // a purge of the last message drops the queue
		if code, body = api.do(http.MethodPost, "/api/queues/purge", purge); code != tc.act {
			t.Errorf("%s: action %d %s, want %d", tc.name, code, body, tc.act)
		}
	}
	// The challenge names both schemes.
	req, _ := http.NewRequest(http.MethodGet, base+"/api/overview", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := strings.Join(resp.Header.Values("WWW-Authenticate"), ", "); got != `Basic realm="stompbox admin", Bearer` {
		t.Errorf("WWW-Authenticate %q", got)
	}
	// The probes and metrics stay open.
	if code, _ := get(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d", code)
	}
}

// TestAdminAPIBasicCached runs bcrypt once for a console's repeated
// Basic requests.
func TestAdminAPIBasicCached(t *testing.T) {
	counting := &countingAuth{inner: writeUsers(t, "root:rootpw:admin")}
	srv := startServer(t, Config{AdminUsers: counting})
	api := apiClient{t: t, base: startAdmin(t, srv.Server), auth: basicAuth("root", "rootpw")}
	for range 5 {
		var o overview
		api.getJSON("/api/overview", &o)
	}
	if n := counting.calls.Load(); n != 1 {
		t.Errorf("%d checks for 5 requests, want 1", n)
	}
}

// TestAdminAPILoopbackOnly answers loopback clients read-only when no
// credential is configured, and nobody else.
func TestAdminAPILoopbackOnly(t *testing.T) {
	srv := startServer(t, Config{})
	api := apiClient{t: t, base: startAdmin(t, srv.Server)}
	var o overview
	api.getJSON("/api/overview", &o)
	code, body := api.do(http.MethodPost, "/api/queues/purge", map[string]string{"destination": "/queue/x"})
	if code != http.StatusForbidden || strings.TrimSpace(string(body)) != `{"error":"no admin credentials configured: actions are disabled"}` {
		t.Errorf("action: %d %s", code, body)
	}
	h := srv.AdminHandler()
	for _, remote := range []string{"192.0.2.7:5000", "[2001:db8::1]:5000"} {
		req := httptest.NewRequest(http.MethodGet, "/api/overview", nil)
		req.RemoteAddr = remote
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusForbidden {
			t.Errorf("from %s: %d %s", remote, rec.Code, rec.Body)
		}
	}
	for remote, want := range map[string]bool{"127.0.0.1:1": true, "[::1]:1": true, "[::ffff:127.0.0.1]:1": true, "10.0.0.1:1": false, "garbage": false} {
		if isLoopback(remote) != want {
			t.Errorf("isLoopback(%q) != %v", remote, want)
		}
	}
}

// The tokens of the tests below.
const (
	adminToken = "admin-token-for-tests"
	readToken  = "read-token-for-tests"
)

// TestAdminAPICrossSiteRefused: an action must come as JSON and not from
// another site's page, which could otherwise send it with the operator's
// cached Basic credentials (sendBeacon or a no-cors fetch: no preflight,
// no Content-Type).
func TestAdminAPICrossSiteRefused(t *testing.T) {
	srv := startServer(t, Config{AdminToken: adminToken})
	base := startAdmin(t, srv.Server)
	host := strings.TrimPrefix(base, "http://")
	tests := []struct {
		name    string
		header  map[string]string
		want    int
		wantErr string
	}{
		{"no Content-Type", map[string]string{}, http.StatusUnsupportedMediaType, "Content-Type must be application/json"},
		{"text/plain", map[string]string{"Content-Type": "text/plain"}, http.StatusUnsupportedMediaType, "Content-Type must be application/json"},
		{"another site's Origin", map[string]string{"Content-Type": "application/json", "Origin": "http://evil.example"}, http.StatusForbidden, "cross-site request refused"},
		{"Sec-Fetch-Site cross-site", map[string]string{"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"}, http.StatusForbidden, "cross-site request refused"},
		{"Sec-Fetch-Site same-site", map[string]string{"Content-Type": "application/json", "Sec-Fetch-Site": "same-site"}, http.StatusForbidden, "cross-site request refused"},
		{"the console's own", map[string]string{"Content-Type": "application/json; charset=utf-8", "Origin": "http://" + host, "Sec-Fetch-Site": "same-origin"}, http.StatusOK, ""},
		{"a command-line client", map[string]string{"Content-Type": "application/json"}, http.StatusOK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, base+"/api/queues/purge", strings.NewReader(`{"destination":"/queue/csrf"}`))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+adminToken)
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			// The queue does not exist: an action that got through is 404.
			got := resp.StatusCode
			if got == http.StatusNotFound {
				got = http.StatusOK
			}
			if got != tt.want || !strings.Contains(string(body), tt.wantErr) {
				t.Fatalf("%d %s, want %d %q", resp.StatusCode, body, tt.want, tt.wantErr)
			}
		})
	}
}

// TestAdminAPILoopbackHostOnly: without credentials, a request whose Host
// is not this machine's (a page whose name was rebound to 127.0.0.1) is
// refused, even from loopback.
func TestAdminAPILoopbackHostOnly(t *testing.T) {
	srv := startServer(t, Config{})
	h := srv.AdminHandler()
	for host, want := range map[string]int{
		"127.0.0.1:61680": http.StatusOK, "localhost:61680": http.StatusOK, "[::1]:61680": http.StatusOK,
		"LOCALHOST": http.StatusOK, "evil.example": http.StatusForbidden, "evil.example:61680": http.StatusForbidden,
		"10.0.0.1:61680": http.StatusForbidden,
	} {
		req := httptest.NewRequest(http.MethodGet, "/api/overview", nil)
		req.RemoteAddr, req.Host = "127.0.0.1:5000", host
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("Host %q: %d %s, want %d", host, rec.Code, rec.Body, want)
		}
	}
}

// TestAdminPprofGuarded: /debug/pprof/cmdline shows the flags (an
// -admin-token among them): with credentials configured it needs role
// admin; without, loopback clients as before.
func TestAdminPprofGuarded(t *testing.T) {
	srv := startServer(t, Config{EnablePprof: true, AdminToken: adminToken, AdminReadToken: readToken})
	h := srv.AdminHandler()
	for auth, want := range map[string]int{"": http.StatusUnauthorized, "Bearer " + readToken: http.StatusForbidden, "Bearer " + adminToken: http.StatusOK} {
		req := httptest.NewRequest(http.MethodGet, "/debug/pprof/cmdline", nil)
		req.RemoteAddr = "127.0.0.1:5000"
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("%q: %d, want %d", auth, rec.Code, want)
		}
	}
	open := startServer(t, Config{EnablePprof: true}).AdminHandler()
	req := httptest.NewRequest(http.MethodGet, "/debug/pprof/cmdline", nil)
	req.RemoteAddr, req.Host = "127.0.0.1:5000", "127.0.0.1:61680"
	rec := httptest.NewRecorder()
	open.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Errorf("without credentials, from loopback: %d", rec.Code)
	}
}

// TestAdminAPIBasicForgottenOnReload: a reload (SIGHUP) re-authorizes
// sessions, and admin users are checked again at once, not after the
// cache's minute.
func TestAdminAPIBasicForgottenOnReload(t *testing.T) {
	counting := &countingAuth{inner: writeUsers(t, "root:rootpw:admin")}
	srv := startServer(t, Config{AdminUsers: counting})
	api := apiClient{t: t, base: startAdmin(t, srv.Server), auth: basicAuth("root", "rootpw")}
	var o overview
	api.getJSON("/api/overview", &o)
	api.getJSON("/api/overview", &o)
	srv.Reauthorize()
	api.getJSON("/api/overview", &o)
	if n := counting.calls.Load(); n != 2 {
		t.Errorf("%d checks, want 2: one before the reload, one after", n)
	}
}

// anyAdmin accepts every login as an admin: the cache's bound, not
// bcrypt, is under test.
type anyAdmin struct{}

func (anyAdmin) Authenticate(_ context.Context, cr broker.Credentials) (*broker.Principal, error) {
	return &broker.Principal{Name: cr.Login, Roles: []string{"admin"}}, nil
}

// TestAdminAPIBasicCacheBounded: logins that succeed are remembered, at
// most maxBasicCache of them, however many distinct ones arrive.
func TestAdminAPIBasicCacheBounded(t *testing.T) {
	srv := startServer(t, Config{AdminUsers: anyAdmin{}})
	h := srv.AdminHandler()
	most := 0
	for i := range maxBasicCache + 10 {
		req := httptest.NewRequest(http.MethodGet, "/api/overview", nil)
		req.SetBasicAuth("ops", fmt.Sprintf("password-%d", i))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("login %d: %d %s", i, rec.Code, rec.Body)
		}
		srv.admin.auth.mu.Lock()
		most = max(most, len(srv.admin.auth.cache))
		srv.admin.auth.mu.Unlock()
	}
	if most != maxBasicCache {
		t.Fatalf("the cache held at most %d logins, want exactly the bound %d", most, maxBasicCache)
	}
}

// TestAdminAPIActionBodyBounded: an action's body past maxActionBody is
// refused (413) without being read whole. (In process: over a socket,
// net/http lingers on the connection it closes after such a body.)
func TestAdminAPIActionBodyBounded(t *testing.T) {
	for _, tt := range []struct {
		size int
		want int
	}{{maxActionBody - 64, http.StatusOK}, {maxActionBody + 1, http.StatusRequestEntityTooLarge}} {
		body := `{"reason":"` + strings.Repeat("x", tt.size-len(`{"reason":""}`)) + `"}`
		req := httptest.NewRequest(http.MethodPost, "/api/connections/x/close", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		var dst struct {
			Reason string `json:"reason"`
		}
		ok := readBody(rec, req, &dst)
		got := rec.Code
		if ok {
			got = http.StatusOK
		}
		if got != tt.want || ok && len(dst.Reason) != tt.size-len(`{"reason":""}`) {
			t.Errorf("a %d B body: %d %s, want %d", len(body), got, rec.Body, tt.want)
		}
	}
}
