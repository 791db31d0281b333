package persistence

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/frames"
)

// The fan-out the issue measured: a persistent topic message reaches 20
// offline durable subscriptions; 10 messages of 1 MiB.
const (
	fanDurables = 20
	fanMessages = 10
	fanBody     = 1 << 20
)

// recoverDirEnv names the journal TestRecoverFanOutChild recovers; only
// BenchmarkRecoverFanOut sets it, in the child process it starts.
const recoverDirEnv = "STOMPBOX_RECOVER_FANOUT_DIR"

// BenchmarkRecoverFanOut writes the fan-out journal through a broker and
// reports its size on disk, then recovers it b.N times, each in a fresh
// process (this test binary, running TestRecoverFanOutChild) so that its
// peak RSS (VmHWM) is that of the recovery alone.
func BenchmarkRecoverFanOut(b *testing.B) {
	dir := b.TempDir()
	writeFanOut(b, dir)
	var journal int64
	names, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	for _, name := range names {
		st, err := os.Stat(name)
		if err != nil {
			b.Fatal(err)
		}
		journal += st.Size()
	}
	var rss, hwm int64
	b.ResetTimer()
	for range b.N {
		cmd := exec.Command(os.Args[0], "-test.run=^TestRecoverFanOutChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), recoverDirEnv+"="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("recovery process: %v\n%s", err, out)
		}
		r, h, err := parseFootprint(out)
		if err != nil {
			b.Fatalf("%v\n%s", err, out)
		}
		rss, hwm = max(rss, r), max(hwm, h)
	}
	b.ReportMetric(float64(journal)/(1<<20), "journal-MiB")
	b.ReportMetric(float64(rss)/(1<<20), "RSS-after-MiB")
	b.ReportMetric(float64(hwm)/(1<<20), "peak-RSS-MiB")
}

// TestRecoverFanOutChild is BenchmarkRecoverFanOut's recovery process: it
// recovers a broker from the journal in $STOMPBOX_RECOVER_FANOUT_DIR and
// prints its VmRSS and VmHWM. Without that variable it is skipped.
func TestRecoverFanOutChild(t *testing.T) {
	dir := os.Getenv(recoverDirEnv)
	if dir == "" {
		t.Skip("the recovery process of BenchmarkRecoverFanOut")
	}
	f, err := Open(dir, Config{})
	if err != nil {
		t.Fatal(err)
	}
	b := broker.New(broker.Config{Journal: f})
	if err := b.Recover(); err != nil {
		t.Fatal(err)
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	fmt.Printf("footprint rss=%d hwm=%d\n", statusKiB(status, "VmRSS:"), statusKiB(status, "VmHWM:"))
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// writeFanOut makes the fan-out journal in dir through a broker: the
// durable subscriptions are created and left, then the messages sent.
func writeFanOut(tb testing.TB, dir string) {
	b, f := startBroker(tb, dir, broker.Config{})
	for i := range fanDurables {
		c := newPeerAs(tb, b, "client-id:app-"+strconv.Itoa(i))
		c.send(frames.CmdSubscribe, "", "id:s", "destination:/topic/prices", "durable-subscription-name:feed", "receipt:r")
		if f := c.next(); f.Command != frames.CmdReceipt {
			tb.Fatalf("durable SUBSCRIBE %d: %s %q", i, f.Command, f.Body)
		}
		c.s.Release()
	}
	p := newPeer(tb, b)
	body := string(bytes.Repeat([]byte{'x'}, fanBody))
	for i := range fanMessages {
		p.sendPersistent("/topic/prices", body[:fanBody-1]+strconv.Itoa(i%10))
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
}

// parseFootprint reads the child's "footprint rss=KiB hwm=KiB" line.
func parseFootprint(out []byte) (rss, hwm int64, err error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if _, err := fmt.Sscanf(sc.Text(), "footprint rss=%d hwm=%d", &rss, &hwm); err == nil && rss > 0 && hwm > 0 {
			return rss << 10, hwm << 10, nil
		}
	}
	return 0, 0, fmt.Errorf("no footprint line in the recovery process's output")
}

// statusKiB is the value (in KiB) of field (e.g. "VmRSS:") in the text of
// /proc/self/status, or -1.
func statusKiB(status []byte, field string) int64 {
	for line := range bytes.Lines(status) {
		if rest, ok := bytes.CutPrefix(line, []byte(field)); ok {
			fs := strings.Fields(string(rest))
			if len(fs) > 0 {
				if n, err := strconv.ParseInt(fs[0], 10, 64); err == nil {
					return n
				}
			}
		}
	}
	return -1
}
