package broker

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stompbox/stompbox/frames"
)

// fakeClock is an injectable Config.Now.
type fakeClock struct{ now time.Time }

func newFakeClock() *fakeClock               { return &fakeClock{now: time.Unix(1_000_000, 0)} }
func (c *fakeClock) Now() time.Time          { return c.now }
func (c *fakeClock) advance(d time.Duration) { c.now = c.now.Add(d) }

// poked runs the session's poked work if its transport was poked (as the
// driver would), and reports whether it was.
func (c *client) poked() bool {
	c.t.Helper()
	if c.tr.pokes.Swap(0) == 0 {
		return false
	}
	if err := c.s.Poked(); err != nil {
		c.t.Fatalf("Poked: %v", err)
	}
	return true
}

// receiptIDs returns the receipt-id of every RECEIPT in fs, in order.
func receiptIDs(fs []*frames.Frame) []string {
	var ids []string
	for _, f := range fs {
		if f.Command == frames.CmdReceipt {
			ids = append(ids, hdr(f, "receipt-id"))
		}
	}
	return ids
}

func TestFullQueueBlocksThenResumesInOrder(t *testing.T) {
	clock := newFakeClock()
	b := New(Config{MaxQueueMessages: 2, Now: clock.Now})
	p := newClient(t, b)
	p.connect()
	for i := 1; i <= 4; i++ {
		p.mustSend(frames.CmdSend, "m"+string(rune('0'+i)), "destination:/queue/q", "receipt:r"+string(rune('0'+i)))
	}
	if got := receiptIDs(p.poll()); !slices.Equal(got, []string{"r1", "r2"}) {
		t.Fatalf("receipts while the queue is full: %v, want r1 r2 only", got)
	}
	if reason, _ := p.s.Blocked(); reason != FullQueue || p.s.heldCount() != 2 {
		t.Fatalf("blocked on %v with %d held, want queue and 2", reason, p.s.heldCount())
	}
	if count, _ := b.flow.blockedStats(clock.Now()); count[FullQueue] != 1 {
		t.Fatalf("blocked_connections{queue} = %d, want 1", count[FullQueue])
	}

	c := newClient(t, b)
	c.connect()
	c.mustSend(frames.CmdSubscribe, "", "destination:/queue/q", "id:s", "ack:client-individual")
	var got []string
	for round := 0; round < 10 && len(got) < 4; round++ {
		fs := c.poll()
		for _, f := range fs {
			if f.Command != frames.CmdMessage {
				continue
			}
			got = append(got, string(f.Body))
			c.mustSend(frames.CmdAck, "", "id:"+hdr(f, "ack"))
		}
		clock.advance(time.Second)
		p.poked()
	}
	if !slices.Equal(got, []string{"m1", "m2", "m3", "m4"}) {
		t.Fatalf("consumer got %v, want m1..m4 in order", got)
	}
	if ids := receiptIDs(p.poll()); !slices.Equal(ids, []string{"r3", "r4"}) {
		t.Fatalf("receipts after resuming: %v, want r3 r4", ids)
	}
	if reason, _ := p.s.Blocked(); reason != NotFull || p.s.heldCount() != 0 || p.s.budget.held() != 0 {
		t.Fatalf("after resuming: blocked on %v, %d held, budget %d; want none", reason, p.s.heldCount(), p.s.budget.held())
	}
	count, seconds := b.flow.blockedStats(clock.Now())
	if count[FullQueue] != 0 || seconds[FullQueue] <= 0 {
		t.Fatalf("after resuming: blocked %d, %.1f s; want 0 and more than 0 s", count[FullQueue], seconds[FullQueue])
	}
}

