//go:build e2e

package e2e

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
)

const (
	crashRounds    = 3
	crashProducers = 8
	crashMessages  = 4_000 // per round, over all producers
	crashQueue     = "/queue/crash"
	// crashSegment is small (the smallest the configuration accepts is
	// 4 KiB) so that the journal rotates every hundred messages or so and
	// compaction rewrites and deletes segments while the test runs.
	crashSegment = "16KiB"
	// crashKeepEvery: the consumer leaves every crashKeepEvery-th message
	// unacknowledged, so segments stay partly live and are rewritten, and
	// those messages must come back after the crash.
	crashKeepEvery = 5
	// crashAckBatch: ACKs between two receipted frames of the consumer,
	// whose RECEIPT proves the broker has handled the ACKs before it.
	crashAckBatch  = 50
	crashSyncTopic = "/topic/crash-sync"
	// crashMinAcks: the kill waits until the broker has handled this many
	// ACKs, so that the first segments are sparse enough for compaction
	// even when the consumer lags far behind the producers.
	crashMinAcks = 400
)

// kill9 ends the broker the way a crash does: SIGKILL, no shutdown.
func (b *brokerProc) kill9() {
	b.t.Helper()
	_ = b.cmd.Process.Kill()
	select {
	case <-b.done:
	case <-time.After(exitTimeout):
		b.t.Fatal("stompbox did not die after SIGKILL")
	}
}

// TestCrashLosesNoReceiptedMessage: persistent SENDs with receipts from 8
// producers while a consumer acknowledges most of them, on a journal with
// small segments (so it rotates and compacts during the run), kill -9 at a
// random moment, restart on the same journal, consume: every receipted
// message that was not acknowledged comes back, no acknowledged one whose
// removal the journal had fsynced comes back, any message seen twice
// carries redelivered:true, and segments were rotated and deleted.
func TestCrashLosesNoReceiptedMessage(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 7))
	for round := range crashRounds {
		killAfter := crashMessages*4/10 + rng.IntN(crashMessages*5/10) // receipts before the kill
		t.Run(fmt.Sprintf("round%d_kill_after_%d", round, killAfter), func(t *testing.T) {
			crashRound(t, killAfter)
		})
	}
}

// crashLog is what the clients of one round saw before the kill.
type crashLog struct {
	mu        sync.Mutex
	receipted map[string]bool  // body -> true once its RECEIPT arrived
	acked     map[string]bool  // body -> true once its ACK was sent
	ackedAt   map[string]int64 // body -> event number once the broker had handled its ACK
	seenFirst map[string]bool  // bodies the consumer saw before the crash
	// durable is the highest event number taken before a receipted SEND
	// was sent: an ACK handled before it was journaled (Forget) ahead of
	// that SEND's Append, so the RECEIPT's fsync covered it.
	durable int64
	events  atomic.Int64 // orders ACK handling and SENDs across connections
	// receipts and handled count RECEIPTs of SENDs and ACKs known handled;
	// maybeKill kills the broker once both are far enough.
	receipts, handled atomic.Int64
	killAfter         int64
	maybeKill         func()
}

