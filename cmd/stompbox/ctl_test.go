package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// ctlNow is the clock of every ctl test: the canned times below are
// minutes and hours before it.
var ctlNow = time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)

// ctlRequest is what the fake admin API saw of one request.
type ctlRequest struct {
	Method, Path, Query, Body, Auth string
}

// ctlCanned is one canned answer.
type ctlCanned struct {
	status int
	body   string
}

// fakeAdmin is the admin API of ADMIN_API.md with canned JSON, on a real
// 127.0.0.1 socket; it records every request.
type fakeAdmin struct {
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []ctlRequest
}

const (
	cannedOverview = `{"version":"1.2.3","node":"n1","started":"2026-12-05T10:58:30.000Z","uptime_seconds":3690.5,` +
		`"connections":7,"parked_sessions":1,"destinations":4,"queued_messages":12,"queued_bytes":1536,` +
		`"messages_in_total":1000,"messages_out_total":990,"messages_in_rate":2.54,"messages_out_rate":2.5,` +
		`"blocked_connections":2,"journal":{"enabled":true,"dir":"/var/lib/j","state":"ok","size_bytes":3145728,` +
		`"segments":3,"sync":"always","fsync_seconds":{"count":10,"p50":0.0005,"p99":0.002,"max":0.004}},"cluster":null}`
	cannedConnections = `{"total":3,"offset":0,"limit":1,"items":[{"id":"c1","user":"alice","transport":"ws",` +
		`"remote":"127.0.0.1:5000","vhost":"/","version":"1.2","since":"2026-12-05T11:55:00.000Z",` +
		`"connected":"2026-12-05T11:55:01.000Z","subscriptions":[{"id":"s1","destination":"/queue/a","ack":"client",` +
		`"unacked":2,"durable":""}],"frames_in":10,"frames_out":20,"bytes_in":2048,"bytes_out":5242880,` +
		`"outbox_bytes":0,"held_bytes":100,"blocked":"queue-full","unacked":2}]}`
	cannedConnection = `{"id":"c/1 x","user":"","transport":"tcp","remote":"10.0.0.1:1","vhost":"","version":"",` +
		`"since":"2026-12-05T11:59:50.000Z","connected":null,"subscriptions":[],"frames_in":0,"frames_out":0,` +
		`"bytes_in":0,"bytes_out":0,"outbox_bytes":0,"held_bytes":0,"blocked":"","unacked":0}`
	cannedDestinations = `{"total":2,"offset":0,"limit":100,"items":[` +
		`{"vhost":"/","name":"/queue/orders","kind":"queue","messages":12,"bytes":1536,"unacked":1,"consumers":2,` +
		`"oldest_age_seconds":90,"dlq":"/queue/DLQ.orders","enqueued_total":50,"delivered_total":38,"in_rate":1.25,"out_rate":0},` +
		`{"vhost":"/","name":"/topic/t","kind":"topic","messages":0,"bytes":0,"unacked":0,"consumers":5,` +
		`"oldest_age_seconds":0,"dlq":"","enqueued_total":9,"delivered_total":45,"in_rate":0,"out_rate":4.5}]}`
	cannedDurables = `{"total":1,"offset":0,"limit":100,"items":[{"vhost":"/","user":"bob","name":"d1","topic":"/topic/x.#",` +
		`"queue":"/queue/durable.bob.d1","messages":3,"bytes":30,"active":false,"last_active":"2026-12-04T10:00:00.000Z"}]}`
	cannedJournal = `{"enabled":true,"dir":"/var/lib/j","state":"failed","error":"disk full","size_bytes":1073741824,` +
		`"segments":16,"sync":"batch","fsync_seconds":{"count":5,"p50":0.001,"p99":0.25,"max":1.5}}`
	cannedCluster = `{"enabled":true,"name":"prod","node":"n2","ready":false,"error":"no quorum","nodes":[{"name":"n1","self":false,"zone":"b"},` +
		`{"name":"n2","self":true}]}`
	cannedPeek = `{"items":[{"id":"m1","headers":[["content-type","text/plain"]],"body_size":5,"body":"hello",` +
		`"body_encoding":"text","persistent":true,"enqueued":"2026-12-05T11:58:00.000Z","deliveries":1,"unacked":true},` +
		`{"id":"m2","headers":[],"body_size":3000,"body":"AAEC","body_encoding":"base64","persistent":false,` +
		`"enqueued":"2026-12-05T11:59:59.000Z","deliveries":0,"unacked":false}]}`
)

