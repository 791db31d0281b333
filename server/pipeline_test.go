package server

import (
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stompbox/stompbox/frames"
	"github.com/stompbox/stompbox/persistence"
)

// TestPipelinedPersistentSends: one connection writes 128 receipted
// persistent SENDs without waiting (a real journal, sync always, over
// loopback TCP). Every RECEIPT comes, in the order sent, and the SENDs of
// that one connection share fsyncs: it does not wait for one fsync per
// message. A consumer then gets all 128 in order.
func TestPipelinedPersistentSends(t *testing.T) {
	j, err := persistence.Open(t.TempDir(), persistence.Config{Sync: persistence.SyncAlways, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = j.Close() }) // after the server's shutdown (cleanups run last first)
	srv := startServer(t, bigQueues(j))
	p := dialRaw(t, srv.addr)
	p.connect()
	const n = 128
	before := j.Stats().Fsyncs
	var burst strings.Builder
	for i := range n {
		burst.WriteString(frame("SEND", "m"+strconv.Itoa(i), "destination:/queue/pipe", "persistent:true", "receipt:r"+strconv.Itoa(i)))
	}
	p.send(burst.String()) // all 128 written before any RECEIPT is read
	for i := range n {
		f := p.next(10 * time.Second)
		if f.Command != frames.CmdReceipt || header(f, "receipt-id") != "r"+strconv.Itoa(i) {
			t.Fatalf("frame %d: %s receipt-id %q (%s), want RECEIPT r%d", i, f.Command, header(f, "receipt-id"), header(f, "message"), i)
		}
	}
	fsyncs := j.Stats().Fsyncs - before
	t.Logf("%d receipted SENDs of one connection took %d fsyncs", n, fsyncs)
	if fsyncs == 0 || fsyncs > n/4 {
		t.Fatalf("%d fsyncs for %d SENDs of one connection, want at most %d: the SENDs must be in flight together", fsyncs, n, n/4)
	}
	c := dialRaw(t, srv.addr)
	c.connect()
	c.send(frame("SUBSCRIBE", "", "destination:/queue/pipe", "id:s", "ack:client-individual"))
	for i := range n {
		f := c.next(10 * time.Second)
		if f.Command != frames.CmdMessage || string(f.Body) != "m"+strconv.Itoa(i) {
			t.Fatalf("message %d: %s %q, want m%d", i, f.Command, f.Body, i)
		}
	}
}
