//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"
)

const (
	// presenceGrace is presence.grace of the broker in TestBrowserPresence:
	// longer than the demo chat's reconnect delay (2 s), short for the
	// test's sake (the default is 10 s).
	presenceGrace = 4 * time.Second
	// shortDrop and longDrop are how long the member page is cut off:
	// shorter than the grace period (counting the broker's heart-beat
	// timeout too), and well past both.
	shortDrop = 1 * time.Second
	longDrop  = 8 * time.Second
)

// presenceConfig adds a short presence grace period to historyConfig.
var presenceConfig = historyConfig + fmt.Sprintf("presence:\n  grace: %s\n", presenceGrace)

// presenceEvent is one join or leave a watcher page saw.
type presenceEvent struct {
	Kind string `json:"kind"`
	User string `json:"user"`
	ID   string `json:"id"`
	Info string `json:"info"`
}

// TestBrowserPresence: presence through stompbox.js between pages, with a
// grace period of 4 s.
//   - A member page (presence:true, presence-info Alice) drops its
//     WebSocket and is offline for 1 s: the watcher page sees no leave.
//   - It drops again for 8 s: the watcher sees exactly one leave, and a
//     join when it is back.
//   - The demo chat: two pages list each other by name, a page joining a
//     room with 60 messages shows the last 50, and "Simulate network drop"
//     on one page makes the other list it throughout, and the dropped
//     page gets the message sent while it was away.
func TestBrowserPresence(t *testing.T) {
	t.Parallel() // overlaps TestBrowserBackground
	ctx, cancel := context.WithTimeout(context.Background(), browserTestTimeout)
	defer cancel()
	site := startModuleSite(t)
	// Pages come from the test's site and from the broker itself (the demo
	// chat): any origin.
	broker := startBroker(t, "-config", writeConfig(t, presenceConfig), "-heartbeat", "1s", "-allowed-origins", "*")
	requireDemoBuilt(t, broker.httpAddr)
	b := startBrowser(t, ctx)
	topic := "/topic/e2e.room." + strconv.FormatInt(time.Now().UnixNano(), 36)

	watcher := openModulePage(t, b, "watcher", site, broker.httpAddr)
	var ok bool
	watcher.eval(t, `(async () => {
		window.events = [];
		const rec = (kind) => (m) => events.push({ kind, user: m.user, id: m.id, info: m.info });
		window.sb = new stompbox.StompboxClient({ brokerURL, reconnectDelay: 200, heartbeatIncoming: 1000, heartbeatOutgoing: 1000 });
		window.who = sb.presence(`+quote(topic)+`, { onJoin: rec('join'), onLeave: rec('leave') });
		sb.activate();
		await e2e.waitFor('connected', () => sb.connected);
		return true;
	})()`, &ok)
	member := openModulePage(t, b, "member", site, broker.httpAddr)
	member.eval(t, `(async () => {
		window.sb = new stompbox.StompboxClient({ brokerURL, reconnectDelay: 200, heartbeatIncoming: 1000, heartbeatOutgoing: 1000 });
		sb.subscribe(`+quote(topic)+`, () => {}, { presence: { id: 'tab-a', info: 'Alice' } });
		sb.activate();
		await e2e.waitFor('connected', () => sb.connected);
		return true;
	})()`, &ok)
	alice := presenceEvent{Kind: "join", User: "anonymous", ID: "tab-a", Info: "Alice"}
	waitEvents(t, watcher, 1)

	drop := func(d time.Duration) {
		t.Helper()
		setOffline(t, member, true)
		member.run(t, chromedp.Evaluate(`window.sb.simulateDrop()`, nil))
		time.Sleep(d)
		setOffline(t, member, false)
		waitJS(t, member, "the member page to reconnect", `window.sb.connected`)
	}

	drop(shortDrop)
	time.Sleep(presenceGrace + 2*time.Second) // a leave would have come by now
	if got := watcherEvents(t, watcher); !slices.Equal(got, []presenceEvent{alice}) {
		t.Errorf("after a drop of %v (grace %v): watcher saw %+v, want only the first join %+v", shortDrop, presenceGrace, got, alice)
	}

	drop(longDrop)
	waitEvents(t, watcher, 3)
	time.Sleep(time.Second) // anything more would show now
	leave := alice
	leave.Kind = "leave"
	if got := watcherEvents(t, watcher); !slices.Equal(got, []presenceEvent{alice, leave, alice}) {
		t.Errorf("after a drop of %v (grace %v): watcher saw %+v, want join, one leave, join", longDrop, presenceGrace, got)
	}
	var stats struct {
		Connects int `json:"connects"`
		Resumed  int `json:"resumed"`
	}
	member.run(t, chromedp.Evaluate(`window.sb.stats`, &stats))
	t.Logf("member page: %d connects, %d resumed", stats.Connects, stats.Resumed)

	testChatPresence(t, b, broker)
	b.close()
	broker.stop()
}