func newFakeAdmin(t *testing.T) *fakeAdmin {
	t.Helper()
	f := &fakeAdmin{}
	canned := map[string]ctlCanned{
		"GET /api/overview":                    {200, cannedOverview},
		"GET /api/connections":                 {200, cannedConnections},
		"GET /api/connections/c%2F1%20x":       {200, cannedConnection},
		"GET /api/connections/nope":            {404, `{"error":"no such connection: nope"}`},
		"POST /api/connections/c1/close":       {200, `{"closed":true}`},
		"GET /api/destinations":                {200, cannedDestinations},
		"GET /api/durables":                    {200, cannedDurables},
		"GET /api/journal":                     {200, cannedJournal},
		"GET /api/cluster":                     {200, cannedCluster},
		"GET /api/queues/peek":                 {200, cannedPeek},
		"POST /api/queues/purge":               {200, `{"purged":12}`},
		"POST /api/queues/delete":              {409, `{"error":"/queue/durable.x is a durable subscription's queue"}`},
		"POST /api/queues/move-dlq":            {200, `{"moved":4}`},
		"GET /api/connections/unauthenticated": {401, `{"error":"credentials required"}`},
		"GET /api/connections/proxy":           {502, "<html>bad gateway</html>\nmore"},
	}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.reqs = append(f.reqs, ctlRequest{r.Method, r.URL.EscapedPath(), r.URL.RawQuery, string(body), r.Header.Get("Authorization")})
		f.mu.Unlock()
		if strings.HasPrefix(r.URL.Path, "/api/slow/") {
			// Answers only after the client gave up (or 5 s, bounding
			// the test if the client does not).
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			return
		}
		c, ok := canned[r.Method+" "+r.URL.EscapedPath()]
		if !ok {
			c = ctlCanned{404, `{"error":"no route"}`}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(c.status)
		_, _ = io.WriteString(w, c.body)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAdmin) requests() []ctlRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]ctlRequest(nil), f.reqs...)
}

// runCtlTest runs ctl against url with env, returning exit code and
// output.
func runCtlTest(args, environ []string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := runCtlAt(args, environ, &out, &errOut, func() time.Time { return ctlNow })
	return code, out.String(), errOut.String()
}

func basic(user, pw string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pw))
}

