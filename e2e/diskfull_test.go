//go:build e2e && linux

package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
)

// freeBytes is the space unprivileged writes may use on dir's file system.
func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

// metricValue reads one sample (name with its labels, as exposed) from a
// metrics page; "" if absent.
func metricValue(text, series string) string {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(text)
	if m == nil {
		return ""
	}
	return m[1]
}

// TestJournalMinFreeBlocksProducer runs the real binary with
// journal.min_free just under the free space of its volume, then lets a
// file take the margin: a persistent SEND is neither receipted nor
// refused (its producer is blocked, its connection stays open), and the
// metrics say why; once the file is removed the SEND is receipted without
// a restart and its message delivered.
func TestJournalMinFreeBlocksProducer(t *testing.T) {
	dir := t.TempDir()
	free := freeBytes(t, dir)
	if free < 400<<20 {
		t.Skipf("%d bytes free: too little room to move journal.min_free around", free)
	}
	margin := min(free/4, 2<<30) // other processes may use some meanwhile
	b := startBroker(t, "-journal-dir", filepath.Join(dir, "journal"),
		"-journal-min-free", strconv.FormatInt(free-margin, 10), "-journal-segment-size", "1MiB")
	defer b.stop()
	m := adminAddr.FindStringSubmatch(b.log.String())
	if m == nil {
		t.Fatalf("no admin address in the log:\n%s", b.log.String())
	}
	metricsURL := "http://" + m[1] + "/metrics"

	c := flowDial(t, b.addr)
	persistent := stomp.SendOpt.Header("persistent", "true")
	if err := c.Send("/queue/disk", "text/plain", []byte("before"), stomp.SendOpt.Receipt, persistent); err != nil {
		t.Fatalf("SEND with room: %v", err)
	}

	filler := filepath.Join(dir, "filler")
	fh, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(filler)
	if err := syscall.Fallocate(int(fh.Fd()), 0, 0, 2*margin); err != nil {
		fh.Close()
		t.Skipf("cannot take %d bytes of the volume: %v", 2*margin, err)
	}
	fh.Close()

	// The journal reads the free space at most every 100 ms, so SENDs
	// right after the filler may still be taken; then another is sent.
	var sent chan error
	taken := 0
held:
	for ; ; taken++ {
		if taken == 100 {
			t.Fatalf("100 SENDs taken over a second after the volume went under journal.min_free")
		}
		ch := make(chan error, 1)
		go func() {
			ch <- c.Send("/queue/disk", "text/plain", []byte("during"), stomp.SendOpt.Receipt, persistent)
		}()
		select {
		case err := <-ch:
			if err != nil {
				t.Fatalf("SEND under journal.min_free: %v; want it held (no RECEIPT, no ERROR)", err)
			}
			time.Sleep(10 * time.Millisecond)
		case <-time.After(1500 * time.Millisecond):
			sent = ch
			break held
		}
	}
	var page string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		page = scrape(t, metricsURL).text
		if metricValue(page, `stompbox_blocked_connections{reason="journal"}`) == "1" || time.Now().After(deadline) {
			break
		}
	}
	for series, want := range map[string]string{
		`stompbox_blocked_connections{reason="journal"}`: "1",
		`stompbox_journal_disk_full{reason="min_free"}`:  "1",
		`stompbox_journal_disk_full{reason="no_space"}`:  "0",
		`stompbox_journal_failed`:                        "0",
	} {
		if got := metricValue(page, series); got != want {
			t.Errorf("%s = %q while the volume is under min_free, want %s", series, got, want)
		}
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-sent:
		if err != nil {
			t.Fatalf("held SEND after space freed: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("held SEND not receipted 15 s after space freed")
	}
	sub, err := c.Subscribe("/queue/disk", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"before"}
	for range taken + 1 {
		want = append(want, "during")
	}
	for _, want := range want {
		select {
		case msg := <-sub.C:
			if msg.Err != nil || string(msg.Body) != want {
				t.Fatalf("got %v %q, want %q", msg.Err, msg.Body, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("message %q not delivered", want)
		}
	}
	if got := metricValue(scrape(t, metricsURL).text, `stompbox_journal_disk_full{reason="min_free"}`); got != "0" {
		t.Errorf("stompbox_journal_disk_full{reason=\"min_free\"} = %q after space freed, want 0", got)
	}
}
