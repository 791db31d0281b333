//go:build e2e

package e2e

import (
	"context"
	"os"
	"sort"
	"testing"
)

// moduleScenarios checks stompbox.js against a scripted server.
const moduleScenarios = "testdata/module/scenarios.js"

// TestBrowserModule runs testdata/module/scenarios.js in headless Chromium:
// stompbox.js (as web/dist ships it) over stomp.js, with a fake WebSocket
// whose frames the script reads and answers. It checks frame by frame what
// the browser tests against a real broker can only check by their effect:
// the resume token of each CONNECT, the SUBSCRIBE after a resumed and after
// a fresh session (resume-after, new id and UNSUBSCRIBE of the old one, or
// the same id), dedupe by offset and epoch, the offset parser, presence
// events and a new snapshot's difference, frame-too-large not retried,
// and reconnect-after.
func TestBrowserModule(t *testing.T) {
	t.Parallel() // overlaps TestBrowserBackground
	ctx, cancel := context.WithTimeout(context.Background(), browserTestTimeout)
	defer cancel()
	site := startModuleSite(t)
	b := startBrowser(t, ctx)
	// No broker: every socket is the script's fake.
	page := openModulePage(t, b, "module", site, "127.0.0.1:9")
	src, err := os.ReadFile(moduleScenarios)
	if err != nil {
		t.Fatal(err)
	}
	var checks map[string]struct {
		Got  string `json:"got"`
		Want string `json:"want"`
	}
	page.eval(t, string(src), &checks)
	names := make([]string, 0, len(checks))
	for name := range checks {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if c := checks[name]; c.Got != c.Want {
			t.Errorf("%s: got %s, want %s", name, c.Got, c.Want)
		}
	}
	if len(checks) < 20 {
		t.Errorf("%d checks ran, want all of %s's (did it stop early?)", len(checks), moduleScenarios)
	}
	t.Logf("%d checks", len(checks))
	b.close()
}