func TestCtlCommands(t *testing.T) {
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
	f := newFakeAdmin(t)
	env := []string{"STOMPBOX_ADMIN_URL=" + f.srv.URL, "STOMPBOX_ADMIN_TOKEN=envtok", "STOMPBOX_ADMIN_PASSWORD=envpw"}
	cases := []struct {
		name   string
		args   []string
		want   ctlRequest
		code   int
		out    []string // substrings of stdout, in order
		stderr string   // substring of stderr
	}{
		{"overview", []string{"overview"},
			ctlRequest{"GET", "/api/overview", "", "", "Bearer envtok"}, 0,
			[]string{"version:", "1.2.3", "uptime:", "1h01m (since 2026-12-05T10:58:30Z)", "7 (2 blocked, 1 parked sessions)",
				"12 messages, 1.5 KiB", "2.5/s (1000 total)", "ok, 3.0 MiB in 3 segments, fsync p99 2ms", "cluster:", "disabled"}, ""},
		{"connections paged", []string{"-token", "t0k", "connections", "-q", "alice", "-sort", "bytes_in", "-order", "desc", "-limit", "1"},
			ctlRequest{"GET", "/api/connections", "limit=1&order=desc&q=alice&sort=bytes_in", "", "Bearer t0k"}, 0,
			[]string{"ID", "USER", "BLOCKED", "c1", "alice", "ws", "127.0.0.1:5000", "5m00s", "2.0 KiB", "5.0 MiB", "100 B", "queue-full",
				"(1-1 of 3; -offset and -limit page)"}, ""},
		{"connection escaped id", []string{"connection", "c/1 x"},
			ctlRequest{"GET", "/api/connections/c%2F1%20x", "", "", "Bearer envtok"}, 0,
			[]string{"id:", "c/1 x", "user:", "-", "accepted:", "10s ago", "connected:", "-", "no subscriptions"}, ""},
		{"close basic auth joins reason", []string{"-user", "ops", "-password", "pw", "close", "c1", "too", "many", "subs"},
			ctlRequest{"POST", "/api/connections/c1/close", "", `{"reason":"too many subs"}`, basic("ops", "pw")}, 0,
			[]string{"closed connection c1"}, ""},
		{"queues alias and kind", []string{"-user", "ops", "destinations", "-kind", "queue", "-offset", "0"},
			ctlRequest{"GET", "/api/destinations", "kind=queue", "", basic("ops", "envpw")}, 0,
			[]string{"VHOST", "NAME", "/queue/orders", "queue", "12", "1.5 KiB", "1m30s", "1.2/s", "0.0/s", "/queue/DLQ.orders",
				"/topic/t", "topic", "0 B", "4.5/s"}, ""},
		{"durables", []string{"durables", "-offset", "10"},
			ctlRequest{"GET", "/api/durables", "offset=10", "", "Bearer envtok"}, 0,
			[]string{"bob", "d1", "/topic/x.#", "/queue/durable.bob.d1", "30 B", "no", "1d02h"}, ""},
		{"journal", []string{"journal"},
			ctlRequest{"GET", "/api/journal", "", "", "Bearer envtok"}, 0,
			[]string{"state:", "failed", "error:", "disk full", "size:", "1.0 GiB", "segments:", "16", "5 (p50 1ms, p99 250ms, max 1.5s)"}, ""},
		{"cluster", []string{"cluster"},
			ctlRequest{"GET", "/api/cluster", "", "", "Bearer envtok"}, 0,
			[]string{"cluster: prod, node n2, not ready, 2 nodes: no quorum", "NODE", "n1", "no", "zone=b", "n2", "yes"}, ""},
		{"purge vhost escaped", []string{"purge", "-vhost", "prod", "/queue/a b\"c"},
			ctlRequest{"POST", "/api/queues/purge", "", `{"vhost":"prod","destination":"/queue/a b\"c"}`, "Bearer envtok"}, 0,
			[]string{`purged 12 messages from /queue/a b"c (vhost prod)`}, ""},
		{"delete refused", []string{"delete", "/queue/durable.x"},
			ctlRequest{"POST", "/api/queues/delete", "", `{"vhost":"/","destination":"/queue/durable.x"}`, "Bearer envtok"}, 1,
			nil, "/queue/durable.x is a durable subscription's queue (HTTP 409 Conflict)"},
		{"move-dlq flags after dest", []string{"move-dlq", "/queue/DLQ.x", "-max", "5"},
			ctlRequest{"POST", "/api/queues/move-dlq", "", `{"vhost":"/","destination":"/queue/DLQ.x","max":5}`, "Bearer envtok"}, 0,
			[]string{"moved 4 messages from /queue/DLQ.x (vhost /)"}, ""},
		{"move-dlq all", []string{"move-dlq", "/queue/DLQ.x"},
			ctlRequest{"POST", "/api/queues/move-dlq", "", `{"vhost":"/","destination":"/queue/DLQ.x","max":0}`, "Bearer envtok"}, 0,
			[]string{"moved 4"}, ""},
		{"peek query escaped", []string{"peek", "-n", "3", "/queue/x?y&z"},
			ctlRequest{"GET", "/api/queues/peek", "destination=%2Fqueue%2Fx%3Fy%26z&limit=3&vhost=%2F", "", "Bearer envtok"}, 0,
			[]string{"ID", "BODY", "m1", "2m00s", "1", "yes", "yes", "5 B", `"hello"`, "m2", "1s", "no", "2.9 KiB", "(binary)"}, ""},
		{"not found", []string{"connection", "nope"},
			ctlRequest{"GET", "/api/connections/nope", "", "", "Bearer envtok"}, 1,
			nil, "stompbox ctl connection: no such connection: nope (HTTP 404 Not Found)"},
		{"unauthorized", []string{"connection", "unauthenticated"},
			ctlRequest{"GET", "/api/connections/unauthenticated", "", "", "Bearer envtok"}, 1,
			nil, "credentials required (HTTP 401 Unauthorized)"},
		{"not JSON error", []string{"connection", "proxy"},
			ctlRequest{"GET", "/api/connections/proxy", "", "", "Bearer envtok"}, 1,
			nil, "<html>bad gateway</html> (HTTP 502 Bad Gateway)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := len(f.requests())
			code, out, errOut := runCtlTest(tc.args, env)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stdout:\n%s\nstderr:\n%s", code, tc.code, out, errOut)
			}
			reqs := f.requests()[n:]
			if len(reqs) != 1 || reqs[0] != tc.want {
				t.Fatalf("requests %+v, want [%+v]", reqs, tc.want)
			}
			rest := out
			for _, s := range tc.out {
				i := strings.Index(rest, s)
				if i < 0 {
					t.Fatalf("stdout lacks %q (in order); stdout:\n%s", s, out)
				}
				rest = rest[i+len(s):]
			}
			if !strings.Contains(errOut, tc.stderr) {
				t.Fatalf("stderr %q lacks %q", errOut, tc.stderr)
			}
		})
	}
}

