//go:build e2e

package e2e

// Helpers of console_test.go: waiting on the console's page, finding its
// rows, acting through its dialogs, answering the browser's Basic prompt,
// and the go-stomp client side.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/go-stomp/stomp/v3"
)

// requireConsoleBuilt fails unless the broker's admin listener serves the
// vendored uPlot, i.e. `make web` ran before the binary was built.
func requireConsoleBuilt(t *testing.T, admin, token string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+admin+"/console/vendor/uPlot.iife.min.js", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := (&http.Client{Timeout: pageTimeout}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(io.LimitReader(res.Body, 1<<10))
	_ = res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /console/vendor/uPlot.iife.min.js: %s: %.300s\nuPlot is not built into stompbox: run `make web` (make e2e does)",
			res.Status, body)
	}
}

// consolePage is the console in a tab.
type consolePage struct{ tab *tab }

// waitFor polls the JavaScript expression cond in the page until it is
// truthy (bounded by consoleWait) and returns its value as JSON.
func (p consolePage) waitFor(t *testing.T, what, cond string) string {
	t.Helper()
	script := fmt.Sprintf(`(async () => {
		const deadline = Date.now() + %d;
		for (;;) {
			const v = %s;
			if (v) return JSON.stringify(v);
			if (Date.now() > deadline) throw new Error('timed out waiting for ' + %s);
			await new Promise(r => setTimeout(r, 100));
		}
	})()`, consoleWait.Milliseconds(), cond, quote(what))
	var out string
	p.tab.evalWithin(t, consoleWait+5*time.Second, script, &out)
	return out
}

// consoleRowJS is an expression finding the row of kind that names key:
// "destination" (key: its name), "connection" (key: a subscription's
// destination) or "anonymous" (the first connection of user anonymous).
func consoleRowJS(kind, key string) string {
	switch kind {
	case "anonymous":
		return `document.querySelector('[data-testid=connection-row][data-user=anonymous]')`
	case "destination":
		return fmt.Sprintf(`Array.from(document.querySelectorAll('[data-testid=destination-row]')).find(r => r.dataset.name === %s)`, quote(key))
	}
	return fmt.Sprintf(`Array.from(document.querySelectorAll('[data-testid=connection-row]')).find(r =>
		Array.from(r.querySelectorAll('[data-testid=subscription]')).some(s => s.textContent.startsWith(%s + ' (')))`, quote(key))
}

// waitMessages filters the destinations table to queue and waits for its
// messages column to read n (a queue that went away reads 0).
func (p consolePage) waitMessages(t *testing.T, queue string, n int) {
	t.Helper()
	p.filter(t, "destinations", queue)
	p.waitFor(t, fmt.Sprintf("%s to hold %d messages", queue, n), fmt.Sprintf(`(() => {
		const r = %s;
		const v = r ? Number(r.querySelector('[data-col=messages]').dataset.value) : 0;
		return v === %d ? {messages: v} : null;
	})()`, consoleRowJS("destination", queue), n))
}

// filter sets a table's filter box as a user typing would.
func (p consolePage) filter(t *testing.T, table, q string) {
	t.Helper()
	var ok bool
	p.tab.evalWithin(t, consoleWait, fmt.Sprintf(`(() => {
		const f = document.querySelector('[data-testid=%s-filter]');
		if (f.value === %s) return true;
		f.value = %s;
		f.dispatchEvent(new Event('input'));
		return true;
	})()`, table, quote(q), quote(q)), &ok)
}

// rowAction clicks button testid in the destination row of queue and
// confirms the dialog.
func (p consolePage) rowAction(t *testing.T, queue, testid, reason string) {
	t.Helper()
	p.filter(t, "destinations", queue)
	p.rowActionIn(t, "destination", queue, testid, reason)
}

// rowActionIn clicks button testid in the row of kind naming key, then
// confirms the dialog if one opens (typing reason when it asks for one).
func (p consolePage) rowActionIn(t *testing.T, kind, key, testid, reason string) {
	t.Helper()
	p.waitFor(t, testid+" on "+key, fmt.Sprintf(`(() => {
		const r = %s;
		const b = r && r.querySelector('[data-testid=%s]');
		if (b) b.click();
		return !!b;
	})()`, consoleRowJS(kind, key), testid))
	if testid == "peek" {
		return
	}
	p.waitFor(t, "the confirmation dialog", `document.querySelector('[data-testid=confirm-dialog]').open`)
	if reason != "" {
		p.tab.run(t, chromedp.SetValue(`[data-testid=confirm-reason]`, reason, chromedp.ByQuery))
	}
	p.tab.run(t, chromedp.Click(`[data-testid=confirm-ok]`, chromedp.ByQuery))
}

// waitResult waits for the action's answer to show, containing want.
func (p consolePage) waitResult(t *testing.T, want string) {
	t.Helper()
	p.waitFor(t, "the result "+want, fmt.Sprintf(`(() => {
		const r = document.querySelector('[data-testid=result]');
		if (r.dataset.state === 'error') throw new Error('action failed: ' + r.textContent);
		return r.textContent.includes(%s) && r.textContent;
	})()`, quote(want)))
}

// screenshot writes the overview, its charts filled with the test's
// traffic, to docs/img/console.png.
func screenshot(t *testing.T, p consolePage) {
	t.Helper()
	var uptime string
	p.tab.run(t, chromedp.Click(`[data-testid=tab-overview]`, chromedp.ByQuery),
		chromedp.TextContent(`#uptime`, &uptime, chromedp.ByQuery))
	// Two more events: every chart has drawn again at the overview's size.
	for i := range 2 {
		p.waitFor(t, fmt.Sprintf("overview event %d", i), fmt.Sprintf(`document.querySelector('#uptime').textContent !== %s`, quote(uptime)))
		p.tab.run(t, chromedp.TextContent(`#uptime`, &uptime, chromedp.ByQuery))
	}
	var png []byte
	p.tab.run(t, chromedp.FullScreenshot(&png, 100)) // quality 100 gives a PNG (less, a JPEG)
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(root, "docs", "img", "console.png")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(png))
}

// jsonString is s as JSON.stringify writes it.
func jsonString(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err) // a string always marshals
	}
	// JSON.stringify does not escape <, > and & as encoding/json does.
	r := strings.NewReplacer(`\u003c`, "<", `\u003e`, ">", `\u0026`, "&")
	return r.Replace(string(b))
}

// dialConsoleClient connects a go-stomp client to b over TCP (anonymous);
// it is disconnected at cleanup if the test did not.
func dialConsoleClient(t *testing.T, b *brokerProc) *stomp.Conn {
	t.Helper()
	c, err := stomp.Dial("tcp", b.addr, stomp.ConnOpt.HeartBeat(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect() })
	return c
}

// sendN sends n messages "message 0".. to dest, each with a receipt.
func sendN(t *testing.T, c *stomp.Conn, dest string, n int) {
	t.Helper()
	for i := range n {
		if err := c.Send(dest, "text/plain", []byte(fmt.Sprintf("message %d", i)), stomp.SendOpt.Receipt); err != nil {
			t.Fatal(err)
		}
	}
}

// readN reads n messages from sub, each within consoleWait.
func readN(t *testing.T, sub *stomp.Subscription, n int) []*stomp.Message {
	t.Helper()
	out := make([]*stomp.Message, 0, n)
	for range n {
		select {
		case m := <-sub.C:
			if m.Err != nil {
				t.Fatal(m.Err)
			}
			out = append(out, m)
		case <-time.After(consoleWait):
			t.Fatalf("got %d of %d messages within the wait", len(out), n)
		}
	}
	return out
}