// TestBlockedOrdering: while blocked, ACK/NACK without a transaction,
// SUBSCRIBE and UNSUBSCRIBE overtake the held frames; BEGIN, COMMIT and a
// transactional ACK wait behind them in arrival order.
func TestBlockedOrdering(t *testing.T) {
	b := New(Config{MaxQueueMessages: 2})
	c := newClient(t, b)
	c.connect()
	c.mustSend(frames.CmdSubscribe, "", "destination:/queue/q", "id:s", "ack:client-individual")
	c.mustSend(frames.CmdSend, "1", "destination:/queue/q")
	c.mustSend(frames.CmdSend, "2", "destination:/queue/q")
	var acks []string
	for _, f := range c.poll() {
		if f.Command == frames.CmdMessage {
			acks = append(acks, hdr(f, "ack"))
		}
	}
	if len(acks) != 2 {
		t.Fatalf("got %d messages, want 2", len(acks))
	}
	c.mustSend(frames.CmdSend, "3", "destination:/queue/q", "receipt:send3")           // held: the queue is full
	c.mustSend(frames.CmdBegin, "", "transaction:t", "receipt:begin")                  // held
	c.mustSend(frames.CmdSubscribe, "", "destination:/queue/o", "id:o", "receipt:sub") // at once
	c.mustSend(frames.CmdUnsubscribe, "", "id:o", "receipt:unsub")                     // at once
	c.mustSend(frames.CmdAck, "", "id:"+acks[1], "transaction:t", "receipt:txack")     // held
	if ids := receiptIDs(c.poll()); !slices.Equal(ids, []string{"sub", "unsub"}) {
		t.Fatalf("receipts while blocked: %v, want sub unsub", ids)
	}
	if c.tr.pokes.Load() != 0 {
		t.Fatal("poked before any room freed")
	}
	c.mustSend(frames.CmdNack, "", "id:"+acks[0], "receipt:nack") // at once: frees nothing (redelivered)
	fs := c.poll()
	if ids := receiptIDs(fs); !slices.Equal(ids, []string{"nack"}) {
		t.Fatalf("receipts after the NACK: %v, want nack", ids)
	}
	var redelivered string
	for _, f := range fs {
		if f.Command == frames.CmdMessage {
			redelivered = hdr(f, "ack")
		}
	}
	c.mustSend(frames.CmdAck, "", "id:"+redelivered, "receipt:ack") // at once: frees a slot
	if !c.poked() {
		t.Fatal("the ACK that freed room did not poke the blocked session")
	}
	if ids := receiptIDs(c.poll()); !slices.Equal(ids, []string{"ack", "send3", "begin", "txack"}) {
		t.Fatalf("receipts: %v, want ack, then the held send3 begin txack in order", ids)
	}
	if reason, _ := c.s.Blocked(); reason != NotFull {
		t.Fatalf("still blocked on %v", reason)
	}
}

