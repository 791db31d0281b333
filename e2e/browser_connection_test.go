//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// Connection-level scenarios of TestBrowser: subprotocol negotiation,
// heart-beats, ERROR frames, reconnecting, the size limit, the origin check,
// shutdown. Each runs one
// script in a tab (helpers: testdata/browser_harness.js) and asserts the
// JSON it resolves with. Scripts use their own destinations, so they do not
// interfere with each other on a shared broker.

// jsFrame is a STOMP frame as a script reports it.
type jsFrame struct {
	Headers map[string]string `json:"headers"`
	Body    string            `json:"body"`
}

// jsClose is a WebSocket close event.
type jsClose struct {
	Code     int    `json:"code"`
	Reason   string `json:"reason"`
	WasClean bool   `json:"wasClean"`
}

// jsInbound is one inbound WebSocket message other than a heart-beat.
type jsInbound struct {
	Kind    string `json:"kind"` // "text" or "binary"
	Size    int    `json:"size"` // characters (text) or bytes (binary)
	Command string `json:"command"`
}

// jsEvents is what the harness recorded about one stomp.js client (ev).
type jsEvents struct {
	Connected []struct {
		Headers  map[string]string `json:"headers"`
		Protocol string            `json:"protocol"`
	} `json:"connected"`
	Errors         []jsFrame   `json:"errors"`
	Closes         []jsClose   `json:"closes"`
	Heartbeats     int         `json:"heartbeats"`
	HeartbeatsLost int         `json:"heartbeatsLost"`
	Pings          int         `json:"pings"`
	WS             []jsInbound `json:"ws"`
	Unhandled      []string    `json:"unhandled"`
}

// messageKinds returns the WebSocket message types that carried MESSAGE
// frames.
func (ev jsEvents) messageKinds() []string {
	var kinds []string
	for _, m := range ev.WS {
		if m.Command == "MESSAGE" {
			kinds = append(kinds, m.Kind)
		}
	}
	return kinds
}

// checkDisconnected asserts the client's last connection ended the orderly
// way: stomp.js's DISCONNECT got its RECEIPT, then close code 1000.
func checkDisconnected(t *testing.T, what string, ev jsEvents) {
	t.Helper()
	if n := len(ev.Closes); n == 0 || ev.Closes[n-1].Code != 1000 {
		t.Errorf("%s: WebSocket closes %+v, want the last with code 1000 (after DISCONNECT)", what, ev.Closes)
	}
	if len(ev.Unhandled) > 0 {
		t.Errorf("%s: MESSAGE frames for no subscription: %v", what, ev.Unhandled)
	}
}

// testSubprotocol: stomp.js offers v12.stomp, v11.stomp and v10.stomp; the
// broker picks the highest offered, and CONNECTED's version matches it.
func testSubprotocol(t *testing.T, page *tab) {
	var res []struct {
		Offered          []string `json:"offered"`
		Protocol         string   `json:"protocol"`
		ConnectedVersion string   `json:"connectedVersion"`
		Ev               jsEvents `json:"ev"`
	}
	page.eval(t, `(async () => {
		const out = [];
		for (const versions of [null, ['1.1', '1.0'], ['1.0']]) {
			const c = await e2e.connect(versions ? { stompVersions: new StompJs.Versions(versions) } : {});
			const r = {
				offered: c.stompVersions.protocolVersions(),
				protocol: c.webSocket.protocol,
				connectedVersion: c.connectedVersion,
			};
			await e2e.close(c);
			r.ev = c.ev;
			out.push(r);
		}
		return out;
	})()`, &res)

	want := []struct {
		offered  []string
		protocol string
		version  string
	}{
		{[]string{"v12.stomp", "v11.stomp", "v10.stomp"}, "v12.stomp", "1.2"},
		{[]string{"v11.stomp", "v10.stomp"}, "v11.stomp", "1.1"},
		{[]string{"v10.stomp"}, "v10.stomp", "1.0"},
	}
	if len(res) != len(want) {
		t.Fatalf("got %d results, want %d", len(res), len(want))
	}
	for i, w := range want {
		r := res[i]
		what := "offering " + strings.Join(w.offered, ",")
		if !slices.Equal(r.Offered, w.offered) {
			t.Errorf("%s: stomp.js offered %v", what, r.Offered)
		}
		if r.Protocol != w.protocol {
			t.Errorf("%s: webSocket.protocol %q, want %q", what, r.Protocol, w.protocol)
		}
		if len(r.Ev.Connected) != 1 {
			t.Errorf("%s: %d CONNECTED frames, want 1", what, len(r.Ev.Connected))
			continue
		}
		h := r.Ev.Connected[0].Headers
		if h["version"] != w.version || r.ConnectedVersion != w.version {
			t.Errorf("%s: CONNECTED version %q (stomp.js connectedVersion %q), want %q", what, h["version"], r.ConnectedVersion, w.version)
		}
		if !strings.HasPrefix(h["server"], "stompbox/") || h["session"] == "" {
			t.Errorf("%s: CONNECTED server %q session %q, want stompbox/<version> and a session id", what, h["server"], h["session"])
		}
		if w.version != "1.0" && h["heart-beat"] == "" {
			t.Errorf("%s: CONNECTED without heart-beat", what)
		}
		checkDisconnected(t, what, r.Ev)
	}
}

