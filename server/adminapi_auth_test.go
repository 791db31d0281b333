package server

import (
	"encoding/json"
	"fmt"
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
