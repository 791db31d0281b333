//go:build e2e

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

const (
	// browserTestTimeout bounds the whole browser test, Chromium included.
	browserTestTimeout = 3 * time.Minute
	// smallMaxBody is -max-body of the broker that the size-limit scenario
	// runs against; the scenario sends twice as much.
	smallMaxBody = 64 << 10
	// uiTimeout bounds a wait for the demo page to show something.
	uiTimeout = 10 * time.Second
)

// TestBrowser drives headless Chromium (Debian's chromium, through
// chromedp) against real stompbox processes. All STOMP traffic comes from
// stomp.js in a page the broker served: the scenario scripts build
// StompJs.Client instances on ws://<page host>/ws (same origin, so the
// origin check passes), and the demo chat is used through its UI. Each
// scenario returns JSON that the Go side asserts (browser_connection_test.go,
// browser_messaging_test.go, browser_body_test.go).
//
// Scenarios share one broker (started with -heartbeat 1s for the
// heart-beat scenario) on distinct destinations; the size-limit scenario
// needs a small -max-body and gets a broker of its own, which is then shut
// down under a connected page. Both brokers must exit 0 on SIGTERM, with no
// data race reported.
func TestBrowser(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), browserTestTimeout)
	defer cancel()

	shared := startBroker(t, "-heartbeat", "1s")
	small := startBroker(t, "-max-body", strconv.Itoa(smallMaxBody))
	requireDemoBuilt(t, shared.httpAddr)
	b := startBrowser(t, ctx)

	// The scenario tab shows the demo page, which has loaded stomp.js; the
	// page's own chat client is switched off so that only the scenarios'
	// clients talk to the broker from this tab.
	page := b.openTab(t, "scenarios", "http://"+shared.httpAddr+"/")
	page.installHarness(t)
	var active bool
	page.eval(t, `(async () => { await window.stompboxChat.client.deactivate(); return window.stompboxChat.client.active; })()`, &active)
	if active {
		t.Fatal("the scenario page's chat client is still active after deactivate()")
	}

	t.Run("subprotocol and CONNECTED version", func(t *testing.T) { testSubprotocol(t, page) })
	t.Run("topic fan-out to 5 clients in order", func(t *testing.T) { testTopicFanOut(t, page) })
	t.Run("queue competing consumers exactly once", func(t *testing.T) { testQueueCompeting(t, page) })
	t.Run("client-individual ack and NACK redelivery", func(t *testing.T) { testAckNack(t, page) })
	t.Run("transaction commit and abort", func(t *testing.T) { testTransactions(t, page) })
	t.Run("receipts", func(t *testing.T) { testReceipts(t, page) })
	t.Run("heart-beats keep an idle page connected", func(t *testing.T) { testHeartbeats(t, page) })
	t.Run("binary body round-trip", func(t *testing.T) { testBinaryBody(t, page) })
	t.Run("1 MiB body round-trip", func(t *testing.T) { testLargeBody(t, page) })
	t.Run("header escaping round-trip", func(t *testing.T) { testHeaderEscaping(t, page) })
	t.Run("ERROR with error-code", func(t *testing.T) { testStompError(t, page) })
	t.Run("reconnect after the server drops the socket", func(t *testing.T) { testReconnect(t, page) })
	t.Run("frame over the size limit", func(t *testing.T) { testSizeLimit(t, b, small.httpAddr) })
	t.Run("origin check", func(t *testing.T) { testOriginCheck(t, b, shared.httpAddr) })
	t.Run("demo chat between two pages", func(t *testing.T) { testDemoChat(t, b, shared.httpAddr) })
	// Not a subtest: it stops the broker, which only the test that started
	// it may do.
	testShutdown(t, b, small)

	b.close()
	shared.stop()
}

// chatMessage is one entry of the demo page's #messages list.
type chatMessage struct {
	Name string `json:"name"` // data-name
	Text string `json:"text"`
	Mine bool   `json:"mine"`
}

// chatPage is a tab showing the demo chat.
type chatPage struct{ *tab }