// testHeartbeats: heart-beats 1000,1000 both ways (the broker runs with
// -heartbeat 1s) keep a page that sends nothing connected for 5 s, and the
// connection still works afterwards.
func testHeartbeats(t *testing.T, page *tab) {
	var res struct {
		Idle struct {
			Ms         int  `json:"ms"`
			Heartbeats int  `json:"heartbeats"`
			Pings      int  `json:"pings"`
			Lost       int  `json:"lost"`
			Closes     int  `json:"closes"`
			Connected  bool `json:"connected"`
		} `json:"idle"`
		Got []string `json:"got"`
		Ev  jsEvents `json:"ev"`
	}
	page.eval(t, `(async () => {
		const c = await e2e.connect({ heartbeatIncoming: 1000, heartbeatOutgoing: 1000 });
		const start = performance.now();
		await e2e.sleep(5000);
		const idle = {
			ms: Math.round(performance.now() - start),
			heartbeats: c.ev.heartbeats,
			pings: c.ev.pings,
			lost: c.ev.heartbeatsLost,
			closes: c.ev.closes.length,
			connected: c.connected,
		};
		const dest = '/queue/' + e2e.unique('e2e.heartbeat');
		const got = [];
		await e2e.subscribe(c, dest, (m) => got.push(m.body));
		await e2e.publish(c, { destination: dest, body: 'still connected' });
		await e2e.waitFor('a message after idling', () => got.length > 0);
		await e2e.close(c);
		return { idle, got, ev: c.ev };
	})()`, &res)

	if len(res.Ev.Connected) != 1 {
		t.Fatalf("%d CONNECTED frames, want 1 (no reconnect)", len(res.Ev.Connected))
	}
	if hb := res.Ev.Connected[0].Headers["heart-beat"]; hb != "1000,1000" {
		t.Errorf("CONNECTED heart-beat %q, want 1000,1000", hb)
	}
	idle := res.Idle
	if idle.Ms < 5000 || !idle.Connected || idle.Closes != 0 || idle.Lost != 0 {
		t.Errorf("after %d ms idle: connected %v, %d WebSocket closes, %d heart-beat losses; want connected, none",
			idle.Ms, idle.Connected, idle.Closes, idle.Lost)
	}
	// One each way per second; allow for timer slack at both ends.
	if idle.Heartbeats < 3 || idle.Pings < 3 {
		t.Errorf("in %d ms idle: %d heart-beats received, %d sent; want at least 3 each", idle.Ms, idle.Heartbeats, idle.Pings)
	}
	if !slices.Equal(res.Got, []string{"still connected"}) {
		t.Errorf("after idling: got %v, want [still connected]", res.Got)
	}
	checkDisconnected(t, "after idling", res.Ev)
}

