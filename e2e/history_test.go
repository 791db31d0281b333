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

// TestHistoryNewEpochAfterKill: after SIGKILL (no seal), the restarted
// broker gives the topic a new epoch, empty: a resume-after an offset
// from before is recovered:false, and the next message is <new epoch>-1,
// never an offset already given to another message. A SIGTERM restart
// after that keeps the new epoch (TestHistoryAcrossRestart: kept).
func TestHistoryNewEpochAfterKill(t *testing.T) {
	journal := filepath.Join(t.TempDir(), "journal")
	flags := []string{"-journal-dir", journal, "-topic-history", "/topic/chat.#=100/1h"}
	b := startBroker(t, flags...)
	c, r := connectHostile(t, b.addr, "0,0")
	writeHostile(t, c, "SUBSCRIBE\nid:s\ndestination:/topic/chat.k\nreceipt:r\n\n\x00")
	f, err := readHostileFrame(c, r, hostileWait)
	if err != nil || f.command != "RECEIPT" || !strings.HasSuffix(f.headers["offset"], "-0") {
		t.Fatalf("SUBSCRIBE: %v, %v; want a RECEIPT with offset <epoch>-0", f, err)
	}
	epoch := strings.TrimSuffix(f.headers["offset"], "-0")
	writeHostile(t, c, "SEND\ndestination:/topic/chat.k\n\none\x00SEND\ndestination:/topic/chat.k\n\ntwo\x00")
	for i := range 2 {
		if f, err := readHostileFrame(c, r, hostileWait); err != nil || f.headers["offset"] != epoch+"-"+string(rune('1'+i)) {
			t.Fatalf("message %d: %v, %v", i, f, err)
		}
	}
	_ = b.cmd.Process.Kill() // SIGKILL: no seal
	<-b.done
	_ = c.Close()

	for restart, signal := range []string{"after SIGKILL", "after SIGTERM"} {
		b = startBroker(t, flags...)
		c, r = connectHostile(t, b.addr, "0,0")
		writeHostile(t, c, "SUBSCRIBE\nid:again\ndestination:/topic/chat.k\nresume-after:"+epoch+"-2\nreceipt:r\n\n\x00")
		f, err = readHostileFrame(c, r, hostileWait)
		if restart == 0 {
			newEpoch, _, _ := strings.Cut(f.headers["offset"], "-")
			if err != nil || f.command != "RECEIPT" || f.headers["recovered"] != "false" || newEpoch == epoch || f.headers["offset"] != newEpoch+"-0" {
				t.Fatalf("resume %s: %v, %v; want recovered:false and a new epoch (was %s)", signal, f, err, epoch)
			}
			writeHostile(t, c, "SEND\ndestination:/topic/chat.k\n\nthree\x00")
			if f, err := readHostileFrame(c, r, hostileWait); err != nil || f.body != "three" || f.headers["offset"] != newEpoch+"-1" {
				t.Fatalf("first message %s: %v, %v; want three at %s-1", signal, f, err, newEpoch)
			}
			epoch = newEpoch
		} else if err != nil || f.command != "RECEIPT" || f.headers["recovered"] != "false" || f.headers["offset"] != epoch+"-1" {
			// resume-after <epoch>-2 names a seq this epoch never gave.
			t.Fatalf("resume %s: %v, %v; want the epoch kept: offset %s-1", signal, f, err, epoch)
		}
		_ = c.Close()
		b.stop()
	}
}