func TestCtlTableAligned(t *testing.T) {
	f := newFakeAdmin(t)
	code, out, errOut := runCtlTest([]string{"-admin", f.srv.URL + "/", "queues"}, nil)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want := "" +
		"VHOST  NAME           KIND   MESSAGES  BYTES    UNACKED  CONSUMERS  OLDEST  IN     OUT    DLQ\n" +
		"/      /queue/orders  queue  12        1.5 KiB  1        2          1m30s   1.2/s  0.0/s  /queue/DLQ.orders\n" +
		"/      /topic/t       topic  0         0 B      0        5          -       0.0/s  4.5/s  -\n"
	if out != want {
		t.Fatalf("table:\n%s\nwant:\n%s", out, want)
	}
	if r := f.requests(); len(r) != 1 || r[0].Path != "/api/destinations" || r[0].Auth != "" {
		t.Fatalf("requests %+v: want one GET /api/destinations without credentials", r)
	}
}

func TestCtlJSON(t *testing.T) {
	f := newFakeAdmin(t)
	env := []string{"STOMPBOX_ADMIN_URL=" + f.srv.URL}
	for _, tc := range []struct {
		args   []string
		canned string
	}{
		{[]string{"-json", "overview"}, cannedOverview},
		{[]string{"-json", "connections"}, cannedConnections},
		{[]string{"-json", "queues"}, cannedDestinations},
		{[]string{"-json", "peek", "/queue/x"}, cannedPeek},
		{[]string{"-json", "purge", "/queue/x"}, `{"purged":12}`},
	} {
		code, out, errOut := runCtlTest(tc.args, env)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", tc.args, code, errOut)
		}
		var want bytes.Buffer
		if err := json.Indent(&want, []byte(tc.canned), "", "  "); err != nil {
			t.Fatal(err)
		}
		if out != want.String()+"\n" {
			t.Fatalf("%v: printed\n%s\nwant the API's JSON indented:\n%s", tc.args, out, want.String())
		}
		var v map[string]any
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatalf("%v: output does not parse: %v", tc.args, err)
		}
	}
}

