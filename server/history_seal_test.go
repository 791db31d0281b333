package server

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stompbox/stompbox/persistence"
)

// Topic history epochs across restarts (docs/compliance.md, "Topic
// history and resume"): kept after a clean shutdown (sealed), new after
// a crash or a lost append.

// journaledHistory starts a server (TCP, or WebSocket when ws) with the
// journal in dir, recovered, for cfg with the journal set; it returns a
// dialer and the journal. t.Cleanup shuts the server down (sealing the
// histories) and then closes the journal: a clean shutdown.
func journaledHistory(t *testing.T, dir string, ws bool, cfg Config, pcfg persistence.Config) (func() *rawClient, *persistence.File, *testServer) {
	t.Helper()
	pcfg.Logger = slog.New(slog.DiscardHandler)
	if pcfg.SegmentSize == 0 {
		pcfg.SegmentSize = 1 << 20
	}
	j, err := persistence.Open(dir, pcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // registered first: runs after the server's shutdown
		if err := j.Close(); err != nil {
			t.Errorf("journal close: %v", err)
		}
	})
	cfg.Broker.Journal = j
	var srv *testServer
	var dial func() *rawClient
	if ws {
		var url string
		srv, url = startWebServer(t, cfg)
		dial = func() *rawClient {
			conn, _ := dialWS(t, url, "v12.stomp")
			return newRawClient(t, &wsClientStream{Conn: conn})
		}
	} else {
		srv = startServer(t, cfg)
		dial = func() *rawClient { return dialRaw(t, srv.addr) }
	}
	if err := srv.Broker().Recover(); err != nil {
		t.Fatal(err)
	}
	return dial, j, srv
}

// copyJournal copies the files of journal directory src into a new
// directory: what a crash would leave on disk of what was written so far.
func copyJournal(t *testing.T, src string) string {
	t.Helper()
	// The journal may compact while it is copied: a segment listed and
	// then removed (its records moved on) makes the copy start again, a
	// bounded number of times.
	for range 10 {
		dst := t.TempDir()
		if copyDir(t, src, dst) {
			return dst
		}
	}
	t.Fatalf("the journal in %s kept changing while it was copied", src)
	return ""
}

