package server

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	"github.com/gobwas/ws"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/frames"
)

// presenceGrace is the grace period of these tests: long enough for a
// client to reconnect on a loaded machine, short enough to wait out.
const presenceGrace = time.Second

// quiet waits out the grace period and a few sweeps: a presence event that
// was going to come (a leave) has come by then.
const quiet = presenceGrace + 500*time.Millisecond

// gsPresenceEvent returns the next presence event of sub as "event body",
// checking the headers every presence MESSAGE carries.
func gsPresenceEvent(t *testing.T, sub *stomp.Subscription, dest string) string {
	t.Helper()
	m := gsRecv(t, sub)
	if m.Destination != dest || m.ContentType != "application/json" || m.Header.Get("message-id") == "" ||
		m.Header.Get("subscription") != sub.Id() || m.Header.Get("ack") != "" {
		t.Fatalf("presence MESSAGE headers %v", m.Header)
	}
	return m.Header.Get("presence-event") + " " + string(m.Body)
}

// gsNoMessage requires sub to get nothing for d.
func gsNoMessage(t *testing.T, sub *stomp.Subscription, d time.Duration) {
	t.Helper()
	select {
	case m := <-sub.C:
		t.Fatalf("unexpected %s %s", m.Header.Get("presence-event"), m.Body)
	case <-time.After(d):
	}
}

// Over TCP with go-stomp: the snapshot, a join with the exact JSON, a
// reconnect inside the grace period that makes no event, a longer absence
// that makes exactly one leave, and the metrics.
func TestPresenceGoStomp(t *testing.T) {
	reg := prometheus.NewRegistry()
	srv := startServer(t, Config{Registry: reg, Broker: broker.Config{PresenceGrace: presenceGrace}})
	admin := startAdmin(t, srv.Server)
	login := func(user string) func(*stomp.Conn) error { return stomp.ConnOpt.Login(user, "any") }
	const dest = "/presence/chat.lobby"
	watcher := dialGS(t, srv, login("watcher"))
	w := watcher.subscribe(dest, stomp.AckAuto)
	if got := gsPresenceEvent(t, w, dest); got != `snapshot {"members":[]}` {
		t.Fatalf("first event %s", got)
	}
	join := func(user, id, info string) *gsConn {
		c := dialGS(t, srv, login(user))
		c.subscribe("/topic/chat.lobby", stomp.AckAuto, stomp.SubscribeOpt.Header("presence", "true"),
			stomp.SubscribeOpt.Header("presence-id", id), stomp.SubscribeOpt.Header("presence-info", info))
		return c
	}
	alice := join("alice", "tab1", "Alice")
	if got := gsPresenceEvent(t, w, dest); got != `join {"user":"alice","id":"tab1","info":"Alice"}` {
		t.Fatalf("got %s", got)
	}

	alice.close() // DISCONNECT: the grace period starts
	alice = join("alice", "tab1", "Alice")
	gsNoMessage(t, w, quiet)
	join("bob", "", "Bob")
	if got := gsPresenceEvent(t, w, dest); got != `join {"user":"bob","id":"","info":"Bob"}` {
		t.Fatalf("after a reconnect within the grace period: %s, want only bob's join", got)
	}

	alice.close()
	if got := gsPresenceEvent(t, w, dest); got != `leave {"user":"alice","id":"tab1","info":"Alice"}` {
		t.Fatalf("got %s, want alice's leave", got)
	}
	gsNoMessage(t, w, quiet) // one leave, not two
	late := dialGS(t, srv, login("late"))
	if got := gsPresenceEvent(t, late.subscribe(dest, stomp.AckAuto), dest); got !=
		`snapshot {"members":[{"user":"bob","id":"","info":"Bob"}]}` {
		t.Fatalf("late snapshot %s", got)
	}

	body := scrapeUntil(t, admin, "stompbox_presence_members", "1")
	checkSamples(t, body, map[string]string{
		`stompbox_presence_events_total{event="join"}`:     "2",
		`stompbox_presence_events_total{event="leave"}`:    "1",
		`stompbox_presence_events_total{event="snapshot"}`: "2",
	})
}

// wsPresenceEvent reads the next MESSAGE over WebSocket: one text message
// holding one presence event for subscription id.
func wsPresenceEvent(t *testing.T, c *wsClient, id, dest string) string {
	t.Helper()
	f, op := c.next()
	if f.Command != frames.CmdMessage || op != ws.OpText {
		t.Fatalf("got %s (opcode %v) %q, want a presence MESSAGE in a text message", f.Command, op, f.Body)
	}
	var got []string
	for _, h := range f.Headers {
		got = append(got, string(h.Key)+":"+string(h.Value))
	}
	want := []string{"subscription:" + id, "message-id:" + header(f, "message-id"), "destination:" + dest,
		"content-type:application/json", "presence-event:" + header(f, "presence-event"),
		"content-length:" + strconv.Itoa(len(f.Body))}
	if !slices.Equal(got, want) || header(f, "message-id") == "" {
		t.Fatalf("presence MESSAGE headers\n got %q\nwant %q", got, want)
	}
	return header(f, "presence-event") + " " + string(f.Body)
}

