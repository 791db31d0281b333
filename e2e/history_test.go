//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The real binary with topic history and a journal: offsets survive a
// SIGTERM restart, the rules given once as a flag and once in the YAML
// file (the same rule), and resume-after an offset from before the
// restart is recovered:true with exactly the messages after it.
func TestHistoryAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	journal := filepath.Join(dir, "journal")
	b := startBroker(t, "-journal-dir", journal, "-topic-history", "/topic/chat.#=100/1h")
	c, r := connectHostile(t, b.addr, "0,0")
	writeHostile(t, c, "SUBSCRIBE\nid:s\ndestination:/topic/chat.lobby\nreceipt:r\n\n\x00")
	f, err := readHostileFrame(c, r, hostileWait)
	if err != nil || f.command != "RECEIPT" || !strings.HasSuffix(f.headers["offset"], "-0") {
		t.Fatalf("SUBSCRIBE: %v, %v; want a RECEIPT with offset <epoch>-0", f, err)
	}
	epoch := strings.TrimSuffix(f.headers["offset"], "-0")
	writeHostile(t, c, "SEND\ndestination:/topic/chat.lobby\n\none\x00SEND\ndestination:/topic/chat.lobby\n\ntwo\x00"+
		"SEND\ndestination:/topic/chat.lobby\n\nthree\x00")
	for i, want := range []string{"one", "two", "three"} {
		f, err := readHostileFrame(c, r, hostileWait)
		if err != nil || f.body != want || f.headers["offset"] != epoch+"-"+string(rune('1'+i)) {
			t.Fatalf("message %d: %v, %v", i, f, err)
		}
	}
	_ = c.Close()
	b.stop()

	config := filepath.Join(dir, "stompbox.yaml")
	yaml := "topics:\n  history:\n    - {pattern: \"/topic/chat.#\", size: 100, max_age: 1h}\n"
	if err := os.WriteFile(config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	b = startBroker(t, "-config", config, "-journal-dir", journal)
	defer b.stop()
	c, r = connectHostile(t, b.addr, "0,0")
	writeHostile(t, c, "SUBSCRIBE\nid:again\ndestination:/topic/chat.lobby\nresume-after:"+epoch+"-1\nreceipt:r\n\n\x00")
	f, err = readHostileFrame(c, r, hostileWait)
	if err != nil || f.command != "RECEIPT" || f.headers["recovered"] != "true" || f.headers["offset"] != epoch+"-3" {
		t.Fatalf("resume after the restart: %v, %v; want recovered:true offset %s-3", f, err, epoch)
	}
	for i, want := range []string{"two", "three"} {
		f, err := readHostileFrame(c, r, hostileWait)
		if err != nil || f.body != want || f.headers["replayed"] != "true" || f.headers["offset"] != epoch+"-"+string(rune('2'+i)) {
			t.Fatalf("replayed %d: %v, %v", i, f, err)
		}
	}
	_ = c.Close()
}