func TestCtlUsage(t *testing.T) {
	f := newFakeAdmin(t)
	env := []string{"STOMPBOX_ADMIN_URL=" + f.srv.URL}
	for _, tc := range []struct {
		args   []string
		stderr string
	}{
		{nil, "usage: stompbox ctl"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"-nope", "overview"}, "flag provided but not defined"},
		{[]string{"overview", "extra"}, `unexpected argument "extra"`},
		{[]string{"connection"}, "want one connection ID"},
		{[]string{"connection", "a", "b"}, "want one connection ID"},
		{[]string{"close"}, "want a connection ID"},
		{[]string{"purge"}, "want one destination"},
		{[]string{"delete", "/queue/a", "/queue/b"}, "want one destination"},
		{[]string{"move-dlq", "-max", "-1", "/queue/DLQ.x"}, "-max -1"},
		{[]string{"peek", "-n", "0", "/queue/x"}, "-n 0"},
		{[]string{"connections", "-order", "up"}, `-order "up"`},
		{[]string{"queues", "-limit", "-5"}, "cannot be negative"},
		{[]string{"queues", "-limit", "x"}, "invalid value"},
		{[]string{"-user", "u", "overview"}, "-user needs -password"},
		{[]string{"-admin", "ftp://h", "overview"}, "want an http:// or https:// URL"},
		{[]string{"-timeout", "0s", "overview"}, "-timeout 0s"},
	} {
		code, out, errOut := runCtlTest(tc.args, env)
		if code != 2 || out != "" || !strings.Contains(errOut, tc.stderr) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 2, nothing, %q", tc.args, code, out, errOut, tc.stderr)
		}
	}
	if r := f.requests(); len(r) != 0 {
		t.Fatalf("usage errors sent requests: %+v", r)
	}
	for _, args := range [][]string{{"-h"}, {"queues", "-h"}} {
		if code, _, _ := runCtlTest(args, env); code != 0 {
			t.Errorf("%q: exit %d, want 0", args, code)
		}
	}
}

func TestCtlUnreachable(t *testing.T) {
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: connection refused
	code, _, errOut := runCtlTest([]string{"-admin", "http://" + addr, "overview"}, nil)
	if code != 1 || !strings.Contains(errOut, "connection refused by http://"+addr+"/api/overview") {
		t.Fatalf("exit %d, stderr %q: want 1 naming the URL", code, errOut)
	}

	f := newFakeAdmin(t)
	start := time.Now()
	// The fake API's slow path is reached through a base URL with a path.
	code, _, errOut = runCtlTest([]string{"-admin", f.srv.URL + "/api/slow", "-timeout", "200ms", "overview"}, nil)
	if code != 1 || !strings.Contains(errOut, "no answer from "+f.srv.URL+"/api/slow/api/overview within 200ms") {
		t.Fatalf("exit %d, stderr %q: want 1 and the timeout", code, errOut)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("took %v: -timeout not applied", d)
	}
}

func TestCtlUnits(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {1536, "1.5 KiB"}, {5 << 20, "5.0 MiB"}, {3 << 30, "3.0 GiB"}, {2 << 40, "2.0 TiB"}} {
		if got := fmtBytes(tc.n); got != tc.want {
			t.Errorf("fmtBytes(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{{-time.Second, "0s"}, {59 * time.Second, "59s"}, {61 * time.Second, "1m01s"}, {3*time.Hour + 5*time.Minute, "3h05m"}, {50 * time.Hour, "2d02h"}} {
		if got := fmtAge(tc.d); got != tc.want {
			t.Errorf("fmtAge(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
	if got := fmtRate(2.54); got != "2.5/s" {
		t.Errorf("fmtRate(2.54) = %q", got)
	}
	if got := truncateRunes("héllo wörld", 5); got != "héllo…" {
		t.Errorf("truncateRunes = %q", got)
	}
}

// Names come from clients: a cell with control characters is quoted, so it
// neither drives the operator's terminal nor breaks the table.
func TestCtlTerminalSafe(t *testing.T) {
	for in, want := range map[string]string{
		"/queue/orders":               "/queue/orders",
		"/queue/\x1b]52;c;aGk=\x07":   `"/queue/\x1b]52;c;aGk=\a"`,
		"/queue/a\tb":                 `"/queue/a\tb"`,
		"/queue/ünïcödé":              "/queue/ünïcödé",
		"/queue/line\nbreak\u0085end": `"/queue/line\nbreak\u0085end"`,
	} {
		if got := terminalSafe(in); got != want {
			t.Errorf("terminalSafe(%q) = %s, want %s", in, got, want)
		}
	}
}
