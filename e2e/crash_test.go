//go:build e2e

package e2e

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
)

const (
	crashRounds    = 5
	crashProducers = 8
	crashMessages  = 10_000 // per round, over all producers
	crashQueue     = "/queue/crash"
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
// producers, kill -9 at a random moment (in some rounds while a consumer is
// acknowledging), restart on the same journal, consume: every receipted
// message that was not acknowledged before the crash comes back, and any
// message seen twice carries redelivered:true.
func TestCrashLosesNoReceiptedMessage(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 7))
	for round := range crashRounds {
		killAfter := crashMessages/10 + rng.IntN(crashMessages*8/10) // receipts before the kill
		consume := round%2 == 1                                      // some rounds acknowledge while producing
		t.Run(fmt.Sprintf("round%d_kill_after_%d_consuming_%v", round, killAfter, consume), func(t *testing.T) {
			crashRound(t, killAfter, consume)
		})
	}
}

func crashRound(t *testing.T, killAfter int, consume bool) {
	dir := t.TempDir()
	b := startBroker(t, "-journal-dir", dir, "-journal-sync", "always")

	var (
		mu        sync.Mutex
		receipted = map[string]bool{} // body -> true once its RECEIPT arrived
		acked     = map[string]bool{} // body -> true once its ACK was sent with a receipt
		seenFirst = map[string]bool{} // bodies the consumer saw before the crash
		receipts  atomic.Int64
		killed    = make(chan struct{})
		killOnce  sync.Once
	)
	kill := func() { killOnce.Do(func() { b.kill9(); close(killed) }) }

	var wg sync.WaitGroup
	for p := range crashProducers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := stomp.Dial("tcp", b.addr, stomp.ConnOpt.HeartBeat(0, 0))
			if err != nil {
				t.Errorf("producer %d: %v", p, err)
				return
			}
			defer conn.MustDisconnect()
			for i := range crashMessages / crashProducers {
				body := fmt.Sprintf("p%d-%d", p, i)
				err := conn.Send(crashQueue, "text/plain", []byte(body), stomp.SendOpt.Receipt,
					stomp.SendOpt.Header("persistent", "true"))
				if err != nil {
					return // the broker died: this one was never receipted
				}
				mu.Lock()
				receipted[body] = true
				mu.Unlock()
				if receipts.Add(1) == int64(killAfter) {
					go kill()
				}
			}
		}()
	}
	if consume {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := stomp.Dial("tcp", b.addr, stomp.ConnOpt.HeartBeat(0, 0))
			if err != nil {
				t.Errorf("consumer: %v", err)
				return
			}
			defer conn.MustDisconnect()
			sub, err := conn.Subscribe(crashQueue, stomp.AckClientIndividual)
			if err != nil {
				return
			}
			for range crashMessages {
				select {
				case m := <-sub.C:
					if m == nil || m.Err != nil {
						return
					}
					body := string(m.Body)
					mu.Lock()
					seenFirst[body] = true
					mu.Unlock()
					if conn.Ack(m) != nil {
						return
					}
					mu.Lock()
					acked[body] = true // ACK written; removal may not be on disk yet
					mu.Unlock()
				case <-killed:
					return
				}
			}
		}()
	}
	select {
	case <-killed:
	case <-time.After(2 * time.Minute):
		t.Fatal("the kill never happened")
	}
	wg.Wait()

	// Restart on the same journal and drain the queue.
	b2 := startBroker(t, "-journal-dir", dir, "-journal-sync", "always")
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
			if (got[body] > 1 || seenFirst[body]) && m.Header.Get("redelivered") != "true" {
				t.Errorf("%s delivered again without redelivered:true", body)
			}
		case <-time.After(2 * time.Second):
			break drain // quiet for 2 s: the queue is drained
		}
	}
	lost := 0
	for body := range receipted {
		if got[body] == 0 && !acked[body] {
			lost++
			if lost <= 5 {
				t.Errorf("receipted message %s lost", body)
			}
		}
	}
	t.Logf("receipted %d, acked before the crash %d, recovered %d, lost %d", len(receipted), len(acked), len(got), lost)
	if lost > 0 {
		t.Fatalf("%d receipted messages lost", lost)
	}
	if len(receipted) < killAfter {
		t.Fatalf("only %d receipts before the kill, want at least %d", len(receipted), killAfter)
	}
}
