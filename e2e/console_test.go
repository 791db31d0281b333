//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/go-stomp/stomp/v3"
)

const (
	// consoleToken is the admin bearer token of the broker under test; the
	// browser sends it on every request (page, fetches, event stream).
	consoleToken = "console-e2e-admin-token"
	// consoleWait bounds each wait for the console to show something: the
	// tables refresh every 2 s, the overview every second.
	consoleWait = 10 * time.Second
	// screenshotEnv, set to 1, makes TestConsole write the overview to
	// docs/img/console.png (off in CI, so the committed file stays).
	screenshotEnv = "STOMPBOX_E2E_SCREENSHOT"
)

// TestConsole drives the admin console in Chromium against a real broker
// with a journal and limits.max_redeliveries 1: a go-stomp client's
// connection, user and subscription; a queue's depth rising and falling;
// a purge and a DLQ move taking effect; paging, sorting and filtering that
// a refresh keeps; a peek; an operator closing a connection, whose client
// gets the reason in its ERROR.
func TestConsole(t *testing.T) {
	t.Setenv("STOMPBOX_ADMIN_TOKEN", consoleToken)
	b := startBroker(t, "-journal-dir", t.TempDir(), "-max-redeliveries", "1")
	defer b.stop()
	m := adminAddr.FindStringSubmatch(b.log.String())
	if m == nil {
		t.Fatalf("no admin address in the log:\n%s", b.log.String())
	}
	admin := m[1]
	requireConsoleBuilt(t, admin, consoleToken)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	br := startBrowser(t, ctx, chromedp.WindowSize(1400, 1000))
	defer br.close()
	page := br.openTab(t, "console", "about:blank")
	page.run(t, network.Enable(),
		network.SetExtraHTTPHeaders(network.Headers{"Authorization": "Bearer " + consoleToken}),
		chromedp.Navigate("http://"+admin+"/console/"))
	cp := consolePage{tab: page}
	cp.waitFor(t, "the event stream", `document.querySelector('[data-testid=stream]').dataset.state === 'live' &&
		document.querySelector('[data-testid=node]').textContent !== ''`)

	t.Run("connection with user and subscription", func(t *testing.T) {
		c := dialConsoleClient(t, b)
		defer func() { _ = c.Disconnect() }()
		if _, err := c.Subscribe("/queue/console.watched", stomp.AckClientIndividual); err != nil {
			t.Fatal(err)
		}
		cp.tab.run(t, chromedp.Click(`[data-testid=tab-connections]`, chromedp.ByQuery))
		got := cp.waitFor(t, "the client's row", `(() => {
			for (const r of document.querySelectorAll('[data-testid=connection-row]')) {
				const subs = Array.from(r.querySelectorAll('[data-testid=subscription]'), s => s.textContent);
				if (subs.some(s => s.includes('/queue/console.watched'))) {
					return {user: r.querySelector('[data-col=user]').textContent,
						transport: r.querySelector('[data-col=transport]').textContent, subs};
				}
			}
			return null;
		})()`)
		for _, want := range []string{`"user":"anonymous"`, `"transport":"tcp"`, `/queue/console.watched (client-individual)`} {
			if !strings.Contains(got, want) {
				t.Errorf("connection row %s lacks %s", got, want)
			}
		}
	})

	cp.tab.run(t, chromedp.Click(`[data-testid=tab-destinations]`, chromedp.ByQuery))

	t.Run("queue depth rises and falls", func(t *testing.T) {
		const queue = "/queue/console.depth"
		c := dialConsoleClient(t, b)
		defer func() { _ = c.Disconnect() }()
		sendN(t, c, queue, 5)
		cp.waitMessages(t, queue, 5)
		sub, err := c.Subscribe(queue, stomp.AckAuto)
		if err != nil {
			t.Fatal(err)
		}
		readN(t, sub, 5)
		cp.waitMessages(t, queue, 0)
	})

	t.Run("purge", func(t *testing.T) {
		const queue = "/queue/console.purge"
		c := dialConsoleClient(t, b)
		defer func() { _ = c.Disconnect() }()
		sendN(t, c, queue, 3)
		cp.waitMessages(t, queue, 3)
		cp.rowAction(t, queue, "purge", "")
		cp.waitResult(t, `"purged":3`)
		cp.waitMessages(t, queue, 0)
	})

	t.Run("move a DLQ back", func(t *testing.T) {
		const queue, dlq = "/queue/console.retry", "/queue/DLQ.console.retry"
		c := dialConsoleClient(t, b)
		sendN(t, c, queue, 1)
		sub, err := c.Subscribe(queue, stomp.AckClientIndividual)
		if err != nil {
			t.Fatal(err)
		}
		// Delivered, redelivered once (max_redeliveries 1), then dead.
		for range 2 {
			msgs := readN(t, sub, 1)
			if err := c.Nack(msgs[0]); err != nil {
				t.Fatal(err)
			}
		}
		// The consumer goes, so the moved message stays where we can see it.
		if err := c.Disconnect(); err != nil {
			t.Fatal(err)
		}
		cp.waitMessages(t, dlq, 1)
		cp.rowAction(t, dlq, "move-dlq", "")
		cp.waitResult(t, `"moved":1`)
		cp.waitMessages(t, queue, 1)
		cp.waitMessages(t, dlq, 0)
	})

	t.Run("paging, sorting and filtering survive the refresh", func(t *testing.T) {
		c := dialConsoleClient(t, b)
		defer func() { _ = c.Disconnect() }()
		// 60 queues, /queue/console.page.N holding N%7+1 messages: more
		// than a page (50) of them, with an order by messages to check.
		for i := range 60 {
			sendN(t, c, fmt.Sprintf("/queue/console.page.%02d", i), i%7+1)
		}
		p := cp
		p.filter(t, "destinations", "console.page")
		p.waitFor(t, "the first page", `document.querySelector('[data-testid=destinations-range]').textContent === '1–50 of 60'`)
		p.tab.run(t, chromedp.Click(`th[data-sort=messages]`, chromedp.ByQuery))
		p.waitFor(t, "ascending by messages", `document.querySelector('th[data-sort=messages]').getAttribute('aria-sort') === 'ascending'`)
		p.tab.run(t, chromedp.Click(`th[data-sort=messages]`, chromedp.ByQuery))
		p.waitFor(t, "descending by messages", `document.querySelector('th[data-sort=messages]').getAttribute('aria-sort') === 'descending'`)
		p.tab.run(t, chromedp.Click(`[data-testid=destinations-next]`, chromedp.ByQuery))
		p.waitFor(t, "the second page", `document.querySelector('[data-testid=destinations-range]').textContent === '51–60 of 60'`)
		// Two refreshes later the user is still on the second page, sorted
		// and filtered as they chose: the last 10 of the descending order
		// are the 1-message queues (i%7 == 0: 9 of them) and one of 2.
		uptime := func() string {
			var s string
			p.tab.run(t, chromedp.TextContent(`#uptime`, &s, chromedp.ByQuery))
			return s
		}
		for range 3 { // at least 2 s: one table refresh
			u := uptime()
			p.waitFor(t, "a second to pass", fmt.Sprintf(`document.querySelector('#uptime').textContent !== %s`, quote(u)))
		}
		got := p.waitFor(t, "the sorted second page", `(() => {
			const range = document.querySelector('[data-testid=destinations-range]').textContent;
			const msgs = Array.from(document.querySelectorAll('[data-testid=destination-row] [data-col=messages]'), c => Number(c.dataset.value));
			return msgs.length === 10 && {range, msgs};
		})()`)
		if want := `{"range":"51–60 of 60","msgs":[2,1,1,1,1,1,1,1,1,1]}`; got != want {
			t.Errorf("second page = %s, want %s", got, want)
		}
	})

	t.Run("names are text, never markup", func(t *testing.T) {
		const queue = `/queue/console.<img src=x onerror="window.pwned=1">`
		c := dialConsoleClient(t, b)
		defer func() { _ = c.Disconnect() }()
		sendN(t, c, queue, 1)
		cp.waitMessages(t, queue, 1)
		got := cp.waitFor(t, "the row's name", fmt.Sprintf(`(() => {
			const r = %s;
			return r && {name: r.querySelector('[data-col=name]').textContent,
				imgs: document.querySelectorAll('[data-testid=destinations-table] img').length,
				pwned: window.pwned === 1};
		})()`, consoleRowJS("destination", queue)))
		if want := fmt.Sprintf(`{"name":%s,"imgs":0,"pwned":false}`, jsonString(queue)); got != want {
			t.Errorf("row = %s, want %s", got, want)
		}
	})

	t.Run("peek", func(t *testing.T) {
		const queue = "/queue/console.retry" // holds the message moved back
		cp.rowAction(t, queue, "peek", "")
		got := cp.waitFor(t, "the peeked message", `(() => {
			const m = document.querySelector('[data-testid=peek-message]');
			return m && {body: m.querySelector('[data-testid=peek-body]').textContent,
				headers: m.querySelector('table.headers').textContent};
		})()`)
		for _, want := range []string{`"body":"message 0"`, "destination" + queue} {
			if !strings.Contains(got, want) {
				t.Errorf("peek view %s lacks %s", got, want)
			}
		}
		cp.tab.run(t, chromedp.Click(`[data-testid=peek-close]`, chromedp.ByQuery))
	})

	t.Run("operator closes a connection", func(t *testing.T) {
		const reason = "maintenance window <b>now</b>"
		c := dialConsoleClient(t, b)
		sub, err := c.Subscribe("/queue/console.closing", stomp.AckAuto)
		if err != nil {
			t.Fatal(err)
		}
		cp.tab.run(t, chromedp.Click(`[data-testid=tab-connections]`, chromedp.ByQuery))
		cp.waitFor(t, "the client's row", consoleRowJS("connection", "/queue/console.closing"))
		cp.rowActionIn(t, "connection", "/queue/console.closing", "close-connection", reason)
		cp.waitResult(t, `"closed":true`)

		var msg *stomp.Message
		select {
		case msg = <-sub.C:
		case <-time.After(consoleWait):
			t.Fatal("no ERROR within the wait after the operator closed the connection")
		}
		var serr *stomp.Error
		if msg == nil || !errors.As(msg.Err, &serr) {
			t.Fatalf("got %+v, want an ERROR", msg)
		}
		if got := serr.Frame.Header.Get("error-code"); got != "closed-by-operator" {
			t.Errorf("error-code = %q, want closed-by-operator", got)
		}
		if want := "closed by an operator: " + reason; serr.Message != want {
			t.Errorf("ERROR message = %q, want %q", serr.Message, want)
		}
		cp.waitFor(t, "the row to go", `!`+consoleRowJS("connection", "/queue/console.closing"))
	})

	if os.Getenv(screenshotEnv) == "1" {
		screenshot(t, cp)
	}
}