// TestDisconnectWhileBlocked: DISCONNECT gives the subscriptions' messages
// back at once, then waits behind the held frames for its RECEIPT.
func TestDisconnectWhileBlocked(t *testing.T) {
	b := New(Config{MaxQueueMessages: 1})
	other := newClient(t, b)
	other.connect()
	other.mustSend(frames.CmdSend, "full", "destination:/queue/full")

	c := newClient(t, b)
	c.connect()
	c.mustSend(frames.CmdSubscribe, "", "destination:/queue/work", "id:s", "ack:client-individual")
	other.mustSend(frames.CmdSend, "job", "destination:/queue/work")
	if n := len(c.poll()); n != 1 {
		t.Fatalf("got %d frames, want the job", n)
	}
	c.mustSend(frames.CmdSend, "late", "destination:/queue/full", "receipt:late") // held
	if err := c.send(frames.CmdDisconnect, "", "receipt:bye"); err != nil {
		t.Fatalf("DISCONNECT while blocked: %v", err)
	}
	if err := c.send(frames.CmdSend, "after", "destination:/queue/work"); err != nil {
		t.Fatalf("frame after DISCONNECT: %v", err)
	}
	if paused, _ := c.s.FlowWait(); !paused {
		t.Fatal("a held DISCONNECT must stop reading")
	}
	if ids := receiptIDs(c.poll()); len(ids) != 0 {
		t.Fatalf("receipts before the held SEND ran: %v", ids)
	}
	w := newClient(t, b)
	w.connect()
	w.mustSend(frames.CmdSubscribe, "", "destination:/queue/work", "id:w")
	if fs := w.poll(); len(fs) != 1 || string(fs[0].Body) != "job" {
		t.Fatalf("the unacknowledged job must go back to the queue at DISCONNECT; another consumer got %v", commands(fs))
	}
	f := newClient(t, b)
	f.connect()
	f.mustSend(frames.CmdSubscribe, "", "destination:/queue/full", "id:f") // auto-ack: drains the full queue
	if c.tr.pokes.Load() == 0 {
		t.Fatal("draining the queue did not poke")
	}
	if err := c.s.Poked(); !isClosed(err) {
		t.Fatalf("Poked: %v, want the session closed by its DISCONNECT", err)
	}
	fs := c.poll()
	if ids := receiptIDs(fs); !slices.Equal(ids, []string{"late", "bye"}) || !c.closing {
		t.Fatalf("receipts %v (closing %v), want late then bye and the session closing", ids, c.closing)
	}
	var bodies []string
	for _, m := range f.poll() {
		bodies = append(bodies, string(m.Body))
	}
	if !slices.Equal(bodies, []string{"full", "late"}) {
		t.Fatalf("full queue's consumer got %v, want full, late", bodies)
	}
	if q, _ := b.spaces[DefaultVirtualHost].queue("/queue/work", nil); q != nil && q.count != 0 {
		t.Fatalf("a frame sent after DISCONNECT was applied: /queue/work holds %d", q.count)
	}
}

func TestBlockTimeout(t *testing.T) {
	clock := newFakeClock()
	b := New(Config{MaxQueueMessages: 1, BlockTimeout: 5 * time.Second, Now: clock.Now})
	c := newClient(t, b)
	c.connect("heart-beat:1000,0")
	c.mustSend(frames.CmdSend, "1", "destination:/queue/q")
	c.mustSend(frames.CmdSend, "2", "destination:/queue/q", "receipt:r2")
	if d := c.s.ReadDeadline(clock.Now()); !d.IsZero() {
		t.Fatalf("heart-beat deadline while blocked: %v, want none", d)
	}
	_, wakeAt := c.s.FlowWait()
	if wakeAt.IsZero() || wakeAt.After(clock.Now().Add(5*time.Second)) {
		t.Fatalf("wake at %v, want by the block timeout", wakeAt)
	}
	clock.advance(4 * time.Second)
	if err := c.s.Poked(); err != nil {
		t.Fatalf("Poked before the timeout: %v", err)
	}
	clock.advance(time.Second)
	if err := c.s.Poked(); !isClosed(err) {
		t.Fatalf("Poked past the timeout: %v, want closed", err)
	}
	fs := c.poll()
	if len(fs) != 1 || fs[0].Command != frames.CmdError || hdr(fs[0], "error-code") != CodeLimitExceeded ||
		hdr(fs[0], "retryable") != "true" || hdr(fs[0], "receipt-id") != "" {
		t.Fatalf("got %v, want only ERROR limit-exceeded retryable, no receipt for the held frame", commands(fs))
	}
	c.s.Release()
	if count, _ := b.flow.blockedStats(clock.Now()); count[FullQueue] != 0 {
		t.Fatalf("blocked connections after release: %d", count[FullQueue])
	}
	q, _ := b.spaces[DefaultVirtualHost].queue("/queue/q", nil)
	if q.waiters != nil || c.s.budget.held() != 0 {
		t.Fatalf("released session still waits (%d) or holds %d bytes", len(q.waiters), c.s.budget.held())
	}
}

