//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/debugger"
	"github.com/chromedp/chromedp"
	"github.com/go-stomp/stomp/v3"
)

const (
	// loadRate is what the publisher of TestBrowserHistoryResume sends to
	// the history topic, in messages per second, in batches every loadTick.
	loadRate = 1000
	loadTick = 10 * time.Millisecond
	// catchUpTimeout bounds the wait for the page to have every message
	// once the publisher stopped.
	catchUpTimeout = 20 * time.Second
	// resumeScenarioTimeout bounds one scenario script of these tests.
	resumeScenarioTimeout = time.Minute
)

// historyConfig is the broker configuration of the reconnect tests: history
// for /topic/e2e.# and /topic/chat.# (the demo chat), large enough to hold
// everything a test publishes.
const historyConfig = `topics:
  history:
    - pattern: "/topic/e2e.#"
      size: 40000
      max_age: 10m
    - pattern: "/topic/chat.#"
      size: 1000
      max_age: 1h
`

// loadPublisher sends "1", "2", ... to a topic over native STOMP at
// loadRate until stop, and reports how many it sent.
type loadPublisher struct {
	conn *stomp.Conn
	dest string
	sent atomic.Int64
	stop chan struct{}
	done chan error
	once sync.Once // of halt
}

func startLoadPublisher(t *testing.T, addr, dest string) *loadPublisher {
	t.Helper()
	var conn *stomp.Conn
	if err := bounded(func() (err error) {
		conn, err = stomp.Dial("tcp", addr, stomp.ConnOpt.HeartBeat(0, 0))
		return err
	}); err != nil {
		t.Fatalf("publisher: %v", err)
	}
	p := &loadPublisher{conn: conn, dest: dest, stop: make(chan struct{}), done: make(chan error, 1)}
	go p.run()
	t.Cleanup(func() { p.halt(t) })
	return p
}

func (p *loadPublisher) run() {
	tick := time.NewTicker(loadTick)
	defer tick.Stop()
	perTick := int(loadRate * loadTick / time.Second)
	for {
		select {
		case <-p.stop:
			// The last SEND waits for its RECEIPT: the broker has taken
			// every message before it.
			n := p.sent.Add(1)
			p.done <- p.conn.Send(p.dest, "text/plain", []byte(strconv.FormatInt(n, 10)), stomp.SendOpt.Receipt)
			return
		case <-tick.C:
			for range perTick {
				n := p.sent.Add(1)
				if err := p.conn.Send(p.dest, "text/plain", []byte(strconv.FormatInt(n, 10))); err != nil {
					p.done <- fmt.Errorf("SEND %d: %w", n, err)
					return
				}
			}
		}
	}
}

// halt stops the publisher (bounded; later calls do nothing) and returns
// how many messages it sent, the last with a RECEIPT.
func (p *loadPublisher) halt(t *testing.T) int {
	t.Helper()
	p.once.Do(func() {
		close(p.stop)
		select {
		case err := <-p.done:
			if err != nil {
				t.Errorf("publisher: %v", err)
			}
		case <-time.After(recvTimeout):
			t.Errorf("publisher did not stop within %v", recvTimeout)
		}
		_ = bounded(p.conn.Disconnect)
	})
	return int(p.sent.Load())
}

// pausePage stops every script of the tab for d (pauseScripts, then
// resumeScripts).
func pausePage(t *testing.T, tb *tab, d time.Duration) {
	t.Helper()
	pauseScripts(t, tb)
	time.Sleep(d)
	resumeScripts(t, tb)
}

// pauseScripts stops every script of the tab (the debugger pauses it): no
// timer, no event handler, no stomp.js heart-beat; the browser's network
// stack still runs (and answers WebSocket pings).
func pauseScripts(t *testing.T, tb *tab) {
	t.Helper()
	tb.run(t, chromedp.ActionFunc(func(ctx context.Context) error {
		if _, err := debugger.Enable().Do(ctx); err != nil {
			return err
		}
		return debugger.Pause().Do(ctx)
	}))
}

