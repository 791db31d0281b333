package server

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stompbox/stompbox/web"
)

// TestAdminConsoleMounted checks that the admin listener serves the console
// at /console/ behind the admin API's authentication: a challenge without
// credentials, the page (or, in a binary built without `make web`, its
// build hint) with a read token.
func TestAdminConsoleMounted(t *testing.T) {
	srv := startServer(t, Config{AdminToken: "admin-secret", AdminReadToken: "read-secret"})
	base := startAdmin(t, srv.Server)
	client := &http.Client{Timeout: 10 * time.Second}
	get := func(path, token string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		return res, string(body)
	}

	res, body := get("/console/", "")
	if res.StatusCode != http.StatusUnauthorized || res.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("no credentials: %d (WWW-Authenticate %q) %s, want 401 with a challenge",
			res.StatusCode, res.Header.Get("WWW-Authenticate"), body)
	}
	res, body = get("/console/console.js", "wrong")
	if res.StatusCode != http.StatusUnauthorized || strings.Contains(body, "use strict") {
		t.Errorf("wrong token: %d %.100s, want 401 without the script", res.StatusCode, body)
	}

	want, wantText := http.StatusServiceUnavailable, "make web"
	if web.ConsoleComplete() {
		want, wantText = http.StatusOK, "<title>stompbox console</title>"
	}
	res, body = get("/console/", "read-secret")
	if res.StatusCode != want || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") || !strings.Contains(body, wantText) {
		t.Errorf("read token: %d %q %.200s, want %d text/html with %q",
			res.StatusCode, res.Header.Get("Content-Type"), body, want, wantText)
	}
	res, body = get("/console/console.js", "admin-secret")
	if res.StatusCode != http.StatusOK || !strings.Contains(res.Header.Get("Content-Type"), "javascript") || !strings.Contains(body, "use strict") {
		t.Errorf("admin token, script: %d %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	// /console redirects to the page (the mux adds the slash).
	res, _ = get("/console", "read-secret")
	if res.Request.URL.Path != "/console/" {
		t.Errorf("GET /console ended at %s, want /console/", res.Request.URL.Path)
	}
}
