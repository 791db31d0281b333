//go:build e2e

package e2e

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
)

// TestPipelinedCrashLosesNoReceiptedMessage: one raw connection keeps up
// to 128 receipted persistent SENDs in flight (pipelined publishing), and
// the broker is killed with SIGKILL after a random number of RECEIPTs.
// After a restart on the same journal every receipted message is there,
// and the RECEIPTs came in the order of the SENDs.
func TestPipelinedCrashLosesNoReceiptedMessage(t *testing.T) {
	const (
		rounds   = 3
		messages = 10_000
		window   = 128
		queue    = "/queue/pipecrash"
	)
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 11))
	for round := range rounds {
		killAfter := messages/10 + rng.IntN(messages*8/10)
		t.Run(fmt.Sprintf("round%d_kill_after_%d", round, killAfter), func(t *testing.T) {
			dir := t.TempDir()
			b := startBroker(t, "-journal-dir", dir, "-journal-sync", "always")
			conn, err := net.Dial("tcp", b.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.Write([]byte("CONNECT\naccept-version:1.2\nhost:e2e\n\n\x00")); err != nil {
				t.Fatal(err)
			}
			var (
				mu        sync.Mutex
				cond      = sync.NewCond(&mu)
				receipted []string // receipt-ids, in arrival order
				readErr   error
			)
			go func() { // reads RECEIPTs until the connection dies
				r := bufio.NewReader(conn)
				for {
					frame, err := r.ReadString(0)
					mu.Lock()
					if err != nil {
						readErr = err
						cond.Broadcast()
						mu.Unlock()
						return
					}
					frame = strings.TrimLeft(frame, "\n")
					if id, ok := strings.CutPrefix(frame, "RECEIPT\nreceipt-id:"); ok {
						receipted = append(receipted, strings.SplitN(id, "\n", 2)[0])
						if len(receipted) == killAfter {
							_ = b.cmd.Process.Kill() // SIGKILL; kill9 below waits for the exit
						}
					} else if !strings.HasPrefix(frame, "CONNECTED") {
						readErr = fmt.Errorf("unexpected frame %q", frame)
					}
					cond.Broadcast()
					mu.Unlock()
				}
			}()
			for sent := 0; sent < messages; {
				mu.Lock()
				for sent-len(receipted) >= window && readErr == nil {
					cond.Wait()
				}
				room, dead := min(window-(sent-len(receipted)), messages-sent), readErr != nil
				mu.Unlock()
				if dead {
					break
				}
				var batch strings.Builder
				for i := sent; i < sent+room; i++ {
					fmt.Fprintf(&batch, "SEND\ndestination:%s\npersistent:true\nreceipt:m%d\n\nm%d\x00", queue, i, i)
				}
				if _, err := conn.Write([]byte(batch.String())); err != nil {
					break // the broker died
				}
				sent += room
			}
			mu.Lock()
			for readErr == nil { // the kill ends the reader
				cond.Wait()
			}
			got := append([]string(nil), receipted...)
			mu.Unlock()
			b.kill9() // already killed (the reader ended because of it): waits for the exit
			for i, id := range got {
				if id != fmt.Sprintf("m%d", i) {
					t.Fatalf("RECEIPT %d is %s, want m%d: RECEIPTs must come in the order sent", i, id, i)
				}
			}
			if len(got) < killAfter {
				t.Fatalf("only %d RECEIPTs before the kill, want at least %d", len(got), killAfter)
			}

			b2 := startBroker(t, "-journal-dir", dir, "-journal-sync", "always")
			defer b2.stop()
			c, err := stomp.Dial("tcp", b2.addr, stomp.ConnOpt.HeartBeat(0, 0))
			if err != nil {
				t.Fatal(err)
			}
			defer c.MustDisconnect()
			sub, err := c.Subscribe(queue, stomp.AckAuto)
			if err != nil {
				t.Fatal(err)
			}
			recovered := map[string]bool{}
			var order []int
		drain:
			for range 2 * messages {
				select {
				case m := <-sub.C:
					if m.Err != nil {
						t.Fatal(m.Err)
					}
					recovered[string(m.Body)] = true
					var n int
					fmt.Sscanf(string(m.Body), "m%d", &n)
					order = append(order, n)
				case <-time.After(2 * time.Second):
					break drain
				}
			}
			lost := 0
			for _, id := range got {
				if !recovered[id] {
					lost++
				}
			}
			t.Logf("receipted %d, recovered %d, lost %d", len(got), len(recovered), lost)
			if lost > 0 {
				t.Fatalf("%d receipted messages lost", lost)
			}
			for i := 1; i < len(order); i++ {
				if order[i] <= order[i-1] {
					t.Fatalf("recovered out of order: m%d after m%d", order[i], order[i-1])
				}
			}
		})
	}
}