// TestFullPolicies: the same full queue blocks under block, fails under
// error exactly as before.
func TestFullPolicies(t *testing.T) {
	for _, policy := range []FullPolicy{FullBlock, FullError} {
		t.Run(policy.String(), func(t *testing.T) {
			b := New(Config{MaxQueueMessages: 1, FullPolicy: policy})
			c := newClient(t, b)
			c.connect()
			c.mustSend(frames.CmdSend, "1", "destination:/queue/q")
			err := c.send(frames.CmdSend, "2", "destination:/queue/q", "receipt:r")
			if policy == FullBlock {
				if err != nil || len(c.poll()) != 0 || c.s.heldCount() != 1 {
					t.Fatalf("block: %v, want the frame held silently", err)
				}
				return
			}
			if !isClosed(err) {
				t.Fatalf("error: %v, want closed", err)
			}
			f := c.next()
			if hdr(f, "error-code") != CodeLimitExceeded || hdr(f, "retryable") != "true" || hdr(f, "receipt-id") != "r" {
				t.Fatalf("got %v", headerLines(f))
			}
		})
	}
}

func TestTotalBytesBlock(t *testing.T) {
	b := New(Config{MaxTotalQueuedBytes: 1000})
	c := newClient(t, b)
	c.connect()
	c.mustSend(frames.CmdSend, strings.Repeat("a", 500), "destination:/queue/a")
	c.mustSend(frames.CmdSend, strings.Repeat("b", 500), "destination:/queue/b", "receipt:b")
	if reason, _ := c.s.Blocked(); reason != FullTotal || b.flow.totalWaiting.Load() != 1 {
		t.Fatalf("blocked on %v, %d waiting on the total; want total, 1", reason, b.flow.totalWaiting.Load())
	}
	d := newClient(t, b)
	d.connect()
	d.mustSend(frames.CmdSubscribe, "", "destination:/queue/a", "id:a")
	if !c.poked() {
		t.Fatal("draining the total did not poke")
	}
	if ids := receiptIDs(c.poll()); !slices.Equal(ids, []string{"b"}) || b.flow.totalWaiting.Load() != 0 {
		t.Fatalf("receipts %v, %d waiting; want b and none", ids, b.flow.totalWaiting.Load())
	}
}

// TestJournalFullBlock: the journal has no notification; the session
// retries on a timer that backs off, and resumes once the disk has room.
func TestJournalFullBlock(t *testing.T) {
	clock := newFakeClock()
	j := &memJournal{full: true}
	b := New(Config{Journal: j, Now: clock.Now})
	c := newClient(t, b)
	c.connect()
	c.mustSend(frames.CmdSend, "keep", "destination:/queue/q", "persistent:true", "receipt:r")
	if reason, _ := c.s.Blocked(); reason != FullJournal {
		t.Fatalf("blocked on %v, want journal", reason)
	}
	var delays []time.Duration
	for range 8 {
		_, wakeAt := c.s.FlowWait()
		delays = append(delays, wakeAt.Sub(clock.Now()))
		clock.now = wakeAt
		if err := c.s.Poked(); err != nil {
			t.Fatal(err)
		}
	}
	want := []time.Duration{10, 20, 40, 80, 160, 320, 500, 500}
	for i := range want {
		if delays[i] != want[i]*time.Millisecond {
			t.Fatalf("retry delays %v, want %v ms", delays, want)
		}
	}
	if len(c.poll()) != 0 {
		t.Fatal("output while the journal is full")
	}
	j.mu.Lock()
	j.full = false
	j.mu.Unlock()
	clock.advance(500 * time.Millisecond)
	if err := c.s.Poked(); err != nil {
		t.Fatal(err)
	}
	if ids := receiptIDs(c.poll()); !slices.Equal(ids, []string{"r"}) {
		t.Fatalf("receipts %v, want r", ids)
	}
	if q, _ := b.spaces[DefaultVirtualHost].queue("/queue/q", nil); q == nil || q.count != 1 || len(j.all()) != 1 {
		t.Fatal("the message must be journaled and queued once")
	}
}