// testStompError: a SEND to a destination outside /topic, /queue and
// /temp-queue gets an ERROR that onStompError sees with error-code
// invalid-destination, the receipt-id the SEND asked for and retryable
// false; then close code 1002.
func testStompError(t *testing.T, page *tab) {
	var ev jsEvents
	page.eval(t, `(async () => {
		const c = await e2e.connect();
		c.publish({ destination: '/foo/bar', body: 'nowhere', headers: { receipt: 'bad-destination-1' } });
		await e2e.waitFor('ERROR and close', () => c.ev.errors.length > 0 && c.ev.closes.length > 0);
		await e2e.close(c);
		return c.ev;
	})()`, &ev)

	if len(ev.Errors) != 1 {
		t.Fatalf("ERROR frames %+v, want one", ev.Errors)
	}
	h := ev.Errors[0].Headers
	if h["error-code"] != "invalid-destination" || h["receipt-id"] != "bad-destination-1" || h["retryable"] != "false" || h["message"] == "" {
		t.Errorf("ERROR headers %v, want error-code invalid-destination, receipt-id bad-destination-1, retryable false, a message", h)
	}
	if ev.Errors[0].Body == "" {
		t.Errorf("ERROR without a body explaining it")
	}
	if len(ev.Closes) != 1 || ev.Closes[0].Code != 1002 {
		t.Errorf("WebSocket closes %+v, want one with code 1002 (protocol error)", ev.Closes)
	}
}

// testReconnect: the broker closes the socket (the page sends it a frame
// with an unknown command); stomp.js reconnects by itself (reconnectDelay),
// its onConnect subscribes again, and messages from the same client and
// from another one arrive on the new subscription.
func testReconnect(t *testing.T, page *tab) {
	var res struct {
		Got []struct {
			Body       string `json:"body"`
			Connection int    `json:"connection"`
		} `json:"got"`
		Ev jsEvents `json:"ev"`
	}
	page.eval(t, `(async () => {
		const dest = '/topic/' + e2e.unique('e2e.reconnect');
		const got = [], subscribed = [];
		const c = e2e.client({
			reconnectDelay: 200,
			onConnect: () => {
				const n = c.ev.connected.length;
				const [id, receipt] = e2e.receipt(c, 'SUBSCRIBE on connection ' + n);
				c.subscribe(dest, (m) => got.push({ body: m.body, connection: n }), { receipt: id });
				receipt.then(() => subscribed.push(n), () => {});
			},
		});
		c.activate();
		await e2e.waitFor('the first subscription', () => subscribed.length === 1);
		await e2e.publish(c, { destination: dest, body: 'before' });
		await e2e.waitFor('the message before the drop', () => got.length === 1);

		c.webSocket.send('garbage\n\n\0');
		await e2e.waitFor('a reconnect and a new subscription', () => subscribed.length === 2, 10000);
		await e2e.publish(c, { destination: dest, body: 'after, same client' });
		const other = await e2e.connect();
		await e2e.publish(other, { destination: dest, body: 'after, other client' });
		await e2e.waitFor('both messages after the reconnect', () => got.length === 3);
		await e2e.close(c, other);
		return { got, ev: c.ev };
	})()`, &res)

	want := []string{"before/1", "after, same client/2", "after, other client/2"}
	var got []string
	for _, m := range res.Got {
		got = append(got, fmt.Sprintf("%s/%d", m.Body, m.Connection))
	}
	if !slices.Equal(got, want) {
		t.Errorf("messages (body/connection) %v, want %v", got, want)
	}
	ev := res.Ev
	if len(ev.Connected) != 2 {
		t.Fatalf("%d CONNECTED frames, want 2", len(ev.Connected))
	}
	if a, b := ev.Connected[0].Headers["session"], ev.Connected[1].Headers["session"]; a == b {
		t.Errorf("both connections have session %q, want a new one after reconnecting", a)
	}
	if len(ev.Errors) != 1 || ev.Errors[0].Headers["error-code"] != "unknown-command" {
		t.Errorf("ERROR frames %+v, want one with error-code unknown-command", ev.Errors)
	}
	if len(ev.Closes) != 2 || ev.Closes[0].Code != 1002 {
		t.Errorf("WebSocket closes %+v, want 1002 (the drop) then the final DISCONNECT's", ev.Closes)
	}
	checkDisconnected(t, "final", ev)
}