// TestConsoleBasicAuth opens the console as a users-file user with role
// monitor over HTTP Basic, answering the browser's own credentials prompt
// (through DevTools, as a user would type them): the page, its fetches and
// its event stream are authenticated, and an action is refused with the
// API's 403.
func TestConsoleBasicAuth(t *testing.T) {
	users := filepath.Join(t.TempDir(), "users")
	writeUsers(t, users, "watcher", "monitor", "watch-pass")
	b := startBroker(t, "-auth-users-file", users)
	defer b.stop()
	m := adminAddr.FindStringSubmatch(b.log.String())
	if m == nil {
		t.Fatalf("no admin address in the log:\n%s", b.log.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	br := startBrowser(t, ctx)
	defer br.close()
	tb := br.openTab(t, "console", "about:blank")
	prompts := answerBasicPrompts(tb, "watcher", "watch-pass")
	tb.run(t, fetch.Enable().WithHandleAuthRequests(true), chromedp.Navigate("http://"+m[1]+"/console/"))
	cp := consolePage{tab: tb}
	cp.waitFor(t, "the event stream", `document.querySelector('[data-testid=stream]').dataset.state === 'live'`)

	// Anonymous clients may connect but not subscribe here (a users file
	// and no ACL): the client's row is the anonymous one.
	c := dialConsoleClient(t, b)
	defer func() { _ = c.Disconnect() }()
	cp.tab.run(t, chromedp.Click(`[data-testid=tab-connections]`, chromedp.ByQuery))
	cp.rowActionIn(t, "anonymous", "", "close-connection", "")
	got := cp.waitFor(t, "the refusal", `(() => {
		const r = document.querySelector('[data-testid=result]');
		return r.dataset.state === 'error' && r.textContent;
	})()`)
	if !strings.Contains(got, "failed: 403: ") || !strings.Contains(got, "needs role admin") {
		t.Errorf("result = %s, want the API's 403", got)
	}
	// Refused, so the client is still there.
	cp.waitFor(t, "the client's row", consoleRowJS("anonymous", ""))
	if n := prompts.Load(); n < 1 {
		t.Errorf("the browser was never asked for credentials (%d prompts)", n)
	}
}

// answerBasicPrompts makes tb's requests go on unchanged and answers every
// credentials prompt (a 401 with a Basic challenge) with user and password;
// it counts the prompts. It takes effect with fetch.Enable. Each answer is
// sent from a goroutine (a listener must not block the tab's event loop)
// that ends when its command returns or the tab closes.
func answerBasicPrompts(tb *tab, user, password string) *atomic.Int64 {
	var prompts atomic.Int64
	do := func(a interface{ Do(context.Context) error }) {
		go func() {
			c := chromedp.FromContext(tb.ctx)
			_ = a.Do(cdp.WithExecutor(tb.ctx, c.Target))
		}()
	}
	chromedp.ListenTarget(tb.ctx, func(ev any) {
		switch ev := ev.(type) {
		case *fetch.EventRequestPaused:
			do(fetch.ContinueRequest(ev.RequestID))
		case *fetch.EventAuthRequired:
			prompts.Add(1)
			do(fetch.ContinueWithAuth(ev.RequestID, &fetch.AuthChallengeResponse{
				Response: fetch.AuthChallengeResponseResponseProvideCredentials,
				Username: user, Password: password,
			}))
		}
	})
	return &prompts
}
