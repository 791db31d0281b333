package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"

	"github.com/stompbox/stompbox/broker"
)

// apiClient calls the admin API at base with one credential (set by
// auth, nil: none).
type apiClient struct {
	t    testing.TB
	base string
	auth func(*http.Request)
}

func bearer(token string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }
}

func basicAuth(user, pass string) func(*http.Request) {
	return func(r *http.Request) { r.SetBasicAuth(user, pass) }
}

// do sends one request (body marshalled to JSON when not nil) and returns
// the status and the body.
func (c apiClient) do(method, path string, body any) (int, []byte) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.auth != nil {
		c.auth(req)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: reading: %v", method, path, err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		c.t.Errorf("%s %s: Content-Type %q", method, path, ct)
	}
	return resp.StatusCode, out
}

// getJSON GETs path, wants 200, and decodes the answer into v.
func (c apiClient) getJSON(path string, v any) {
	c.t.Helper()
	code, body := c.do(http.MethodGet, path, nil)
	if code != http.StatusOK {
		c.t.Fatalf("GET %s: %d %s", path, code, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		c.t.Fatalf("GET %s: %v in %s", path, err, body)
	}
}

// postJSON POSTs body to path, wants status, and decodes the answer.
func (c apiClient) postJSON(path string, body any, status int, v any) {
	c.t.Helper()
	code, out := c.do(http.MethodPost, path, body)
	if code != status {
		c.t.Fatalf("POST %s: %d %s, want %d", path, code, out, status)
	}
	if v != nil {
		if err := json.Unmarshal(out, v); err != nil {
			c.t.Fatalf("POST %s: %v in %s", path, err, out)
		}
	}
}

// dialStomp connects a go-stomp client as login, closed when the test
// ends.
func dialStomp(t testing.TB, addr, login string) *stomp.Conn {
	t.Helper()
	c, err := stomp.Dial("tcp", addr, stomp.ConnOpt.Login(login, "secret"))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Disconnect() })
	return c
}

// sendReceipted sends body to dest and waits for its RECEIPT.
func sendReceipted(t testing.TB, c *stomp.Conn, dest, body string) {
	t.Helper()
	if err := c.Send(dest, "text/plain", []byte(body), stomp.SendOpt.Receipt); err != nil {
		t.Fatalf("send to %s: %v", dest, err)
	}
}

// poll calls cond every 10ms until it holds or 5s pass.
func poll(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for range 500 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// The answers' shapes, as a client decodes them.
type (
	connPage struct {
		Total, Offset, Limit int
		Items                []connItem
	}
	destPage struct {
		Total, Offset, Limit int
		Items                []destItem
	}
	durablePage struct {
		Total, Offset, Limit int
		Items                []durableItem
	}
)

// countingAuth counts the checks an Authenticator runs.
type countingAuth struct {
	inner broker.Authenticator
	calls atomic.Int64
}

func (c *countingAuth) Authenticate(ctx context.Context, cr broker.Credentials) (*broker.Principal, error) {
	c.calls.Add(1)
	return c.inner.Authenticate(ctx, cr)
}
