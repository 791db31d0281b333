package server

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/frames"
	"github.com/stompbox/stompbox/persistence"
)

// syncProducer sends one SEND with a receipt and waits for its RECEIPT:
// the pattern whose latency the journal's sync policy decides.
type syncProducer struct {
	conn     net.Conn
	parser   *frames.Parser
	buf      []byte
	receipts int
	send     []byte
}

func (p *syncProducer) HandleFrame(f *frames.Frame) error {
	if f.Command != frames.CmdReceipt && f.Command != frames.CmdConnected {
		return fmt.Errorf("got %s: %s", f.Command, f.Body)
	}
	p.receipts++
	return nil
}

func (p *syncProducer) HandleHeartbeat() error { return nil }

func (p *syncProducer) roundTrip(frame []byte) error {
	want := p.receipts + 1
	if _, err := p.conn.Write(frame); err != nil {
		return err
	}
	for p.receipts < want {
		_ = p.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		n, err := p.conn.Read(p.buf)
		if err != nil {
			return err
		}
		if err := p.parser.Parse(p.buf[:n], p); err != nil {
			return err
		}
	}
	return nil
}

func dialProducer(tb testing.TB, addr string, persistent bool) *syncProducer {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	p := &syncProducer{conn: conn, parser: frames.NewParser(frames.Limits{}), buf: make([]byte, 4096)}
	if err := p.roundTrip([]byte("CONNECT\naccept-version:1.2\nhost:b\n\n\x00")); err != nil {
		tb.Fatal(err)
	}
	headers := []frames.Header{{Key: []byte("destination"), Value: []byte("/queue/bench")}, {Key: []byte("receipt"), Value: []byte("r")}}
	if persistent {
		headers = append(headers, frames.Header{Key: []byte("persistent"), Value: []byte("true")})
	}
	p.send = frames.AppendFrame(nil, frames.V12, &frames.Frame{Command: frames.CmdSend, Headers: headers, Body: make([]byte, 128)})
	return p
}

// runProducers spreads b.N receipted SENDs over n concurrent producers.
// shareOf is producer i's share of total messages over n producers.
func shareOf(total, n, i int) int {
	if i < total%n {
		return total/n + 1
	}
	return total / n
}

// goShares runs n workers at once, worker i doing its share of b.N by
// work, and waits for them; a worker's error fails the benchmark.
func goShares(b *testing.B, n int, work func(i, count int) error) {
	var wg sync.WaitGroup
	for i := range n {
		count := shareOf(b.N, n, i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := work(i, count); err != nil {
				b.Error(err)
			}
		}()
	}
	wg.Wait()
}

func runProducers(b *testing.B, addr string, n int, persistent bool) {
	producers := make([]*syncProducer, n)
	for i := range producers {
		producers[i] = dialProducer(b, addr, persistent)
	}
	b.ResetTimer()
	start := time.Now()
	goShares(b, n, func(i, count int) error {
		for range count {
			if err := producers[i].roundTrip(producers[i].send); err != nil {
				return err
			}
		}
		return nil
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

func benchJournal(b *testing.B) *persistence.File {
	j, err := persistence.Open(b.TempDir(), persistence.Config{Sync: persistence.SyncAlways, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = j.Close() })
	return j
}

// bigQueues lets a benchmark's messages accumulate without a consumer.
func bigQueues(j broker.Journal) Config {
	return Config{Broker: broker.Config{Journal: j, MaxQueueMessages: 50_000_000, MaxQueueBytes: 1 << 40, MaxTotalQueuedBytes: 1 << 40}}
}

// BenchmarkPersistentSendTCP: persistent 128 B SENDs with receipts under
// sync "always", from 1, 8 and 64 concurrent producers over loopback. Group
// commit shows as msgs/s growing with producers while fsyncs/s does not.
func BenchmarkPersistentSendTCP(b *testing.B) {
	for _, n := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("producers-%d", n), func(b *testing.B) {
			j := benchJournal(b)
			srv := startServer(b, bigQueues(j))
			before := j.Stats().Fsyncs
			start := time.Now()
			runProducers(b, srv.addr, n, true)
			b.ReportMetric(float64(j.Stats().Fsyncs-before)/time.Since(start).Seconds(), "fsyncs/s")
		})
	}
}

// BenchmarkNonPersistentSendTCP: the same without persistent:true, with and
// without a journal configured: non-persistent traffic never touches it.
func BenchmarkNonPersistentSendTCP(b *testing.B) {
	for _, withJournal := range []bool{false, true} {
		b.Run(fmt.Sprintf("journal-%v", withJournal), func(b *testing.B) {
			var j broker.Journal
			if withJournal {
				j = benchJournal(b)
			}
			srv := startServer(b, bigQueues(j))
			runProducers(b, srv.addr, 8, false)
		})
	}
}

// BenchmarkDiskFsync is the disk's own cost of what the journal does per
// batch: write 4 KiB and fsync, measured in the same run.
func BenchmarkDiskFsync(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "fsync"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	block := make([]byte, 4096)
	b.ResetTimer()
	for range b.N {
		if _, err := f.Write(block); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
}
