//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

const (
	// chromiumEnv names the browser binary; the default is Debian's
	// chromium package, which `make e2e` installs when it is missing.
	chromiumEnv     = "STOMPBOX_E2E_CHROMIUM"
	defaultChromium = "/usr/bin/chromium"
	// harnessScript is installed as window.e2e on every scenario page.
	harnessScript = "testdata/browser_harness.js"
	// browserStartTimeout bounds Chromium's start and its first tab.
	browserStartTimeout = 30 * time.Second
	// browserCloseTimeout bounds a graceful close of the browser.
	browserCloseTimeout = 10 * time.Second
	// pageTimeout bounds loading a page and installing the harness.
	pageTimeout = 15 * time.Second
	// stepTimeout bounds one UI step or one scenario script. Scripts bound
	// each of their own waits (5 s by default, see the harness) and report
	// what they waited for; this is the backstop.
	stepTimeout = 30 * time.Second
)

// chromiumFlags are exactly the switches Chromium gets (besides
// --user-data-dir, a fresh directory per run, chromedp's own
// --remote-debugging-port=0 and what a test adds with startBrowser's
// extra options). chromedp's defaults are not used.
var chromiumFlags = []string{
	"headless", "no-sandbox", "disable-gpu", "disable-quic", "no-first-run",
	"disable-background-networking", "disable-component-update", "disable-sync",
}

// browser is one headless Chromium process for the whole test; each page
// is a tab in it.
type browser struct {
	t      *testing.T
	ctx    context.Context // the browser's (and its first tab's) chromedp context
	cancel context.CancelFunc
	output *syncBuffer // Chromium's stdout and stderr
	closed bool
	tabs   []context.CancelFunc // each closes a tab; idempotent
}

// startBrowser starts Chromium with a fresh user data dir and any extra
// options (e.g. a chromedp.Flag only one test needs). Its lifetime is
// bounded by parent; it is closed at cleanup unless the test closed it, and
// its output is shown when the test failed.
func startBrowser(t *testing.T, parent context.Context, extra ...chromedp.ExecAllocatorOption) *browser {
	t.Helper()
	path := os.Getenv(chromiumEnv)
	if path == "" {
		path = defaultChromium
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("Chromium: %v\ninstall Debian's chromium (make e2e does) or set %s", err, chromiumEnv)
	}
	out := &syncBuffer{}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.CombinedOutput(out),
		chromedp.WSURLReadTimeout(browserStartTimeout),
	}
	for _, f := range chromiumFlags {
		opts = append(opts, chromedp.Flag(f, true))
	}
	opts = append(opts, extra...)
	allocCtx, allocCancel := chromedp.NewExecAllocator(parent, opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	b := &browser{t: t, ctx: ctx, output: out, cancel: func() { cancel(); allocCancel() }}
	t.Cleanup(func() {
		if !b.closed {
			b.cancel() // kills the process if it is still there
		}
		if t.Failed() {
			t.Logf("Chromium output:\n%s", out.String())
		}
	})

	// The first Run starts the process and attaches to its first tab. It
	// must run on ctx itself, not on a shorter-lived child: chromedp ties
	// the tab's event loop to the context of this call.
	started := make(chan error, 1)
	go func() { started <- chromedp.Run(ctx) }()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("start Chromium: %v\n%s", err, out.String())
		}
	case <-time.After(browserStartTimeout):
		b.cancel()
		t.Fatalf("Chromium did not start within %v:\n%s", browserStartTimeout, out.String())
	}
	var version string
	if err := b.run(ctx, pageTimeout, chromedp.Evaluate(`navigator.userAgent`, &version)); err != nil {
		t.Fatalf("Chromium: %v", err)
	}
	t.Logf("browser: %s (%s)", path, version)
	return b
}

// run runs actions on a chromedp context with a deadline.
func (b *browser) run(ctx context.Context, timeout time.Duration, actions ...chromedp.Action) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return chromedp.Run(ctx, actions...)
}

// close closes the tabs, then shuts Chromium down gracefully
// (Browser.close, then waiting for the process to exit), bounded by
// browserCloseTimeout.
func (b *browser) close() {
	t := b.t
	t.Helper()
	b.closed = true
	for _, closeTab := range b.tabs {
		closeTab()
	}
	done := make(chan error, 1)
	go func() { done <- chromedp.Cancel(b.ctx) }()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("closing Chromium: %v", err)
		}
	case <-time.After(browserCloseTimeout):
		t.Errorf("Chromium did not close within %v; killing it", browserCloseTimeout)
	}
	b.cancel() // waits for the process to be gone
}