// openChat opens the demo chat in a new tab on room and waits until it
// says it is connected.
func openChat(t *testing.T, b *browser, name, httpAddr, room string) chatPage {
	t.Helper()
	p := chatPage{b.openTab(t, name, "http://"+httpAddr+"/?room="+room)}
	p.waitState(t, "connected")
	return p
}

// waitState waits until #state shows state.
func (p chatPage) waitState(t *testing.T, state string) {
	t.Helper()
	var ok bool
	p.run(t, chromedp.Poll(`document.getElementById('state').textContent === `+strconv.Quote(state), &ok,
		chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(uiTimeout)))
}

// say sets #name (which holds a random guest name), types text into #text
// key by key, as a user would, and clicks #send.
func (p chatPage) say(t *testing.T, name, text string) {
	t.Helper()
	var left string
	p.run(t,
		chromedp.SetValue("#name", name, chromedp.ByQuery),
		chromedp.SendKeys("#text", text, chromedp.ByQuery),
		chromedp.Click("#send", chromedp.ByQuery),
		chromedp.Value("#text", &left, chromedp.ByQuery),
	)
	if left != "" {
		t.Errorf("tab %s: #text holds %q after sending, want it cleared", p.name, left)
	}
}

// messagesScript reads #messages.
const messagesScript = `[...document.querySelectorAll('#messages li')].map((li) => ({
	name: li.dataset.name,
	text: (li.querySelector('.text') || {}).textContent || '',
	mine: li.classList.contains('mine'),
}))`

// waitMessages waits until #messages holds n entries and returns them.
func (p chatPage) waitMessages(t *testing.T, n int) []chatMessage {
	t.Helper()
	var ok bool
	p.run(t, chromedp.Poll(`document.querySelectorAll('#messages li').length >= `+strconv.Itoa(n), &ok,
		chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(uiTimeout)))
	var msgs []chatMessage
	p.run(t, chromedp.Evaluate(messagesScript, &msgs))
	return msgs
}

// text returns the text content of the element with id.
func (p chatPage) text(t *testing.T, id string) string {
	t.Helper()
	var s string
	p.run(t, chromedp.Evaluate(`document.getElementById(`+strconv.Quote(id)+`).textContent`, &s))
	return s
}

// testDemoChat: two demo-chat pages in one room exchange messages through
// the real UI (name, text, Send), each sees both in order, and a
// screenshot of one is kept for the log.
func testDemoChat(t *testing.T, b *browser, httpAddr string) {
	room := "e2e-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	alice := openChat(t, b, "alice", httpAddr, room)
	bob := openChat(t, b, "bob", httpAddr, room)

	const fromAlice, fromBob = "hello from alice: <b>not bold</b> & \u00e9t\u00e9 \u2713", "hi alice, bob here"
	alice.say(t, "alice", fromAlice)
	if got := bob.waitMessages(t, 1); len(got) != 1 || got[0] != (chatMessage{Name: "alice", Text: fromAlice}) {
		t.Fatalf("bob's page after alice sent: %+v, want one message from alice with %q", got, fromAlice)
	}
	bob.say(t, "bob", fromBob)

	want := map[string][]chatMessage{
		"alice": {{Name: "alice", Text: fromAlice, Mine: true}, {Name: "bob", Text: fromBob}},
		"bob":   {{Name: "alice", Text: fromAlice}, {Name: "bob", Text: fromBob, Mine: true}},
	}
	for _, p := range []chatPage{alice, bob} {
		got := p.waitMessages(t, 2)
		if !slices.Equal(got, want[p.name]) {
			t.Errorf("%s's page shows %+v, want %+v", p.name, got, want[p.name])
		}
		if s := p.text(t, "state"); s != "connected" {
			t.Errorf("%s's page: #state %q, want connected", p.name, s)
		}
		if s := p.text(t, "destination"); s != "/topic/chat."+room {
			t.Errorf("%s's page: #destination %q, want /topic/chat.%s", p.name, s, room)
		}
		if s := p.text(t, "error"); s != "" {
			t.Errorf("%s's page: #error %q, want none", p.name, s)
		}
	}

	var png []byte
	alice.run(t, chromedp.FullScreenshot(&png, 100))
	path := filepath.Join(t.TempDir(), "demo-chat.png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of alice's page (%d bytes): %s", len(png), path)
}
