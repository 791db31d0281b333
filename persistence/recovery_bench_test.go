package persistence

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stompbox/stompbox/broker"
)

// recoveryEnv names the journal directory the child process of
// BenchmarkRecovery recovers.
const recoveryEnv = "STOMPBOX_RECOVERY_CHILD_DIR"

// BenchmarkRecovery measures a broker's start on a 1 GiB journal: Open,
// then broker.Recover (Replay into queues), in a fresh child process, so
// that its peak RSS (VmHWM) is the recovery's alone. The journal holds
// 1 KiB persistent messages in 64 MiB segments, 60% of them acknowledged
// (removed), spread over 16 queues; it is written once per run.
//
//	go test -run '^$' -bench Recovery -benchtime 3x ./persistence
func BenchmarkRecovery(b *testing.B) {
	const (
		target = 1 << 30
		body   = 1024
		queues = 16
	)
	dir := b.TempDir()
	if keep := os.Getenv("STOMPBOX_RECOVERY_DIR"); keep != "" {
		dir = keep // kept for profiling the child: go test -run TestRecoveryChild -cpuprofile
	}
	live, written := writeRecoveryJournal(b, dir, target, body, queues)
	b.Logf("journal: %d MiB of segments, %d live messages (%d MiB of bodies)", written>>20, live, live*body>>20)
	b.ResetTimer()
	var hwm, millis float64
	for range b.N {
		cmd := exec.Command(os.Args[0], "-test.run=^TestRecoveryChild$", "-test.v")
		cmd.Env = append(os.Environ(), recoveryEnv+"="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("child: %v\n%s", err, out)
		}
		var recovered int
		var h, ms float64
		for line := range strings.SplitSeq(string(out), "\n") {
			if _, rest, ok := strings.Cut(line, "RECOVERY "); ok {
				fmt.Sscanf(rest, "messages=%d millis=%f hwm=%f", &recovered, &ms, &h)
			}
		}
		if recovered != live {
			b.Fatalf("child recovered %d messages, want %d:\n%s", recovered, live, out)
		}
		hwm, millis = max(hwm, h), millis+ms
	}
	b.ReportMetric(millis/float64(b.N), "ms/recovery")
	b.ReportMetric(hwm/(1<<20), "peak-RSS-MiB")
	b.ReportMetric(float64(written>>20), "journal-MiB")
}

// writeRecoveryJournal fills dir with about target bytes of segments and
// returns how many messages stay live and how many bytes were written.
func writeRecoveryJournal(b *testing.B, dir string, target int64, body, queues int) (live int, written int64) {
	f := open(b, dir, Config{Sync: SyncNever, Logger: slog.New(slog.DiscardHandler)})
	payload := bytes.Repeat([]byte{'r'}, body)
	ctx := context.Background()
	var batch []broker.JournalRecord
	for i := 0; f.Stats().Bytes < target; i++ {
		r := benchRecord(int64(i), payload)
		r.Queue = "/queue/r" + strconv.Itoa(i%queues)
		batch = append(batch[:0], r)
		if err := f.Append(ctx, batch...); err != nil {
			b.Fatal(err)
		}
		if i%5 < 3 { // 60% acknowledged
			f.Forget(broker.JournalRecord{Op: broker.OpRemove, Queue: r.Queue, MessageID: r.MessageID})
		} else {
			live++
		}
	}
	written = f.Stats().Bytes
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return live, written
}

// TestRecoveryChild is BenchmarkRecovery's child process: it recovers the
// journal named by recoveryEnv into a broker and prints what it took.
func TestRecoveryChild(t *testing.T) {
	dir := os.Getenv(recoveryEnv)
	if dir == "" {
		t.Skip("the child process of BenchmarkRecovery")
	}
	start := time.Now()
	j, err := Open(dir, Config{CompactBelow: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	counted := &countingJournal{File: j}
	br := broker.New(broker.Config{Journal: counted, Logger: slog.New(slog.DiscardHandler)})
	if err := br.Recover(); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	messages := counted.enqueues
	status, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(os.Getpid()), "status"))
	var hwm float64
	for line := range strings.SplitSeq(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			fmt.Sscanf(strings.TrimSpace(rest), "%f", &hwm)
			hwm *= 1024
		}
	}
	fmt.Printf("RECOVERY messages=%d millis=%.0f hwm=%.0f\n", messages, float64(elapsed.Microseconds())/1000, hwm)
}

// countingJournal counts the enqueues Replay hands the broker.
type countingJournal struct {
	*File
	enqueues int
}

func (c *countingJournal) Replay(fn func(broker.JournalRecord) error) error {
	return c.File.Replay(func(r broker.JournalRecord) error {
		if r.Op == broker.OpEnqueue {
			c.enqueues++
		}
		return fn(r)
	})
}