// TestRateThrottles: past the frame or byte rate, block throttles (the
// driver stops reading until the bucket is positive) instead of failing;
// every frame is applied.
func TestRateThrottles(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want time.Duration
	}{
		{"frames", Config{MaxFramesPerSecond: 10}, 100 * time.Millisecond},
		{"bytes", Config{MaxBytesPerSecond: 1000}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			tc.cfg.Now = clock.Now
			b := New(tc.cfg)
			c := newClient(t, b)
			c.connect()
			c.mustSend(frames.CmdSubscribe, "", "destination:/queue/r", "id:s")
			sent := 0
			for range 40 {
				c.mustSend(frames.CmdSend, strings.Repeat("x", 100), "destination:/queue/r")
				sent++
				if _, throttled := c.s.Blocked(); throttled {
					break
				}
			}
			paused, wakeAt := c.s.FlowWait()
			if !paused || !wakeAt.After(clock.Now()) {
				t.Fatalf("after %d frames: paused %v until %v, want throttled", sent, paused, wakeAt)
			}
			if tc.want > 0 && wakeAt.Sub(clock.Now()) != tc.want {
				t.Fatalf("throttled for %v, want %v", wakeAt.Sub(clock.Now()), tc.want)
			}
			if got := len(c.poll()); got != sent {
				t.Fatalf("%d messages delivered, want all %d sent", got, sent)
			}
			clock.now = wakeAt
			if err := c.s.Poked(); err != nil {
				t.Fatal(err)
			}
			if paused, _ := c.s.FlowWait(); paused {
				t.Fatal("still throttled once the bucket refilled")
			}
			if _, seconds := b.flow.blockedStats(clock.Now()); seconds[FullRate] <= 0 {
				t.Fatal("blocked_seconds_total{rate} did not grow")
			}
			if d := c.s.ReadDeadline(clock.Now().Add(-time.Hour)); !d.IsZero() {
				t.Fatalf("no heart-beat negotiated: deadline %v", d)
			}
		})
	}
}

// TestHeartbeatDeadlineFromUnblock: a blocked session is not timed out
// for silence, and counts its heart-beat deadline from the unblock.
func TestHeartbeatDeadlineFromUnblock(t *testing.T) {
	clock := newFakeClock()
	b := New(Config{MaxQueueMessages: 1, Now: clock.Now})
	c := newClient(t, b)
	c.connect("heart-beat:1000,0")
	lastRead := clock.Now()
	c.mustSend(frames.CmdSubscribe, "", "destination:/queue/q", "id:s", "ack:client-individual")
	c.mustSend(frames.CmdSend, "1", "destination:/queue/q")
	c.mustSend(frames.CmdSend, "2", "destination:/queue/q")
	if d := c.s.ReadDeadline(lastRead); !d.IsZero() {
		t.Fatalf("deadline while blocked: %v", d)
	}
	clock.advance(time.Minute)
	fs := c.poll()
	c.mustSend(frames.CmdAck, "", "id:"+hdr(fs[len(fs)-1], "ack"))
	if !c.poked() {
		t.Fatal("no poke")
	}
	if d := c.s.ReadDeadline(lastRead); !d.Equal(clock.Now().Add(c.s.ReadTimeout())) {
		t.Fatalf("deadline %v, want the timeout counted from the unblock %v", d, clock.Now())
	}
}

// TestHeldInputPastBudgetPauses: while blocked the driver keeps reading
// until the held frames pass the connection's budget, then stops; they
// are all kept and run once room frees.
func TestHeldInputPastBudgetPauses(t *testing.T) {
	b := New(Config{MaxQueueMessages: 1, MaxConnectionBytes: 2000})
	c := newClient(t, b)
	c.connect()
	c.mustSend(frames.CmdSend, "0", "destination:/queue/q")
	held := 0
	for range 20 {
		if paused, _ := c.s.FlowWait(); paused {
			break
		}
		c.mustSend(frames.CmdSend, strings.Repeat("x", 400), "destination:/queue/q")
		held++
	}
	if paused, _ := c.s.FlowWait(); !paused || held < 3 || held > 6 || c.s.heldCount() != held {
		t.Fatalf("paused %v after %d held (%d kept), want paused after about 2000 bytes", paused, held, c.s.heldCount())
	}
	d := newClient(t, b)
	d.connect()
	d.mustSend(frames.CmdSubscribe, "", "destination:/queue/q", "id:s")
	got := len(d.poll())
	for round := 0; round < 3*held && got < held+1; round++ {
		c.poked()
		got += len(d.poll())
	}
	if got != held+1 || c.s.heldCount() != 0 {
		t.Fatalf("consumer got %d, want %d; %d still held", got, held+1, c.s.heldCount())
	}
	if paused, _ := c.s.FlowWait(); paused {
		t.Fatal("still paused after every held frame ran")
	}
}

