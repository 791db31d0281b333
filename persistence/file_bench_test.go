package persistence

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/frames"
)

// BenchmarkAppend measures group commit: each op is one Append of one
// enqueue with a 128-byte body under SyncAlways, from 1, 8 or 64
// goroutines at once. appends/s should grow with the appenders while
// fsyncs/s stays near the disk's own rate (BenchmarkFsync).
//
//	go test -run '^$' -bench 'Append|Fsync' -benchtime 3s -count 6 ./persistence
func BenchmarkAppend(b *testing.B) {
	body := bytes.Repeat([]byte{'x'}, 128)
	for _, appenders := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("appenders=%d", appenders), func(b *testing.B) {
			f := open(b, b.TempDir(), Config{Sync: SyncAlways, Logger: slog.New(slog.DiscardHandler)})
			var next atomic.Int64
			fsyncs := f.Stats().Fsyncs
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for range appenders {
				wg.Go(func() {
					for {
						i := next.Add(1)
						if i > int64(b.N) {
							return
						}
						if err := f.Append(context.Background(), benchRecord(i, body)); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			fsyncs = f.Stats().Fsyncs - fsyncs
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "appends/s")
			b.ReportMetric(float64(fsyncs)/elapsed.Seconds(), "fsyncs/s")
			b.ReportMetric(float64(b.N)/float64(max(fsyncs, 1)), "appends/fsync")
		})
	}
}

// benchRecord is the journal record of a persistent SEND of body to a
// queue, with the headers a typical client sends.
func benchRecord(i int64, body []byte) broker.JournalRecord {
	id := "ID:bench-" + strconv.FormatInt(i, 10)
	m := broker.RecoveredMessage(id, "/queue/bench", []frames.Header{
		{Key: []byte("destination"), Value: []byte("/queue/bench")},
		{Key: []byte("content-type"), Value: []byte("text/plain")},
		{Key: []byte("persistent"), Value: []byte("true")},
	}, body, true, 0)
	return broker.JournalRecord{Op: broker.OpEnqueue, Queue: "/queue/bench", MessageID: id, Message: m}
}

// BenchmarkFsync is the disk's own latency for what the journal does per
// group commit: write 4 KiB at the end of the data in a pre-allocated file,
// then fdatasync. Its ns/op bounds what one appender can reach.
func BenchmarkFsync(b *testing.B) {
	fh, err := os.OpenFile(filepath.Join(b.TempDir(), "fsync.bench"), os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		b.Fatal(err)
	}
	defer fh.Close()
	const size = 64 << 20
	if err := preallocate(fh, size); err != nil {
		b.Fatal(err)
	}
	buf := bytes.Repeat([]byte{0xa5}, 4096)
	var off int64
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if _, err := fh.WriteAt(buf, off); err != nil {
			b.Fatal(err)
		}
		if err := datasync(fh); err != nil {
			b.Fatal(err)
		}
		off = (off + int64(len(buf))) % size
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "fsyncs/s")
}
