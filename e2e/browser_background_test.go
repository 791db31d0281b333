//go:build e2e

package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
)

const (
	// backgroundPause is how long TestBrowserBackground keeps the page's
	// scripts from running.
	backgroundPause = 5 * time.Minute
	// backgroundConfig: the broker pings WebSocket clients every second and
	// (with -heartbeat 2s) closes one silent for 4 s.
	backgroundConfig = "websocket:\n  ping_interval: 1s\n"
)

// TestBrowserBackground: a page whose scripts do not run for 5 minutes (the
// debugger pauses it: no timer, no event handler, no stomp.js heart-beat;
// the strongest form of a background tab's throttling) keeps its
// connection, because the broker's WebSocket pings are answered by the
// browser itself and count as liveness. Once the page runs again it has
// not reconnected, its connection works, and it gets the message sent to
// it meanwhile. (The same pause without pings is drop 2 of
// TestBrowserHistoryResume: the broker closes the connection after 2 s.)
//
// CDP's Page.setWebLifecycleState frozen would be stronger still, but
// Chromium closes a frozen page's WebSockets when it resumes (close code
// 1006, whatever the broker does), so a frozen page cannot keep one.
//
// It is long, so it runs in parallel with the other parallel tests.
func TestBrowserBackground(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), backgroundPause+browserTestTimeout)
	defer cancel()
	site := startModuleSite(t)
	broker := startBroker(t, "-config", writeConfig(t, backgroundConfig), "-heartbeat", "2s", "-allowed-origins", site.URL)
	b := startBrowser(t, ctx)
	page := openModulePage(t, b, "background", site, broker.httpAddr)
	queue := "/queue/e2e.background." + time.Now().Format("150405.000000")

	var hb string
	page.eval(t, `(async () => {
		window.got = [];
		window.closes = [];
		window.sb = new stompbox.StompboxClient({
			brokerURL, reconnectDelay: 200, heartbeatIncoming: 2000, heartbeatOutgoing: 2000,
			onClose: (e) => closes.push(e.code),
		});
		let connected;
		sb.onConnect = (c) => { connected = c.headers['heart-beat']; };
		sb.subscribe(`+quote(queue)+`, (m) => got.push(m.body));
		sb.activate();
		await e2e.waitFor('connected', () => connected);
		await sb.send({ destination: `+quote(queue)+`, body: 'before' });
		await e2e.waitFor('the message before the pause', () => got.length === 1);
		return connected;
	})()`, &hb)
	if hb != "2000,2000" {
		t.Fatalf("CONNECTED heart-beat %q, want 2000,2000 (heart-beats on both ways)", hb)
	}

	start := time.Now()
	pauseScripts(t, page)
	time.Sleep(backgroundPause - 10*time.Second)
	// Near the end, while the page still cannot run, a message for it.
	var c *stomp.Conn
	if err := bounded(func() (err error) {
		c, err = stomp.Dial("tcp", broker.addr, stomp.ConnOpt.HeartBeat(0, 0))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := bounded(func() error {
		return c.Send(queue, "text/plain", []byte("while paused"), stomp.SendOpt.Receipt)
	}); err != nil {
		t.Fatal(err)
	}
	_ = bounded(c.Disconnect)
	time.Sleep(time.Until(start.Add(backgroundPause)))
	resumeScripts(t, page)
	t.Logf("scripts paused for %v", time.Since(start).Round(time.Second))

	var res struct {
		Got       []string `json:"got"`
		Closes    []int    `json:"closes"`
		Connected bool     `json:"connected"`
		Connects  int      `json:"connects"`
	}
	page.eval(t, `(async () => {
		await e2e.waitFor('the message sent during the pause', () => got.length === 2).catch(() => {});
		// Two heart-beat periods: a connection found dead would be closed now.
		await e2e.sleep(4500);
		await sb.send({ destination: `+quote(queue)+`, body: 'after' });
		await e2e.waitFor('the message after the pause', () => got.length === 3).catch(() => {});
		return { got, closes, connected: sb.connected, connects: sb.stats.connects };
	})()`, &res)
	if res.Connects != 1 || len(res.Closes) != 0 || !res.Connected {
		t.Errorf("after %v without scripts: %d connects, WebSocket closes %v, connected %v; want the first connection still open",
			backgroundPause, res.Connects, res.Closes, res.Connected)
	}
	if want := []string{"before", "while paused", "after"}; len(res.Got) != 3 || res.Got[1] != want[1] || res.Got[2] != want[2] {
		t.Errorf("messages %q, want %q", res.Got, want)
	}
	b.close()
	broker.stop()
}
