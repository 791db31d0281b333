//go:build e2e

package e2e

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// Helpers of the browser tests of web/dist/stompbox.js (the reconnect-proof
// module): a web server for its scenario page, network cuts through CDP,
// broker configuration files.

const (
	// webDist is the demo pages' directory as the broker embeds it
	// (stomp.js included once `make web` ran).
	webDist = "../web/dist"
	// modulePage is the scenario page: stomp.js, and stompbox.js as
	// window.stompbox.
	modulePage = "testdata/module"
)

// startModuleSite serves web/dist at / and the scenario page at /e2e/ on
// 127.0.0.1:0; the broker must allow its origin (-allowed-origins). It is
// closed at cleanup.
func startModuleSite(t *testing.T) *httptest.Server {
	t.Helper()
	if _, err := os.Stat(filepath.Join(webDist, vendorBundlePath)); err != nil {
		t.Fatalf("%v: the stomp.js bundle is not in web/dist: run `make web` (make e2e does)", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/", http.FileServer(http.Dir(webDist)))
	mux.Handle("/e2e/", http.StripPrefix("/e2e/", http.FileServer(http.Dir(modulePage))))
	site := httptest.NewServer(mux)
	t.Cleanup(site.Close)
	return site
}

// vendorBundlePath is the stomp.js bundle under web/dist.
const vendorBundlePath = "vendor/stomp.umd.min.js"

// openModulePage opens the scenario page for the broker at httpAddr and
// waits until stompbox.js has loaded; the harness (window.e2e) is installed.
func openModulePage(t *testing.T, b *browser, name string, site *httptest.Server, httpAddr string) *tab {
	t.Helper()
	page := b.openTab(t, name, site.URL+"/e2e/?broker="+httpAddr)
	var ok bool
	page.run(t, chromedp.Poll(`document.body.dataset.ready === 'true'`, &ok,
		chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(uiTimeout)))
	page.installHarness(t)
	return page
}

// setOffline switches the tab's network emulation: offline cuts it from
// the network (as DevTools' "Offline"), online restores it.
func setOffline(t *testing.T, tb *tab, offline bool) {
	t.Helper()
	tb.run(t, network.Enable(), network.EmulateNetworkConditions(offline, 0, -1, -1))
}

// evalWithin is tab.eval bounded by timeout instead of stepTimeout, for
// scenario scripts that run longer.
func (tb *tab) evalWithin(t *testing.T, timeout time.Duration, script string, out any) {
	t.Helper()
	var raw []byte
	start := time.Now()
	err := tb.b.run(tb.ctx, timeout, chromedp.Evaluate(script, &raw,
		func(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) }))
	if err != nil {
		t.Fatalf("tab %s: scenario script failed after %v: %v", tb.name, time.Since(start).Round(time.Millisecond), err)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		t.Fatalf("tab %s: scenario result %.2000s: %v", tb.name, raw, err)
	}
}

// quote makes a JavaScript string literal of s.
func quote(s string) string { return strconv.Quote(s) }