// copyDir copies src's regular files into dst; false when one vanished
// between the listing and its read.
func copyDir(t *testing.T, src, dst string) bool {
	t.Helper()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if errors.Is(err, os.ErrNotExist) {
			return false
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return true
}

// journalBarrier waits until everything the server handed to the journal
// so far is written: a persistent SEND's RECEIPT comes once its record is
// on disk, and the journal writes in submission order.
func journalBarrier(t *testing.T, c *rawClient) {
	t.Helper()
	c.send(frame("SEND", "b", "destination:/queue/barrier", "persistent:true", "receipt:barrier"))
	rawUntilReceipt(c, "barrier")
}

// TestHistoryNewEpochAfterCrash: publishing never waits for the disk, so
// a crash may lose the newest offsets clients saw. The restart must not
// give those offsets to other messages: the history goes on under a new
// epoch, a resume-after an old offset gets recovered:false and every
// message retained (with the offsets it was delivered with), and every
// message published after the restart is delivered (none taken for one
// already seen). The retained messages are journaled again under the new
// epoch: a second crash still finds them.
func TestHistoryNewEpochAfterCrash(t *testing.T) {
	for _, tr := range []string{"tcp", "ws"} {
		t.Run(tr, func(t *testing.T) {
			dir := t.TempDir()
			dial, _, _ := journaledHistory(t, dir, tr == "ws", historyConfig(100, 0), persistence.Config{Sync: persistence.SyncAlways})
			c := dial()
			c.connect()
			epoch := epochOf(t, header(subscribeReceipt(c, "s", "/topic/hist.c"), "offset"))
			pub := dial()
			pub.connect()
			publishN(pub, "/topic/hist.c", "m", 3)
			journalBarrier(t, pub)
			crashed := copyJournal(t, dir) // seqs 1-3 on disk
			publishN(pub, "/topic/hist.c", "m", 5)
			expectMessages(c, epoch, []string{"m0", "m1", "m2", "m0", "m1", "m2", "m3", "m4"}, 1, false) // c saw up to epoch-8

			dial2, _, _ := journaledHistory(t, crashed, tr == "ws", historyConfig(100, 0), persistence.Config{Sync: persistence.SyncAlways})
			c2 := dial2()
			c2.connect()
			r := subscribeReceipt(c2, "again", "/topic/hist.c", "resume-after:"+epoch+"-8")
			epoch2 := epochOf(t, header(r, "offset"))
			if header(r, "recovered") != "false" || epoch2 == epoch || header(r, "offset") != epoch2+"-3" {
				t.Fatalf("after a crash: recovered %q offset %q, want false and a new epoch at 3 (was %s)", header(r, "recovered"), header(r, "offset"), epoch)
			}
			expectMessages(c2, epoch, []string{"m0", "m1", "m2"}, 1, true) // what was retained, as delivered before
			pub2 := dial2()
			pub2.connect()
			publishN(pub2, "/topic/hist.c", "n", 2)
			expectMessages(c2, epoch2, []string{"n0", "n1"}, 4, false)
			r = subscribeReceipt(c2, "h", "/topic/hist.c", "history:10")
			if header(r, "offset") != epoch2+"-5" {
				t.Fatalf("history:10 offset %q, want %s-5", header(r, "offset"), epoch2)
			}
			expectMessages(c2, epoch, []string{"m0", "m1", "m2"}, 1, true)
			expectMessages(c2, epoch2, []string{"n0", "n1"}, 4, true)

			// A second crash: the old messages were journaled again under
			// the new epoch, so they are still there.
			journalBarrier(t, pub2)
			crashedAgain := copyJournal(t, crashed)
			dial3, _, _ := journaledHistory(t, crashedAgain, tr == "ws", historyConfig(100, 0), persistence.Config{Sync: persistence.SyncAlways})
			c3 := dial3()
			c3.connect()
			r = subscribeReceipt(c3, "again", "/topic/hist.c", "resume-after:"+epoch2+"-5")
			if header(r, "recovered") != "false" || epochOf(t, header(r, "offset")) == epoch2 {
				t.Fatalf("after a second crash: recovered %q offset %q, want false and another epoch", header(r, "recovered"), header(r, "offset"))
			}
			expectMessages(c3, epoch, []string{"m0", "m1", "m2"}, 1, true)
			expectMessages(c3, epoch2, []string{"n0", "n1"}, 4, true)
		})
	}
}

// TestHistoryEpochKeptAfterCleanShutdown: a clean shutdown seals the
// histories, so the restart keeps the epoch and the ring: a resume is
// recovered:true, and offsets go on. A second restart without any
// publish in between keeps it too; a crash after that (records after the
// seal) does not.
func TestHistoryEpochKeptAfterCleanShutdown(t *testing.T) {
	for _, tr := range []string{"tcp", "ws"} {
		t.Run(tr, func(t *testing.T) {
			dir := t.TempDir()
			var epoch string
			t.Run("first", func(t *testing.T) {
				dial, _, _ := journaledHistory(t, dir, tr == "ws", historyConfig(100, 0), persistence.Config{})
				pub := dial()
				pub.connect()
				publishN(pub, "/topic/hist.k", "m", 3)
				c := dial()
				c.connect()
				epoch = epochOf(t, header(subscribeReceipt(c, "s", "/topic/hist.k", "history:1"), "offset"))
				expectMessages(c, epoch, []string{"m2"}, 3, true)
			}) // clean shutdown: sealed
			for restart := range 2 {
				t.Run("restart", func(t *testing.T) {
					dial, _, _ := journaledHistory(t, dir, tr == "ws", historyConfig(100, 0), persistence.Config{})
					c := dial()
					c.connect()
					r := subscribeReceipt(c, "s", "/topic/hist.k", "resume-after:"+epoch+"-1")
					if header(r, "recovered") != "true" || header(r, "offset") != epoch+"-"+[]string{"3", "4"}[restart] {
						t.Fatalf("restart %d: recovered %q offset %q, want true in epoch %s", restart, header(r, "recovered"), header(r, "offset"), epoch)
					}
					want := []string{"m1", "m2"}
					if restart == 1 {
						want = append(want, "n0")
					}
					expectMessages(c, epoch, want, 2, true)
					if restart == 0 {
						pub := dial()
						pub.connect()
						publishN(pub, "/topic/hist.k", "n", 1)
						expectMessages(c, epoch, []string{"n0"}, 4, false)
					}
				})
			}
		})
	}
}

// TestHistoryNewEpochAfterLostAppend: a history append the journal
// refused (its disk budget) leaves the history unsealable: the next
// restart, even after a clean shutdown, starts a new epoch rather than
// resume a history that misses a message.
func TestHistoryNewEpochAfterLostAppend(t *testing.T) {
	dir := t.TempDir()
	var epoch string
	t.Run("full", func(t *testing.T) {
		dial, j, _ := journaledHistory(t, dir, false, historyConfig(1000, 0), persistence.Config{MaxBytes: 64 << 10, SegmentSize: 16 << 10})
		pub := dial()
		pub.connect()
		big := strings.Repeat("x", 4<<10)
		var b strings.Builder
		for range 32 { // 128 KiB: past the budget
			b.WriteString(frame("SEND", big, "destination:/topic/hist.f"))
		}
		b.WriteString(frame("SEND", "", "destination:/topic/sentinel", "receipt:pub"))
		pub.send(b.String())
		rawUntilReceipt(pub, "pub")
		c := dial()
		c.connect()
		epoch = epochOf(t, header(subscribeReceipt(c, "s", "/topic/hist.f"), "offset"))
		if j.Stats().Records > 20 {
			t.Fatalf("%d records written: the budget did not refuse any append", j.Stats().Records)
		}
	})
	dial, _, _ := journaledHistory(t, dir, false, historyConfig(1000, 0), persistence.Config{})
	c := dial()
	c.connect()
	r := subscribeReceipt(c, "s", "/topic/hist.f", "resume-after:"+epoch+"-32")
	if header(r, "recovered") != "false" || strings.HasPrefix(header(r, "offset"), epoch+"-") {
		t.Fatalf("after a lost append: recovered %q offset %q, want false and a new epoch (was %s)", header(r, "recovered"), header(r, "offset"), epoch)
	}
}
