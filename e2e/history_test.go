//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strconv"
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
// broker goes on under a new epoch with what the journal kept: a
// resume-after an offset from before is recovered:false and replays the
// retained messages with the offsets they were delivered with, and the
// next message gets the new epoch, never an offset already given to
// another message. A SIGTERM restart after that keeps the new epoch.
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

	var kept int // messages the journal had when the broker was killed
	for restart, signal := range []string{"after SIGKILL", "after SIGTERM"} {
		b = startBroker(t, flags...)
		c, r = connectHostile(t, b.addr, "0,0")
		after := epoch + "-2"
		if restart == 1 {
			after = epoch + "-" + strconv.Itoa(kept)
		}
		writeHostile(t, c, "SUBSCRIBE\nid:again\ndestination:/topic/chat.k\nresume-after:"+after+"\nreceipt:r\n\n\x00")
		f, err = readHostileFrame(c, r, hostileWait)
		if err != nil || f.command != "RECEIPT" {
			t.Fatalf("resume %s: %v, %v", signal, f, err)
		}
		newEpoch, seq, _ := strings.Cut(f.headers["offset"], "-")
		if restart == 0 {
			// The journal may or may not have had the two messages when
			// the broker was killed: publishing does not wait for it.
			kept, _ = strconv.Atoi(seq)
			if f.headers["recovered"] != "false" || newEpoch == epoch || kept > 2 {
				t.Fatalf("resume %s: %v; want recovered:false and a new epoch (was %s) at 0-2", signal, f, epoch)
			}
			for i := range kept {
				m, err := readHostileFrame(c, r, hostileWait)
				if err != nil || m.headers["replayed"] != "true" || m.headers["offset"] != epoch+"-"+strconv.Itoa(i+1) {
					t.Fatalf("retained message %d %s: %v, %v; want it replayed with its old offset", i, signal, m, err)
				}
			}
			writeHostile(t, c, "SEND\ndestination:/topic/chat.k\n\nthree\x00")
			if f, err := readHostileFrame(c, r, hostileWait); err != nil || f.body != "three" || f.headers["offset"] != newEpoch+"-"+strconv.Itoa(kept+1) {
				t.Fatalf("first message %s: %v, %v; want three at %s-%d", signal, f, err, newEpoch, kept+1)
			}
			epoch = newEpoch
		} else {
			if f.headers["recovered"] != "true" || newEpoch != epoch || seq != strconv.Itoa(kept+1) {
				t.Fatalf("resume %s: %v; want the epoch %s kept, recovered:true at %d", signal, f, epoch, kept+1)
			}
			if m, err := readHostileFrame(c, r, hostileWait); err != nil || m.body != "three" || m.headers["replayed"] != "true" {
				t.Fatalf("replay %s: %v, %v; want three", signal, m, err)
			}
		}
		_ = c.Close()
		b.stop()
	}
}