// tab is one browser tab showing a page of the broker under test.
type tab struct {
	b       *browser
	name    string
	ctx     context.Context
	console *syncBuffer // the page's console output and uncaught exceptions
}

// openTab opens a new tab on url and waits for it to load. The tab is
// closed at cleanup; its console output is shown when the test failed.
func (b *browser) openTab(t *testing.T, name, url string) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	tb := &tab{b: b, name: name, ctx: ctx, console: &syncBuffer{}}
	b.tabs = append(b.tabs, cancel)
	chromedp.ListenTarget(ctx, tb.record)
	t.Cleanup(func() {
		cancel()
		if t.Failed() {
			t.Logf("console of tab %s:\n%s", name, tb.console.String())
		}
	})
	// As in startBrowser, the tab's first Run must use its own context;
	// parent's deadline bounds it, and a hung navigation is cut off here.
	loaded := make(chan error, 1)
	go func() { loaded <- chromedp.Run(ctx, chromedp.Navigate(url)) }()
	select {
	case err := <-loaded:
		if err != nil {
			t.Fatalf("tab %s: open %s: %v", name, url, err)
		}
	case <-time.After(pageTimeout):
		cancel()
		t.Fatalf("tab %s: %s did not load within %v", name, url, pageTimeout)
	}
	return tb
}

// record keeps console messages and uncaught exceptions of the tab.
func (tb *tab) record(ev any) {
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		args := make([]string, 0, len(ev.Args))
		for _, a := range ev.Args {
			if len(a.Value) > 0 {
				args = append(args, string(a.Value))
			} else {
				args = append(args, a.Description)
			}
		}
		fmt.Fprintf(tb.console, "console.%s: %s\n", ev.Type, strings.Join(args, " "))
	case *runtime.EventExceptionThrown:
		fmt.Fprintf(tb.console, "exception: %s\n", ev.ExceptionDetails.Error())
	}
}

// run runs UI actions in the tab, bounded by stepTimeout.
func (tb *tab) run(t *testing.T, actions ...chromedp.Action) {
	t.Helper()
	if err := tb.b.run(tb.ctx, stepTimeout, actions...); err != nil {
		t.Fatalf("tab %s: %v", tb.name, err)
	}
}

// installHarness evaluates the scenario helpers (window.e2e) in the tab.
func (tb *tab) installHarness(t *testing.T) {
	t.Helper()
	src, err := os.ReadFile(harnessScript)
	if err != nil {
		t.Fatal(err)
	}
	if err := tb.b.run(tb.ctx, pageTimeout, chromedp.Evaluate(string(src), nil)); err != nil {
		t.Fatalf("tab %s: install %s: %v", tb.name, harnessScript, err)
	}
}

// eval runs a scenario script, an expression whose value is a promise (an
// async arrow function called at once), waits for it, and decodes the JSON
// value it resolves with into out. A rejected promise fails the test with
// the script's error.
func (tb *tab) eval(t *testing.T, script string, out any) {
	t.Helper()
	var raw []byte
	start := time.Now()
	err := tb.b.run(tb.ctx, stepTimeout, chromedp.Evaluate(script, &raw,
		func(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) }))
	if err != nil {
		t.Fatalf("tab %s: scenario script failed after %v: %v", tb.name, time.Since(start).Round(time.Millisecond), err)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		t.Fatalf("tab %s: scenario result %.2000s: %v", tb.name, raw, err)
	}
	if testing.Verbose() {
		t.Logf("result (%v): %.600s", time.Since(start).Round(time.Millisecond), raw)
	}
}

// requireDemoBuilt fails unless the broker at httpAddr serves the stomp.js
// bundle, i.e. `make web` ran before the binary was built.
func requireDemoBuilt(t *testing.T, httpAddr string) {
	t.Helper()
	client := &http.Client{Timeout: pageTimeout}
	res, err := client.Get("http://" + httpAddr + "/vendor/stomp.umd.min.js")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(io.LimitReader(res.Body, 1<<10))
	_ = res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /vendor/stomp.umd.min.js: %s: %.300s\nthe stomp.js bundle is not built into stompbox: run `make web` (make e2e does)",
			res.Status, body)
	}
}