// TestNeverFitsIsAnError: a message larger than the queue's limit cannot
// fit however long it waits: ERROR, not a block.
func TestNeverFitsIsAnError(t *testing.T) {
	b := New(Config{MaxQueueBytes: 1000})
	c := newClient(t, b)
	c.connect()
	c.mustSend(frames.CmdSend, "x", "destination:/queue/q")
	if err := c.send(frames.CmdSend, strings.Repeat("y", 2000), "destination:/queue/q"); !isClosed(err) {
		t.Fatalf("oversized SEND: %v, want the session closed", err)
	}
	if f := c.next(); hdr(f, "error-code") != CodeLimitExceeded || hdr(f, "retryable") != "false" {
		t.Fatalf("got %v", headerLines(f))
	}
}

// TestHeldFrameRoundTrip: a held frame is one owned copy that decodes to
// the same command, headers (order and repeats kept) and body.
func TestHeldFrameRoundTrip(t *testing.T) {
	for _, f := range []*frames.Frame{
		{Command: frames.CmdSend, Headers: []frames.Header{
			{Key: []byte("destination"), Value: []byte("/queue/a")},
			{Key: []byte("x"), Value: []byte("1")}, {Key: []byte("x"), Value: []byte("")},
		}, Body: []byte("body\x00with nul")},
		{Command: frames.CmdBegin, Headers: []frames.Header{{Key: []byte("transaction"), Value: []byte("t")}}},
		{Command: frames.CmdDisconnect},
	} {
		h := newHeldFrame(f)
		wire := string(f.Body)
		f.Body = append(f.Body[:0], "overwritten"...) // the parser reuses its buffer
		var scratch frames.Frame
		got := h.frame(&scratch)
		if got.Command != f.Command || len(got.Headers) != len(f.Headers) || string(got.Body) != wire {
			t.Fatalf("%v: got %v %d headers body %q", f.Command, got.Command, len(got.Headers), got.Body)
		}
		for i := range f.Headers {
			if string(got.Headers[i].Key) != string(f.Headers[i].Key) || string(got.Headers[i].Value) != string(f.Headers[i].Value) {
				t.Fatalf("%v header %d: %q:%q", f.Command, i, got.Headers[i].Key, got.Headers[i].Value)
			}
		}
	}
}

// A producer blocked because an open transaction reserved the queue's room
// is woken when that transaction aborts: reservations count for waking as
// they count for refusing.
func TestBlockedProducerWokenByAbortedReservation(t *testing.T) {
	b := New(Config{MaxQueueMessages: 8})
	tx := newClient(t, b)
	tx.connect()
	tx.mustSend(frames.CmdBegin, "", "transaction:t")
	for range 8 {
		tx.mustSend(frames.CmdSend, "reserved", "destination:/queue/q", "transaction:t")
	}
	p := newClient(t, b)
	p.connect()
	p.mustSend(frames.CmdSend, "waiting", "destination:/queue/q", "receipt:w")
	if reason, _ := p.s.Blocked(); reason != FullQueue {
		t.Fatalf("producer blocked on %v, want queue (the transaction holds all 8 places)", reason)
	}
	if p.poked() {
		t.Fatal("producer poked while the reservation still holds the queue")
	}
	tx.mustSend(frames.CmdAbort, "", "transaction:t")
	if !p.poked() {
		t.Fatal("ABORT freed the queue but the blocked producer was not poked")
	}
	if ids := receiptIDs(p.poll()); !slices.Equal(ids, []string{"w"}) {
		t.Fatalf("after the ABORT the producer got receipts %v, want w", ids)
	}
	if reason, _ := p.s.Blocked(); reason != NotFull {
		t.Fatalf("producer still blocked on %v", reason)
	}
}

