package persistence

import (
	"context"
	"testing"

	"github.com/stompbox/stompbox/persistence/journaltest"
)

// TestInfo reads a working journal's state: its directory and policy, the
// data written, one segment, and an fsync per synced Append.
func TestInfo(t *testing.T) {
	dir := t.TempDir()
	f := open(t, dir, Config{})
	before := f.Info()
	if before.Dir != dir || before.Sync != "always" || before.Failed != nil || before.Damage != "" {
		t.Fatalf("fresh journal: %+v", before)
	}
	for i := range 5 {
		if err := f.Append(context.Background(), journaltest.Enqueue("/queue/info", journaltest.Message(i))); err != nil {
			t.Fatal(err)
		}
	}
	in := f.Info()
	if in.Size <= before.Size || in.Segments < 1 {
		t.Errorf("after 5 appends: size %d (before %d), segments %d", in.Size, before.Size, in.Segments)
	}
	if in.Fsync.Count < 5 || in.Fsync.Max <= 0 || in.Fsync.P50 <= 0 || in.Fsync.P50 > in.Fsync.P99 || in.Fsync.P99 > in.Fsync.Max {
		t.Errorf("fsync summary %+v: want ≥5 fsyncs, 0 < p50 ≤ p99 ≤ max", in.Fsync)
	}
}