// waitEvents waits until the watcher page recorded n presence events.
func waitEvents(t *testing.T, watcher *tab, n int) {
	t.Helper()
	var ok bool
	err := watcher.b.run(watcher.ctx, longDrop+uiTimeout, chromedp.Poll(`window.events.length >= `+strconv.Itoa(n), &ok,
		chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(longDrop+uiTimeout-time.Second)))
	if err != nil {
		t.Fatalf("waiting for %d presence events: %v; the watcher saw %+v", n, err, watcherEvents(t, watcher))
	}
}

func watcherEvents(t *testing.T, watcher *tab) []presenceEvent {
	t.Helper()
	var ev []presenceEvent
	watcher.run(t, chromedp.Evaluate(`window.events`, &ev))
	return ev
}

// testChatPresence runs the demo chat part of TestBrowserPresence.
func testChatPresence(t *testing.T, b *browser, broker *brokerProc) {
	room := "e2e-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	dest := "/topic/chat." + room
	var c *stomp.Conn
	if err := bounded(func() (err error) {
		c, err = stomp.Dial("tcp", broker.addr, stomp.ConnOpt.HeartBeat(0, 0))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 60; i++ {
		body, _ := json.Marshal(map[string]string{"name": "history", "text": "m" + strconv.Itoa(i)})
		var opts []func(*frame.Frame) error
		if i == 60 {
			opts = append(opts, stomp.SendOpt.Receipt)
		}
		if err := c.Send(dest, "application/json", body, opts...); err != nil {
			t.Fatal(err)
		}
	}
	_ = bounded(c.Disconnect)

	alice := chatPage{b.openTab(t, "alice", "http://"+broker.httpAddr+"/?name=alice&room="+room)}
	alice.waitState(t, "connected")
	msgs := alice.waitMessages(t, 50)
	if len(msgs) != 50 || msgs[0].Text != "m11" || msgs[49].Text != "m60" {
		t.Errorf("alice's page on joining a room with 60 messages shows %d: first %+v, last %+v; want the last 50, m11 to m60",
			len(msgs), msgs[0], msgs[len(msgs)-1])
	}
	bob := chatPage{b.openTab(t, "bob", "http://"+broker.httpAddr+"/?name=bob&room="+room)}
	bob.waitState(t, "connected")
	for _, p := range []chatPage{alice, bob} {
		waitJS(t, p.tab, "both names under Online",
			`[...document.querySelectorAll('#members li')].map((li) => li.textContent).join(',') === 'alice,bob'`)
	}

	// bob's page notes every moment its list lacks alice.
	var ok bool
	bob.eval(t, `(async () => {
		window.aliceGone = 0;
		new MutationObserver(() => {
			if (![...document.querySelectorAll('#members li')].some((li) => li.textContent === 'alice')) {
				window.aliceGone++;
			}
		}).observe(document.getElementById('members'), { childList: true, subtree: true, characterData: true });
		return true;
	})()`, &ok)
	alice.run(t, chromedp.Click("#drop", chromedp.ByQuery))
	alice.waitState(t, "reconnecting")
	bob.say(t, "bob", "while you were away")
	alice.waitState(t, "connected")
	msgs = alice.waitMessages(t, 51)
	if last := msgs[len(msgs)-1]; last.Text != "while you were away" {
		t.Errorf("alice's page after the drop: last message %+v, want bob's, sent while it was away", last)
	}
	time.Sleep(presenceGrace + time.Second)
	var gone int
	bob.run(t, chromedp.Evaluate(`window.aliceGone`, &gone))
	if gone != 0 {
		t.Errorf("bob's page stopped listing alice %d times during her short drop, want never", gone)
	}
	if s := pageText(t, bob.tab, "online-count"); s != "2" {
		t.Errorf("bob's page: %s online, want 2", s)
	}
}