// testSizeLimit runs against a broker with -max-body 64 KiB: a frame under
// the limit goes through; a 128 KiB one (in one WebSocket message, split by
// stomp.js into 8 KiB messages, or without content-length) gets ERROR
// frame-too-large in onStompError and close code 1009 in onWebSocketClose.
// The demo page says "message too large" and stops reconnecting.
func testSizeLimit(t *testing.T, b *browser, httpAddr string) {
	page := b.openTab(t, "size limit", "http://"+httpAddr+"/")
	page.installHarness(t)
	// Frames over -max-body: with content-length the parser refuses the
	// frame at its headers, without it once the body outgrows the limit;
	// whether the frame comes in one WebSocket message or in 8 KiB ones
	// must not matter. (Chromium sends a large message in several
	// WebSocket frames, so from a browser the STOMP limit is always met
	// before the WebSocket message limit, which is the whole frame's:
	// command line + headers + body.)
	over := []struct {
		name     string
		size     int
		split    bool
		noLength bool
	}{
		{"128 KiB in one WebSocket message", 2 * smallMaxBody, false, false},
		{"128 KiB split into 8 KiB WebSocket messages", 2 * smallMaxBody, true, false},
		{"128 KiB without content-length", 2 * smallMaxBody, false, true},
	}
	overJS, err := json.Marshal(func() (rows [][]any) {
		for _, o := range over {
			rows = append(rows, []any{o.name, o.size, o.split, o.noLength})
		}
		return rows
	}())
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Under []int               `json:"under"`
		Over  map[string]jsEvents `json:"over"`
	}
	page.eval(t, fmt.Sprintf(`(async () => {
		await window.stompboxChat.client.deactivate();
		const dest = '/queue/' + e2e.unique('e2e.limit');
		const ok = await e2e.connect();
		const under = [];
		await e2e.subscribe(ok, dest, (m) => under.push(m.body.length));
		await e2e.publish(ok, { destination: dest, body: 'u'.repeat(%d) });
		await e2e.waitFor('the message under the limit', () => under.length > 0);
		await e2e.close(ok);
		const over = {};
		for (const [name, size, split, noLength] of %s) {
			const c = await e2e.connect({ splitLargeFrames: split });
			c.publish({ destination: dest, body: 'o'.repeat(size), skipContentLengthHeader: noLength });
			await e2e.waitFor('the close after an oversized frame', () => c.ev.closes.length > 0);
			await e2e.close(c);
			over[name] = c.ev;
		}
		return { under, over };
	})()`, smallMaxBody-1024, overJS), &res)

	if len(res.Under) != 1 || res.Under[0] != smallMaxBody-1024 {
		t.Errorf("message of %d bytes under the limit: received lengths %v", smallMaxBody-1024, res.Under)
	}
	for _, o := range over {
		ev, ok := res.Over[o.name]
		switch {
		case !ok:
			t.Errorf("%s: no result", o.name)
			continue
		case len(ev.Errors) != 1:
			t.Errorf("%s: ERROR frames %+v, want one", o.name, ev.Errors)
		case ev.Errors[0].Headers["error-code"] != "frame-too-large" || ev.Errors[0].Headers["retryable"] != "false":
			t.Errorf("%s: ERROR headers %v, want error-code frame-too-large, retryable false", o.name, ev.Errors[0].Headers)
		default:
			t.Logf("%s: ERROR %q", o.name, ev.Errors[0].Body)
		}
		if len(ev.Closes) != 1 || ev.Closes[0].Code != 1009 {
			t.Errorf("%s: WebSocket closes %+v, want one with code 1009", o.name, ev.Closes)
		}
	}

	// The same through the demo page's UI: the error is shown as such and
	// not retried.
	chat := openChat(t, b, "size limit chat", httpAddr, "e2e-limit")
	var active bool
	chat.run(t,
		chromedp.SetValue("#text", strings.Repeat("x", 2*smallMaxBody), chromedp.ByQuery),
		chromedp.Click("#send", chromedp.ByQuery),
	)
	chat.waitState(t, "error")
	chat.run(t, chromedp.Evaluate(`window.stompboxChat.client.active`, &active))
	if s := chat.text(t, "error"); s != "message too large" {
		t.Errorf("demo page #error %q, want %q", s, "message too large")
	}
	if s := chat.text(t, "close-code"); s != "1009" {
		t.Errorf("demo page #close-code %q, want 1009", s)
	}
	if active {
		t.Errorf("demo page's stomp.js client is still active (reconnecting) after frame-too-large")
	}
}

