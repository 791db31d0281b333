//go:build e2e

package e2e

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

const (
	// uploadMaxBody is the broker's -max-body in TestBrowserUpload: a 64 KiB
	// chunk and its headers fit, a 128 KiB one does not.
	uploadMaxBody = 100_000
	// uploadSize is the file the upload demo sends: 16 chunks of 64 KiB.
	uploadSize = 1 << 20
	// uploadQuiet is how long the page is watched for a retry after
	// frame-too-large.
	uploadQuiet = 2 * time.Second
)

// uploadStats is window.stompboxUpload.stats.
type uploadStats struct {
	Sends       int `json:"sends"`
	Receipts    int `json:"receipts"`
	MaxInFlight int `json:"maxInFlight"`
	Chunks      int `json:"chunks"`
}

// TestBrowserUpload drives the upload demo (upload.html, receive.html, as
// the broker embeds them) through their UI in headless Chromium:
//   - a 1 MiB file chosen in the file input goes to a queue in 64 KiB binary
//     SEND chunks, at most 8 awaiting their RECEIPT, then the complete
//     message; the receiving page reassembles it and reports the SHA-256 of
//     what it got, equal to the file's;
//   - with 128 KiB chunks, over the broker's max_body, the first chunk is
//     refused with frame-too-large: the page says so, its client stops,
//     and no SEND follows (no retry loop).
func TestBrowserUpload(t *testing.T) {
	t.Parallel() // overlaps TestBrowserBackground
	ctx, cancel := context.WithTimeout(context.Background(), browserTestTimeout)
	defer cancel()
	broker := startBroker(t, "-max-body", strconv.Itoa(uploadMaxBody))
	requireDemoBuilt(t, broker.httpAddr)
	b := startBrowser(t, ctx)
	base := "http://" + broker.httpAddr

	file := filepath.Join(t.TempDir(), "photo.bin")
	content := make([]byte, uploadSize)
	if _, err := rand.Read(content); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, content, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(content)
	want := hex.EncodeToString(sum[:])

	queue := "e2e-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	recv := b.openTab(t, "receive", base+"/receive.html?queue="+queue)
	waitJS(t, recv, "the receiving page connected", `document.getElementById('state').textContent === 'connected'`)
	up := b.openTab(t, "upload", base+"/upload.html?queue="+queue)
	waitJS(t, up, "the upload page connected", `document.getElementById('state').textContent === 'connected'`)
	up.run(t,
		chromedp.SetUploadFiles("#file", []string{file}, chromedp.ByQuery),
		chromedp.Click("#start", chromedp.ByQuery))
	waitJS(t, up, "the upload to finish", `document.getElementById('status').textContent === 'done'`)
	waitJS(t, recv, "the receiving page to check the file", `window.stompboxReceive.finished.length > 0`)

	var got []struct {
		Name     string `json:"name"`
		Size     int    `json:"size"`
		SHA256   string `json:"sha256"`
		Expected string `json:"expected"`
		Match    bool   `json:"match"`
	}
	recv.run(t, chromedp.Evaluate(`window.stompboxReceive.finished`, &got))
	if len(got) != 1 {
		t.Fatalf("the receiving page lists %d uploads, want 1: %+v", len(got), got)
	}
	if r := got[0]; r.Name != "photo.bin" || r.Size != uploadSize || r.SHA256 != want || r.Expected != want || !r.Match {
		t.Errorf("received %+v, want photo.bin, %d bytes, SHA-256 %s matching", r, uploadSize, want)
	}
	if s := pageText(t, recv, "status"); s != "complete" {
		t.Errorf("receiving page #status %q, want complete", s)
	}
	if s := pageText(t, up, "sha256"); s != want {
		t.Errorf("upload page #sha256 %q, want %s", s, want)
	}
	var st uploadStats
	up.run(t, chromedp.Evaluate(`window.stompboxUpload.stats`, &st))
	// 16 chunks and the complete message, each once, each with a RECEIPT;
	// the window held up to 8 (fewer if RECEIPTs came back fast).
	if st.Chunks != 16 || st.Sends != 17 || st.Receipts != 17 || st.MaxInFlight < 1 || st.MaxInFlight > 8 {
		t.Errorf("upload stats %+v, want 16 chunks, 17 SENDs, 17 RECEIPTs, at most 8 in flight", st)
	}

	// Chunks over max_body.
	big := b.openTab(t, "upload too large", base+"/upload.html?queue="+queue+"-big&chunk=131072")
	waitJS(t, big, "the upload page connected", `document.getElementById('state').textContent === 'connected'`)
	big.run(t,
		chromedp.SetUploadFiles("#file", []string{file}, chromedp.ByQuery),
		chromedp.Click("#start", chromedp.ByQuery))
	waitJS(t, big, "the upload to fail", `document.getElementById('status').textContent === 'failed'`)
	var before uploadStats
	big.run(t, chromedp.Evaluate(`window.stompboxUpload.stats`, &before))
	time.Sleep(uploadQuiet)
	var after struct {
		Stats    uploadStats `json:"stats"`
		State    string      `json:"state"`
		Active   bool        `json:"active"`
		Connects int         `json:"connects"`
	}
	big.run(t, chromedp.Evaluate(`({
		stats: window.stompboxUpload.stats,
		state: window.stompboxUpload.stompbox.state,
		active: window.stompboxUpload.stompbox.client.active,
		connects: window.stompboxUpload.stompbox.stats.connects,
	})`, &after))
	if e := pageText(t, big, "error"); !strings.Contains(e, "frame-too-large") || !strings.Contains(e, "not retrying") {
		t.Errorf("upload page #error %q, want it to name frame-too-large and say it is not retrying", e)
	}
	// The lanes may all have sent their first chunk before the ERROR came
	// back (8 chunks of 128 KiB make the file); none sends again.
	if before.Sends < 1 || before.Sends > 8 || after.Stats.Sends != before.Sends || after.Stats.Receipts != 0 {
		t.Errorf("SENDs: %d when the upload failed, %d after %v more, %d RECEIPTs; want 1 to 8, no more, no RECEIPT",
			before.Sends, after.Stats.Sends, uploadQuiet, after.Stats.Receipts)
	}
	if after.State != "error" || after.Active || after.Connects != 1 {
		t.Errorf("after frame-too-large: state %q, stomp.js active %v, %d connects; want error, inactive, 1 (no reconnect)",
			after.State, after.Active, after.Connects)
	}
	b.close()
	broker.stop()
}

// waitJS polls a JavaScript condition in the tab until it holds, bounded by
// uiTimeout.
func waitJS(t *testing.T, tb *tab, what, cond string) {
	t.Helper()
	var ok bool
	err := tb.b.run(tb.ctx, uiTimeout+time.Second, chromedp.Poll(cond, &ok,
		chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(uiTimeout)))
	if err != nil {
		t.Fatalf("tab %s: waiting for %s (%s): %v", tb.name, what, cond, err)
	}
}

// pageText returns the text content of the element with id.
func pageText(t *testing.T, tb *tab, id string) string {
	t.Helper()
	var s string
	tb.run(t, chromedp.Evaluate(`document.getElementById(`+strconv.Quote(id)+`).textContent`, &s))
	return s
}