// Over WebSocket: events are text messages with exact headers and JSON
// (escaped), a dropped socket that reconnects inside the grace period makes
// no event, and a SEND to a presence destination is forbidden (close 1008).
func TestPresenceWebSocket(t *testing.T) {
	_, url := startWebServer(t, Config{Broker: broker.Config{PresenceGrace: presenceGrace}})
	w := dialWSClient(t, url, nil, "v12.stomp")
	w.connect("login:watcher")
	w.text(frame("SUBSCRIBE", "", "id:p", "destination:/presence/room", "receipt:r"))
	if f, _ := w.next(); f.Command != frames.CmdReceipt || header(f, "receipt-id") != "r" {
		t.Fatalf("got %s, want the RECEIPT before the snapshot", f.Command)
	}
	if got := wsPresenceEvent(t, w, "p", "/presence/room"); got != `snapshot {"members":[]}` {
		t.Fatalf("got %s", got)
	}
	join := func(user, info string) *wsClient {
		c := dialWSClient(t, url, nil, "v12.stomp")
		c.connect("login:" + user)
		c.text(frame("SUBSCRIBE", "", "id:s", "destination:/topic/room", "presence:true",
			"presence-info:"+info, "receipt:j"))
		if f, _ := c.next(); f.Command != frames.CmdReceipt {
			t.Fatalf("SUBSCRIBE presence:true got %s %q", f.Command, f.Body)
		}
		return c
	}
	// On the wire \\ is an escaped backslash (STOMP 1.2).
	zoe := join("zoë", `Zoë "Z" \\ <b>`+"\t")
	want := `join {"user":"zoë","id":"","info":"Zoë \"Z\" \\ \u003cb\u003e\t"}`
	if got := wsPresenceEvent(t, w, "p", "/presence/room"); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}

	_ = zoe.conn.Close() // the network drops, no DISCONNECT
	join("zoë", `Zoë "Z" \\ <b>`+"\t")
	marker := dialWSClient(t, url, nil, "v12.stomp")
	marker.connect("login:marker")
	_ = w.conn.SetReadDeadline(time.Now().Add(quiet))
	if _, err := ws.ReadFrame(w.br); err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("read within the quiet period: %v, want a timeout (no event)", err)
	}
	marker.text(frame("SUBSCRIBE", "", "id:s", "destination:/topic/room", "presence:true"))
	if got := wsPresenceEvent(t, w, "p", "/presence/room"); got != `join {"user":"marker","id":"","info":""}` {
		t.Fatalf("after a reconnect within the grace period: %s, want only the marker's join", got)
	}

	w.text(frame("SEND", "fake", "destination:/presence/room"))
	f, _ := w.next()
	checkERROR(t, f, errorWant{message: "forbidden", code: broker.CodeForbidden})
	w.expectClose(ws.StatusPolicyViolation)
}

// Over TCP: reading /presence/x needs the subscribe right on /topic/x, and
// losing it closes the watcher at the next re-authorization.
func TestPresenceAuthorization(t *testing.T) {
	authz := &grantsByUser{grants: map[string]map[string]bool{"alice": {"/topic/room": true}}}
	srv := startServer(t, Config{Broker: broker.Config{Authorizer: authz}})
	bob := dialRaw(t, srv.addr)
	bob.connect("login:bob")
	bob.send(frame("SUBSCRIBE", "", "id:p", "destination:/presence/room"))
	bob.expectERROR(errorWant{message: "forbidden", code: broker.CodeForbidden})

	alice := dialRaw(t, srv.addr)
	alice.connect("login:alice")
	alice.send(frame("SUBSCRIBE", "", "id:p", "destination:/presence/room", "receipt:r"))
	alice.expectReceipt("r")
	if f := alice.next(5 * time.Second); header(f, "presence-event") != "snapshot" {
		t.Fatalf("got %s %v, want the snapshot", f.Command, f.Headers)
	}
	authz.revoke("alice", "/topic/room")
	srv.Reauthorize()
	alice.expectERROR(errorWant{message: "forbidden", code: broker.CodeForbidden})
}

// Over TCP: presence-info is bounded (1 KiB), and so are the members of a
// set: past either, ERROR.
func TestPresenceBounds(t *testing.T) {
	srv := startServer(t, Config{Broker: broker.Config{MaxPresenceMembers: 1}})
	c := dialRaw(t, srv.addr)
	c.connect("login:alice")
	c.send(frame("SUBSCRIBE", "", "id:s", "destination:/topic/room", "presence:true",
		"presence-info:"+strings.Repeat("é", broker.MaxPresenceInfo/2)+"x"))
	c.expectERROR(errorWant{message: "invalid presence-info header", code: broker.CodeInvalidHeader})

	first := dialRaw(t, srv.addr)
	first.connect("login:alice")
	first.send(frame("SUBSCRIBE", "", "id:s", "destination:/topic/room", "presence:true",
		"presence-info:"+strings.Repeat("é", broker.MaxPresenceInfo/2), "receipt:r"))
	first.expectReceipt("r")
	second := dialRaw(t, srv.addr)
	second.connect("login:bob")
	second.send(frame("SUBSCRIBE", "", "id:s", "destination:/topic/room", "presence:true", "receipt:r"))
	second.expectERROR(errorWant{message: "limit exceeded", code: broker.CodeLimitExceeded, retryable: true, receipt: "r"})
}