// testOriginCheck: with no -allowed-origins the broker accepts only pages
// whose origin host is the host they connect to. The demo page served as
// http://localhost:<port>/ connects to ws://localhost:<port>/ws; its attempt
// on ws://127.0.0.1:<port>/ws (same listener, foreign origin) is refused in
// the handshake (403), which a page sees as close code 1006.
func testOriginCheck(t *testing.T, b *browser, httpAddr string) {
	_, port, err := net.SplitHostPort(httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	page := b.openTab(t, "origin", "http://localhost:"+port+"/")
	page.installHarness(t)
	var res struct {
		Origin  string   `json:"origin"`
		Same    jsEvents `json:"same"`
		Foreign jsEvents `json:"foreign"`
	}
	page.eval(t, `(async () => {
		await window.stompboxChat.client.deactivate();
		const same = await e2e.connect({ brokerURL: 'ws://localhost:' + location.port + '/ws' });
		await e2e.close(same);
		const foreign = e2e.client({ brokerURL: 'ws://127.0.0.1:' + location.port + '/ws' });
		foreign.activate();
		await e2e.waitFor('the refused WebSocket to close', () => foreign.ev.closes.length > 0);
		await e2e.close(foreign);
		return { origin: location.origin, same: same.ev, foreign: foreign.ev };
	})()`, &res)

	if len(res.Same.Connected) != 1 {
		t.Errorf("page %s on ws://localhost:%s/ws: %d CONNECTED frames, want 1; closes %+v", res.Origin, port, len(res.Same.Connected), res.Same.Closes)
	}
	if len(res.Foreign.Connected) != 0 || len(res.Foreign.Closes) != 1 || res.Foreign.Closes[0].Code != 1006 {
		t.Errorf("page %s on ws://127.0.0.1:%s/ws: CONNECTED %d, closes %+v; want refused: no CONNECTED, one close with code 1006",
			res.Origin, port, len(res.Foreign.Connected), res.Foreign.Closes)
	}
}

// testShutdown stops the broker (SIGTERM; it must exit 0) while a
// stomp.js client and a demo chat page are connected: the client sees ERROR
// server-shutdown (retryable) and close code 1012, and the demo page says
// it is reconnecting.
func testShutdown(t *testing.T, b *browser, broker *brokerProc) {
	page := b.openTab(t, "shutdown", "http://"+broker.httpAddr+"/")
	page.installHarness(t)
	var connected bool
	page.eval(t, `(async () => {
		await window.stompboxChat.client.deactivate();
		window.held = await e2e.connect({ reconnectDelay: 0 });
		return window.held.connected;
	})()`, &connected)
	chat := openChat(t, b, "shutdown chat", broker.httpAddr, "e2e-shutdown")

	broker.stop()

	var ev jsEvents
	page.eval(t, `(async () => {
		await e2e.waitFor('the close at shutdown', () => window.held.ev.closes.length > 0);
		await e2e.close(window.held);
		return window.held.ev;
	})()`, &ev)
	if len(ev.Errors) != 1 || ev.Errors[0].Headers["error-code"] != "server-shutdown" || ev.Errors[0].Headers["retryable"] != "true" {
		t.Errorf("at shutdown: ERROR frames %+v, want one with error-code server-shutdown, retryable true", ev.Errors)
	}
	if len(ev.Closes) != 1 || ev.Closes[0].Code != 1012 {
		t.Errorf("at shutdown: WebSocket closes %+v, want one with code 1012", ev.Closes)
	}
	chat.waitState(t, "reconnecting")
	if s := chat.text(t, "close-code"); s != "1012" {
		t.Errorf("demo page #close-code %q after shutdown, want 1012", s)
	}
}