// Input held while blocked never makes the producer a slow consumer: its
// held SENDs may pass its budget (it then stops being read), yet the
// RECEIPTs of the frames that run and the MESSAGEs of its subscriptions
// still reach it.
func TestHeldInputIsNotOutput(t *testing.T) {
	clock := newFakeClock()
	b := New(Config{MaxConnectionBytes: 4096, MaxQueueMessages: 1, Now: clock.Now})
	p := newClient(t, b)
	p.connect()
	p.mustSend(frames.CmdSubscribe, "", "destination:/topic/news", "id:news")
	body := strings.Repeat("x", 1000)
	for i := range 6 {
		p.mustSend(frames.CmdSend, body, "destination:/queue/q", "receipt:r"+strconv.Itoa(i))
	}
	if paused, _ := p.s.FlowWait(); !paused {
		t.Fatal("five held 1 KB SENDs under a 4 KB budget must pause reading")
	}
	pub := newClient(t, b)
	pub.connect()
	pub.mustSend(frames.CmdSend, "headline", "destination:/topic/news")
	c := newClient(t, b)
	c.connect()
	c.mustSend(frames.CmdSubscribe, "", "destination:/queue/q", "id:s", "ack:client-individual")
	var got int
	var receipts []string
	for round := 0; round < 20 && (got < 6 || len(receipts) < 6); round++ {
		for _, f := range c.poll() {
			if f.Command == frames.CmdMessage {
				got++
				c.mustSend(frames.CmdAck, "", "id:"+hdr(f, "ack"))
			}
		}
		clock.advance(time.Second)
		p.poked()
		for _, f := range p.poll() {
			switch f.Command {
			case frames.CmdReceipt:
				receipts = append(receipts, hdr(f, "receipt-id"))
			case frames.CmdError:
				t.Fatalf("blocked producer got ERROR %s: %s", hdr(f, "error-code"), f.Body)
			case frames.CmdMessage:
				if string(f.Body) != "headline" {
					t.Fatalf("producer got MESSAGE %q", f.Body)
				}
			}
		}
	}
	if got != 6 || len(receipts) != 6 {
		t.Fatalf("consumer got %d of 6, producer %d receipts (%v)", got, len(receipts), receipts)
	}
	if held := p.s.budget.held(); held != 0 {
		t.Fatalf("budget holds %d bytes after everything ran, want 0", held)
	}
}

// A transactional SEND held because its queue was full fits when it runs
// again: its held copy and the transaction are not charged twice.
func TestHeldTransactionalSendFitsOnRerun(t *testing.T) {
	clock := newFakeClock()
	b := New(Config{MaxConnectionBytes: 10_000, MaxQueueMessages: 1, Now: clock.Now})
	filler := newClient(t, b)
	filler.connect()
	filler.mustSend(frames.CmdSend, "first", "destination:/queue/q")
	p := newClient(t, b)
	p.connect()
	p.mustSend(frames.CmdBegin, "", "transaction:t")
	p.mustSend(frames.CmdSend, strings.Repeat("y", 6000), "destination:/queue/q", "transaction:t", "receipt:big")
	p.mustSend(frames.CmdCommit, "", "transaction:t", "receipt:c")
	if reason, _ := p.s.Blocked(); reason != FullQueue {
		t.Fatalf("blocked on %v, want queue", reason)
	}
	c := newClient(t, b)
	c.connect()
	c.mustSend(frames.CmdSubscribe, "", "destination:/queue/q", "id:s")
	c.poll()
	clock.advance(time.Second)
	p.poked()
	if ids := receiptIDs(p.poll()); !slices.Equal(ids, []string{"big", "c"}) {
		t.Fatalf("receipts %v, want big then c (blocked on %v)", ids, func() FullReason { r, _ := p.s.Blocked(); return r }())
	}
	if held := p.s.budget.held(); held != 0 {
		t.Fatalf("budget holds %d bytes after the COMMIT, want 0", held)
	}
}