func crashRound(t *testing.T, killAfter int) {
	dir := t.TempDir()
	flags := []string{"-journal-dir", dir, "-journal-sync", "always", "-journal-segment-size", crashSegment}
	b := startBroker(t, flags...)

	cl := &crashLog{receipted: map[string]bool{}, acked: map[string]bool{}, ackedAt: map[string]int64{}, seenFirst: map[string]bool{},
		killAfter: int64(killAfter)}
	var (
		killed   = make(chan struct{})
		killOnce sync.Once
	)
	cl.maybeKill = func() {
		if cl.receipts.Load() >= cl.killAfter && cl.handled.Load() >= crashMinAcks {
			go killOnce.Do(func() { b.kill9(); close(killed) })
		}
	}

	var wg sync.WaitGroup
	for p := range crashProducers {
		wg.Go(func() {
			conn, err := stomp.Dial("tcp", b.addr, stomp.ConnOpt.HeartBeat(0, 0))
			if err != nil {
				t.Errorf("producer %d: %v", p, err)
				return
			}
			defer conn.MustDisconnect()
			for i := range crashMessages / crashProducers {
				body := fmt.Sprintf("p%d-%d", p, i)
				sent := cl.events.Add(1)
				err := conn.Send(crashQueue, "text/plain", []byte(body), stomp.SendOpt.Receipt,
					stomp.SendOpt.Header("persistent", "true"))
				if err != nil {
					return // the broker died: this one was never receipted
				}
				cl.mu.Lock()
				cl.receipted[body] = true
				cl.durable = max(cl.durable, sent)
				cl.mu.Unlock()
				cl.receipts.Add(1)
				cl.maybeKill()
			}
		})
	}
	wg.Go(func() { crashConsumer(t, b.addr, cl, killed) })
	select {
	case <-killed:
	case <-time.After(2 * time.Minute):
		t.Fatal("the kill never happened")
	}
	wg.Wait()
	rotated, deleted := segmentCounts(t, dir)
	t.Logf("journal at the kill: segments up to %d, %d deleted by compaction", rotated, deleted)
	if rotated < 10 || deleted == 0 {
		t.Errorf("the journal rotated to segment %d and compaction deleted %d segments: want rotation and compaction during the run", rotated, deleted)
	}

	// Restart on the same journal and drain the queue.
	b2 := startBroker(t, flags...)
	defer b2.stop()
	conn, err := stomp.Dial("tcp", b2.addr, stomp.ConnOpt.HeartBeat(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.MustDisconnect()
	sub, err := conn.Subscribe(crashQueue, stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
drain:
	for range 2 * crashMessages { // bounded: the queue holds at most what was sent
		select {
		case m := <-sub.C:
			if m.Err != nil {
				t.Fatal(m.Err)
			}
			body := string(m.Body)
			got[body]++
			if (got[body] > 1 || cl.seenFirst[body]) && m.Header.Get("redelivered") != "true" {
				t.Errorf("%s delivered again without redelivered:true", body)
			}
		case <-time.After(2 * time.Second):
			break drain // quiet for 2 s: the queue is drained
		}
	}
	lost, back, durableAcks := 0, 0, 0
	for body := range cl.receipted {
		if got[body] == 0 && !cl.acked[body] {
			lost++
			if lost <= 5 {
				t.Errorf("receipted message %s lost", body)
			}
		}
	}
	for body, at := range cl.ackedAt {
		if at >= cl.durable {
			continue // its removal may not have reached the disk
		}
		durableAcks++
		if got[body] > 0 {
			back++
			if back <= 5 {
				t.Errorf("acknowledged message %s came back after the restart", body)
			}
		}
	}
	t.Logf("receipted %d, acked before the crash %d (%d known on disk), recovered %d, lost %d, came back %d",
		len(cl.receipted), len(cl.acked), durableAcks, len(got), lost, back)
	if lost > 0 || back > 0 {
		t.Fatalf("%d receipted messages lost, %d acknowledged ones came back", lost, back)
	}
	if len(cl.receipted) < killAfter {
		t.Fatalf("only %d receipts before the kill, want at least %d", len(cl.receipted), killAfter)
	}
	if durableAcks == 0 {
		t.Fatal("no ACK was known to be on disk at the kill: the check of acknowledged messages tested nothing")
	}
}

// crashConsumer acknowledges (client-individual) every message but each
// crashKeepEvery-th, and after every crashAckBatch ACKs sends a receipted
// frame: its RECEIPT says the broker has handled the ACKs before it.
func crashConsumer(t *testing.T, addr string, cl *crashLog, killed <-chan struct{}) {
	conn, err := stomp.Dial("tcp", addr, stomp.ConnOpt.HeartBeat(0, 0))
	if err != nil {
		t.Errorf("consumer: %v", err)
		return
	}
	defer conn.MustDisconnect()
	sub, err := conn.Subscribe(crashQueue, stomp.AckClientIndividual)
	if err != nil {
		return
	}
	// go-stomp's connection goroutine both fills sub.C (16 deep) and
	// writes this loop's ACKs: a reader that acks while more MESSAGEs
	// arrive can deadlock the client under load. A goroutine keeps sub.C
	// drained into a channel that holds a whole round.
	msgs := make(chan *stomp.Message, crashMessages+1)
	go func() {
		for m := range sub.C {
			msgs <- m
		}
		close(msgs)
	}()
	var batch []string
	for n := range crashMessages {
		select {
		case m := <-msgs:
			if m == nil || m.Err != nil {
				return
			}
			body := string(m.Body)
			cl.mu.Lock()
			cl.seenFirst[body] = true
			cl.mu.Unlock()
			if n%crashKeepEvery == crashKeepEvery-1 {
				continue // left unacknowledged: it must come back
			}
			if conn.Ack(m) != nil {
				return
			}
			cl.mu.Lock()
			cl.acked[body] = true // ACK written; the broker may not have it yet
			cl.mu.Unlock()
			batch = append(batch, body)
			if len(batch) < crashAckBatch {
				continue
			}
			if conn.Send(crashSyncTopic, "text/plain", nil, stomp.SendOpt.Receipt) != nil {
				return
			}
			at := cl.events.Add(1)
			cl.mu.Lock()
			for _, b := range batch {
				cl.ackedAt[b] = at
			}
			cl.mu.Unlock()
			cl.handled.Add(int64(len(batch)))
			batch = batch[:0]
			cl.maybeKill()
		case <-killed:
			return
		}
	}
}

// segmentCounts returns the highest segment number in a journal directory
// and how many segments below it are gone (deleted by compaction).
func segmentCounts(t *testing.T, dir string) (highest, deleted int) {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		n, err := strconv.Atoi(strings.TrimSuffix(filepath.Base(name), ".seg"))
		if err != nil {
			t.Fatalf("segment file %s: %v", name, err)
		}
		highest = max(highest, n)
	}
	return highest, highest - len(names)
}