// resumeScripts lets the tab's scripts run again.
func resumeScripts(t *testing.T, tb *tab) {
	t.Helper()
	tb.run(t, debugger.Resume())
}

// resumeEvents is what the scenario page recorded about its client.
type resumeEvents struct {
	Connects []struct {
		Resumed bool `json:"resumed"`
	} `json:"connects"`
	Closes    []int    `json:"closes"`
	Errors    []string `json:"errors"`
	Recovered []bool   `json:"recovered"`
	Stats     struct {
		Connects   int `json:"connects"`
		Resumed    int `json:"resumed"`
		Duplicates int `json:"duplicates"`
		Ignored    int `json:"ignored"`
	} `json:"stats"`
}

// TestBrowserHistoryResume: a page (stomp.js and stompbox.js in headless
// Chromium) follows a history topic that a Go publisher feeds at 1,000
// messages per second, and its connection is cut three times:
//  1. the network goes offline for 3 s (CDP network emulation: Chromium
//     stalls the open WebSocket rather than closing it; stompbox.js finds
//     the server's heart-beats missing and reconnects once online, while
//     the broker closes the silent connection, heartbeat-timeout);
//  2. the page's scripts are paused for 4 s: the network is fine but the
//     page sends no heart-beat (and the broker, configured without
//     WebSocket pings here, gets no pong either), so the broker closes the
//     socket under it: the page sees ERROR heartbeat-timeout when it runs
//     again;
//  3. the page drops its WebSocket abruptly and is offline for 2 s.
//
// After each the module reconnects with its resume token and resumes its
// subscription after the last offset it delivered. The application must
// have seen every message exactly once, in order.
func TestBrowserHistoryResume(t *testing.T) {
	t.Parallel() // overlaps TestBrowserBackground
	ctx, cancel := context.WithTimeout(context.Background(), browserTestTimeout)
	defer cancel()
	site := startModuleSite(t)
	// Without WebSocket pings, so that a page whose scripts are paused goes
	// silent and the broker closes its connection (drop 2).
	config := historyConfig + "websocket:\n  ping_interval: 0s\n"
	broker := startBroker(t, "-config", writeConfig(t, config), "-heartbeat", "1s", "-allowed-origins", site.URL)
	b := startBrowser(t, ctx)
	page := openModulePage(t, b, "history", site, broker.httpAddr)
	topic := "/topic/e2e.load." + strconv.FormatInt(time.Now().UnixNano(), 36)

	var ok bool
	page.eval(t, `(async () => {
		window.got = [];
		const ev = window.ev = { connects: [], closes: [], errors: [], recovered: [] };
		const sb = window.sb = new stompbox.StompboxClient({
			brokerURL, reconnectDelay: 200, heartbeatIncoming: 1000, heartbeatOutgoing: 1000,
			onConnect: (c) => ev.connects.push({ resumed: c.resumed }),
			onClose: (e) => ev.closes.push(e.code),
			onError: (e) => ev.errors.push(e.code),
		});
		sb.subscribe(`+quote(topic)+`, (m) => got.push(Number(m.body)), {
			onRecovered: (r) => ev.recovered.push(r.recovered),
		});
		sb.activate();
		await e2e.waitFor('connected', () => sb.connected);
		// Once the page's own message is back, its SUBSCRIBE is in place.
		await sb.send({ destination: `+quote(topic)+`, body: '0' });
		await e2e.waitFor('the page\'s own message', () => got.length === 1);
		got.length = 0;
		return true;
	})()`, &ok)

	start := time.Now()
	pub := startLoadPublisher(t, broker.addr, topic)
	phase := func(what string, d time.Duration) {
		t.Logf("%5.1fs %s", time.Since(start).Seconds(), what)
		time.Sleep(d)
	}
	phase("load", 2*time.Second)
	setOffline(t, page, true)
	phase("drop 1: offline", 3*time.Second)
	setOffline(t, page, false)
	phase("online", 3*time.Second)
	t.Logf("%5.1fs drop 2: scripts paused", time.Since(start).Seconds())
	closedBefore := serverCloses(t, broker)
	pausePage(t, page, 4*time.Second)
	phase("resumed", 3*time.Second)
	closedByServer := serverCloses(t, broker) - closedBefore
	setOffline(t, page, true)
	page.run(t, chromedp.Evaluate(`window.sb.simulateDrop()`, nil))
	phase("drop 3: WebSocket dropped, offline", 2*time.Second)
	setOffline(t, page, false)
	phase("online", 2*time.Second)
	sent := pub.halt(t)
	t.Logf("%5.1fs publisher stopped after %d messages", time.Since(start).Seconds(), sent)

	var res struct {
		Got []int        `json:"got"`
		Ev  resumeEvents `json:"ev"`
	}
	page.evalWithin(t, resumeScenarioTimeout, fmt.Sprintf(`(async () => {
		await e2e.waitFor('all %d messages', () => got.length >= %d, %d).catch(() => {});
		await e2e.sleep(200); // anything beyond them would be a duplicate
		const ev = Object.assign({ stats: sb.stats }, window.ev);
		await sb.deactivate();
		return { got, ev };
	})()`, sent, sent, catchUpTimeout.Milliseconds()), &res)

	missing, dups, outOfOrder := checkSequence(res.Got, sent)
	ev := res.Ev
	t.Logf("received %d of %d; connects %+v, closes %v, errors %v, recovered %v, stats %+v",
		len(res.Got), sent, ev.Connects, ev.Closes, ev.Errors, ev.Recovered, ev.Stats)
	if len(missing) > 0 || len(dups) > 0 || outOfOrder > 0 {
		t.Errorf("the application saw %d of %d messages: %d missing (first %v), %d duplicates (first %v), %d out of order",
			len(res.Got), sent, len(missing), head(missing), len(dups), head(dups), outOfOrder)
	}
	if ev.Stats.Connects < 4 {
		t.Errorf("%d connects, want at least 4 (three drops)", ev.Stats.Connects)
	}
	if closedByServer < 1 {
		t.Errorf("drop 2: the broker closed %v connections (heartbeat-timeout, slow-consumer) while the page was paused, want 1", closedByServer)
	}
	// The broker's ERRORs of drops 1 and 3 went to sockets the page had
	// already given up; drop 2's arrives when the page's socket had room
	// for it behind the messages queued while it was paused.
	for _, code := range ev.Errors {
		if code != "heartbeat-timeout" && code != "slow-consumer" {
			t.Errorf("ERROR %q, want none but heartbeat-timeout or slow-consumer (drop 2)", code)
		}
	}
	for i, r := range ev.Recovered {
		if !r {
			t.Errorf("resume %d: RECEIPT recovered:false, want true (the history holds everything)", i+1)
		}
	}
	b.close()
	broker.stop()
}

// checkSequence compares what a page received with 1..sent: the numbers
// missing, those received more than once, and how many came after a
// larger one.
func checkSequence(got []int, sent int) (missing, dups []int, outOfOrder int) {
	seen := make(map[int]int, len(got))
	prev := 0
	for _, n := range got {
		seen[n]++
		if seen[n] == 2 {
			dups = append(dups, n)
		}
		if n < prev {
			outOfOrder++
		}
		prev = n
	}
	for n := 1; n <= sent; n++ {
		if seen[n] == 0 {
			missing = append(missing, n)
		}
	}
	return missing, dups, outOfOrder
}

// serverCloses is how many connections the broker has closed for
// heartbeat-timeout or as slow consumers (its /metrics).
func serverCloses(t *testing.T, b *brokerProc) float64 {
	t.Helper()
	page := authMetrics(t, b)
	n := 0.0
	for _, series := range []string{"stompbox_heartbeat_timeouts_total", `stompbox_disconnects_total{reason="slow-consumer"}`} {
		if v, err := strconv.ParseFloat(metricValue(page, series), 64); err == nil {
			n += v
		}
	}
	return n
}

// head is the first few elements of s, for messages.
func head(s []int) []int {
	return s[:min(len(s), 10)]
}