// A COMMIT whose persistent messages meet a full journal waits and runs
// again: the transaction stays open meanwhile, so it commits once the
// disk has room.
func TestCommitWaitsForFullJournal(t *testing.T) {
	clock := newFakeClock()
	j := &memJournal{}
	b := New(Config{Journal: j, Now: clock.Now})
	c := newClient(t, b)
	c.connect()
	c.mustSend(frames.CmdBegin, "", "transaction:t")
	c.mustSend(frames.CmdSend, "keep", "destination:/queue/q", "persistent:true", "transaction:t")
	j.mu.Lock()
	j.full = true
	j.mu.Unlock()
	c.mustSend(frames.CmdCommit, "", "transaction:t", "receipt:c")
	if reason, _ := c.s.Blocked(); reason != FullJournal {
		t.Fatalf("COMMIT blocked on %v, want journal", reason)
	}
	j.mu.Lock()
	j.full = false
	j.mu.Unlock()
	clock.advance(time.Second)
	if err := c.s.Poked(); err != nil {
		t.Fatal(err)
	}
	fs := c.poll()
	if ids := receiptIDs(fs); !slices.Equal(ids, []string{"c"}) {
		t.Fatalf("after the journal has room: %v (receipts %v), want the COMMIT's receipt", fs, ids)
	}
	if len(j.all()) != 1 {
		t.Fatalf("journal holds %d records, want the committed message", len(j.all()))
	}
}

// DISCONNECT while a transaction is held waits behind it whole: the
// transaction's ACK still names its delivery when its COMMIT runs.
func TestDisconnectWhileTransactionHeld(t *testing.T) {
	clock := newFakeClock()
	b := New(Config{MaxQueueMessages: 1, Now: clock.Now})
	pub := newClient(t, b)
	pub.connect()
	pub.mustSend(frames.CmdSend, "in", "destination:/queue/in")
	pub.mustSend(frames.CmdSend, "full", "destination:/queue/out")
	c := newClient(t, b)
	c.connect()
	c.mustSend(frames.CmdSubscribe, "", "destination:/queue/in", "id:s", "ack:client-individual")
	var ack string
	for _, f := range c.poll() {
		if f.Command == frames.CmdMessage {
			ack = hdr(f, "ack")
		}
	}
	c.mustSend(frames.CmdBegin, "", "transaction:t")
	c.mustSend(frames.CmdAck, "", "id:"+ack, "transaction:t")
	c.mustSend(frames.CmdSend, "result", "destination:/queue/out", "transaction:t")
	c.mustSend(frames.CmdCommit, "", "transaction:t", "receipt:c")
	if err := c.send(frames.CmdDisconnect, "", "receipt:bye"); err != nil && !errors.Is(err, ErrSessionClosed) {
		t.Fatal(err)
	}
	drain := newClient(t, b)
	drain.connect()
	drain.mustSend(frames.CmdSubscribe, "", "destination:/queue/out", "id:d")
	drain.poll()
	clock.advance(time.Second)
	if err := c.s.Poked(); err != nil && !errors.Is(err, ErrSessionClosed) { // the DISCONNECT ends it
		t.Fatal(err)
	}
	fs := c.poll()
	for _, f := range fs {
		if f.Command == frames.CmdError {
			t.Fatalf("held COMMIT failed: %s %s", hdr(f, "error-code"), f.Body)
		}
	}
	if ids := receiptIDs(fs); !slices.Equal(ids, []string{"c", "bye"}) {
		t.Fatalf("receipts %v, want c then bye", ids)
	}
}
