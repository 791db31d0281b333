//go:build e2e

package e2e

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/go-stomp/stomp/v3"
)

const (
	// quickstartResumePage is the stompbox.js example of docs/quickstart.md
	// and quickstartResumeConfig the configuration it runs with.
	quickstartResumePage   = "testdata/quickstart/resume"
	quickstartResumeConfig = quickstartResumePage + "/stompbox.yaml"
	quickstartRoom         = "/topic/chat.quickstart"
)

// TestQuickstartResume runs the stompbox.js example as the document does:
// the broker with the example's configuration (history on /topic/chat.#;
// the page's origin, here an httptest server, allowed by flag), the page
// served by a web server of its own. The page shows the room's recent
// history on joining and itself under Online; after "Drop the connection"
// it reconnects and shows the message sent while it was away, once; what it
// sends comes back, once.
func TestQuickstartResume(t *testing.T) {
	t.Parallel() // overlaps TestBrowserBackground
	ctx, cancel := context.WithTimeout(context.Background(), browserTestTimeout)
	defer cancel()
	site := httptest.NewServer(http.FileServer(http.Dir(quickstartResumePage)))
	defer site.Close()
	broker := startBroker(t, "-config", quickstartResumeConfig, "-allowed-origins", site.URL)
	requireDemoBuilt(t, broker.httpAddr)
	publish := func(body string) {
		t.Helper()
		var c *stomp.Conn
		if err := bounded(func() (err error) {
			c, err = stomp.Dial("tcp", broker.addr, stomp.ConnOpt.HeartBeat(0, 0))
			return err
		}); err != nil {
			t.Fatalf("go-stomp dial: %v", err)
		}
		if err := bounded(func() error {
			return c.Send(quickstartRoom, "text/plain", []byte(body), stomp.SendOpt.Receipt)
		}); err != nil {
			t.Fatalf("publish %q: %v", body, err)
		}
		_ = bounded(c.Disconnect)
	}
	for _, m := range []string{"earlier 1", "earlier 2", "earlier 3"} {
		publish(m)
	}

	b := startBrowser(t, ctx)
	page := b.openTab(t, "quickstart resume", site.URL+"/?broker="+broker.httpAddr)
	waitJS(t, page, "connected with the recent history",
		`document.getElementById('status').textContent === 'connected' && document.querySelectorAll('#messages li').length === 3`)
	var name string
	page.run(t, chromedp.Evaluate(`window.quickstart.name`, &name))
	waitJS(t, page, "itself under Online", `document.getElementById('online').textContent === `+quote(name))

	page.run(t, chromedp.Click("#drop", chromedp.ByQuery))
	waitJS(t, page, "reconnecting", `document.getElementById('status').textContent === 'reconnecting'`)
	publish("while away")
	waitJS(t, page, "reconnected with the message sent meanwhile",
		`document.getElementById('status').textContent === 'connected' && document.querySelectorAll('#messages li').length === 4`)
	page.run(t, chromedp.Click("#send", chromedp.ByQuery))
	waitJS(t, page, "its own message", `document.querySelectorAll('#messages li').length === 5`)

	var got []string
	var online string
	page.run(t,
		chromedp.Evaluate(`[...document.querySelectorAll('#messages li')].map((li) => li.textContent)`, &got),
		chromedp.Evaluate(`document.getElementById('online').textContent`, &online))
	want := []string{"earlier 1", "earlier 2", "earlier 3", "while away", name + ": Hello!"}
	if !slices.Equal(got, want) {
		t.Errorf("the page lists %q, want %q", got, want)
	}
	if online != name {
		t.Errorf("Online: %q, want %q", online, name)
	}
	var resumed int
	page.run(t, chromedp.Evaluate(`window.quickstart.sb.stats.resumed`, &resumed))
	if e := pageText(t, page, "error"); strings.TrimSpace(e) != "" {
		t.Errorf("the page shows the error %q", e)
	}
	t.Logf("sessions resumed: %d", resumed)
	b.close()
	broker.stop()
}
