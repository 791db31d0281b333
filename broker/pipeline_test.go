package broker

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stompbox/stompbox/frames"
)

// pipeJournal is a memJournal that also takes appends without waiting
// (PipelinedJournal); the test decides when, and how, each completes.
type pipeJournal struct {
	memJournal
	amu     sync.Mutex
	pending []pipeAppend // in AppendAsync order, completed ones included
}

type pipeAppend struct {
	recs      []JournalRecord
	done      JournalDone
	completed bool
}

var _ PipelinedJournal = (*pipeJournal)(nil)

func (j *pipeJournal) AppendAsync(done JournalDone, recs ...JournalRecord) error {
	j.mu.Lock()
	full := j.full && slices.ContainsFunc(recs, func(r JournalRecord) bool { return r.Op == OpEnqueue })
	j.mu.Unlock()
	if full {
		return fmt.Errorf("pipe: %w", ErrJournalFull)
	}
	j.amu.Lock()
	defer j.amu.Unlock()
	j.pending = append(j.pending, pipeAppend{recs: slices.Clone(recs), done: done})
	return nil
}

// complete finishes append i (in AppendAsync order) with err; a success
// records it, as a write would.
func (j *pipeJournal) complete(t *testing.T, i int, err error) {
	t.Helper()
	j.amu.Lock()
	if i >= len(j.pending) || j.pending[i].completed {
		j.amu.Unlock()
		t.Fatalf("no pending append %d (have %d)", i, len(j.pending))
	}
	a := &j.pending[i]
	a.completed = true
	recs, done := a.recs, a.done
	j.amu.Unlock()
	if err == nil {
		j.mu.Lock()
		j.appends = append(j.appends, recs)
		j.mu.Unlock()
	}
	done.JournalDone(err)
}

// submitted is how many appends were handed over.
func (j *pipeJournal) submitted() int {
	j.amu.Lock()
	defer j.amu.Unlock()
	return len(j.pending)
}

func pipeBroker(t *testing.T, cfg Config) (*Broker, *pipeJournal, *client, *client) {
	t.Helper()
	j := &pipeJournal{}
	cfg.Journal = j
	b := New(cfg)
	if b.pipelined == nil {
		t.Fatal("a PipelinedJournal must be used without waiting")
	}
	consumer := newClient(t, b)
	consumer.connect()
	consumer.mustSend(frames.CmdSubscribe, "", "destination:/queue/q", "id:s", "ack:client-individual")
	producer := newClient(t, b)
	producer.connect()
	return b, j, producer, consumer
}

// TestPipelineReceiptsInOrder: persistent SENDs are all handed to the
// journal at once; none is deliverable or receipted before its write
// completes, and completions out of order are applied in the order sent.
func TestPipelineReceiptsInOrder(t *testing.T) {
	_, j, p, c := pipeBroker(t, Config{})
	for i := range 3 {
		p.mustSend(frames.CmdSend, "m"+strconv.Itoa(i), "destination:/queue/q", "persistent:true", "receipt:r"+strconv.Itoa(i))
	}
	if n := j.submitted(); n != 3 {
		t.Fatalf("%d appends in flight, want 3: the session must not wait for each", n)
	}
	if sends, held := p.s.pipedCount(); sends != 3 || held != 0 {
		t.Fatalf("pipeline holds %d sends, %d frames; want 3, 0", sends, held)
	}
	if fs := p.poll(); len(fs) != 0 {
		t.Fatalf("output before any write completed: %v", commands(fs))
	}
	if got := bodies(c.poll()); len(got) != 0 {
		t.Fatalf("delivered %v before the journal wrote them", got)
	}

	j.complete(t, 2, nil)
	if !p.poked() {
		t.Fatal("a completion must poke the session")
	}
	if fs := p.poll(); len(fs) != 0 {
		t.Fatalf("the third SEND's completion overtook the first two: %v", receiptIDs(fs))
	}
	if got := bodies(c.poll()); len(got) != 0 {
		t.Fatalf("delivered %v out of order", got)
	}

	j.complete(t, 0, nil)
	p.poked()
	if ids := receiptIDs(p.poll()); !slices.Equal(ids, []string{"r0"}) {
		t.Fatalf("receipts %v, want [r0]", ids)
	}
	if got := bodies(c.poll()); !slices.Equal(got, []string{"m0"}) {
		t.Fatalf("delivered %v, want [m0]", got)
	}

	j.complete(t, 1, nil)
	p.poked()
	if ids := receiptIDs(p.poll()); !slices.Equal(ids, []string{"r1", "r2"}) {
		t.Fatalf("receipts %v, want [r1 r2]", ids)
	}
	if got := bodies(c.poll()); !slices.Equal(got, []string{"m1", "m2"}) {
		t.Fatalf("delivered %v, want [m1 m2]", got)
	}
	if sends, held := p.s.pipedCount(); sends != 0 || held != 0 || p.s.budget.input.Load() != 0 {
		t.Fatalf("after all: %d sends, %d held, %d input bytes charged; want none", sends, held, p.s.budget.input.Load())
	}
}

// TestPipelineOnePokePerRound: completions that arrive before the read
// loop looks share one Poke.
func TestPipelineOnePokePerRound(t *testing.T) {
	_, j, p, _ := pipeBroker(t, Config{})
	for i := range 5 {
		p.mustSend(frames.CmdSend, "m", "destination:/queue/q", "persistent:true", "receipt:r"+strconv.Itoa(i))
	}
	for i := range 5 {
		j.complete(t, i, nil)
	}
	if n := p.tr.pokes.Load(); n != 1 {
		t.Fatalf("%d pokes for one round of 5 completions, want 1", n)
	}
	p.poked()
	if ids := receiptIDs(p.poll()); len(ids) != 5 {
		t.Fatalf("receipts %v, want 5", ids)
	}
	p.mustSend(frames.CmdSend, "m", "destination:/queue/q", "persistent:true", "receipt:r5")
	j.complete(t, 5, nil)
	if !p.poked() {
		t.Fatal("after the read loop looked, the next completion must poke again")
	}
}

// TestPipelineJournalFailure: a failed write of one in-flight SEND ends
// the session with ERROR journal-failed naming its receipt, after the
// RECEIPTs of the SENDs before it; nothing after it is receipted or
// delivered.
func TestPipelineJournalFailure(t *testing.T) {
	b, j, p, c := pipeBroker(t, Config{})
	for i := range 3 {
		p.mustSend(frames.CmdSend, "m"+strconv.Itoa(i), "destination:/queue/q", "persistent:true", "receipt:r"+strconv.Itoa(i))
	}
	failed := fmt.Errorf("disk: %w", ErrJournalFailed)
	j.complete(t, 1, failed)
	j.complete(t, 2, failed)
	j.complete(t, 0, nil)
	if err := p.s.Poked(); !isClosed(err) {
		t.Fatalf("Poked after a failed write: %v, want the session closed", err)
	}
	fs := p.poll()
	if got := commands(fs); !slices.Equal(got, []string{"RECEIPT", "ERROR"}) {
		t.Fatalf("got %v, want RECEIPT (r0) then ERROR", got)
	}
	if hdr(fs[0], "receipt-id") != "r0" || hdr(fs[1], "error-code") != CodeJournalFailed || hdr(fs[1], "receipt-id") != "r1" {
		t.Fatalf("got receipt %q, error %q for %q; want r0, journal-failed for r1",
			hdr(fs[0], "receipt-id"), hdr(fs[1], "error-code"), hdr(fs[1], "receipt-id"))
	}
	p.s.Release()
	fs = c.poll()
	if got := bodies(fs); !slices.Equal(got, []string{"m0"}) {
		t.Fatalf("delivered %v, want only m0", got)
	}
	c.mustSend(frames.CmdAck, "", "id:"+hdr(fs[0], "ack"))
	q, _ := b.spaces[DefaultVirtualHost].queue("/queue/q", nil)
	q.mu.Lock()
	reserved := q.reservedCount
	q.mu.Unlock()
	if reserved != 0 || b.queuedBytes.Load() != 0 {
		t.Fatalf("after the failure %d reservations and %d queued bytes remain", reserved, b.queuedBytes.Load())
	}
}

// TestPipelineOrdersOtherFrames: frames that must keep their order with
// the SENDs in flight wait behind them (a non-persistent SEND, BEGIN, a
// persistent SEND after them, DISCONNECT); an ACK without a receipt does
// not.
func TestPipelineOrdersOtherFrames(t *testing.T) {
	_, j, p, c := pipeBroker(t, Config{})
	p.mustSend(frames.CmdSubscribe, "", "destination:/queue/mine", "id:own", "ack:client-individual")
	p.mustSend(frames.CmdSend, "x", "destination:/queue/mine")
	msg := p.poll()
	if len(msg) != 1 || msg[0].Command != frames.CmdMessage {
		t.Fatalf("got %v, want the MESSAGE to ack later", commands(msg))
	}

	p.mustSend(frames.CmdSend, "a", "destination:/queue/q", "persistent:true", "receipt:ra")
	p.mustSend(frames.CmdSend, "b", "destination:/queue/q", "receipt:rb") // not persistent: waits
	p.mustSend(frames.CmdBegin, "", "transaction:t", "receipt:rt")
	p.mustSend(frames.CmdSend, "c", "destination:/queue/q", "persistent:true", "receipt:rc") // behind held frames: waits
	p.mustSend(frames.CmdAck, "", "id:"+hdr(msg[0], "ack"))                                  // no receipt: at once
	if sends, held := p.s.pipedCount(); sends != 1 || held != 3 {
		t.Fatalf("pipeline: %d sends, %d held; want 1, 3", sends, held)
	}
	if n := j.submitted(); n != 1 {
		t.Fatalf("%d appends submitted, want 1 (c waits behind b)", n)
	}
	ackID, _ := strconv.ParseUint(strings.TrimPrefix(hdr(msg[0], "ack"), strings.SplitN(hdr(msg[0], "ack"), ".", 2)[0]+"."), 10, 64)
	if p.s.subTab.getString("own").has(ackID) {
		t.Fatal("the ACK must apply at once, ahead of the held frames")
	}
	p.mustSend(frames.CmdDisconnect, "", "receipt:bye")

	j.complete(t, 0, nil)
	p.poked()
	if ids := receiptIDs(p.poll()); !slices.Equal(ids, []string{"ra", "rb", "rt"}) {
		t.Fatalf("receipts %v, want [ra rb rt] (rc in flight)", ids)
	}
	if n := j.submitted(); n != 2 {
		t.Fatalf("%d appends submitted, want 2: c joins the pipeline once b ran", n)
	}
	j.complete(t, 1, nil)
	if err := p.s.Poked(); !isClosed(err) {
		t.Fatalf("Poked: %v, want closed by DISCONNECT", err)
	}
	fs := p.poll()
	if ids := receiptIDs(fs); !slices.Equal(ids, []string{"rc", "bye"}) {
		t.Fatalf("receipts %v, want [rc bye]: DISCONNECT's RECEIPT last", ids)
	}
	if !p.closing {
		t.Fatal("the session must close after DISCONNECT")
	}
	if got := bodies(c.poll()); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("delivered %v, want [a b c]: the order sent", got)
	}
}

// TestPipelineBudgetBackpressure: in-flight SENDs count against the
// connection's byte budget; past it the driver is told to stop reading,
// and completions let it read again.
func TestPipelineBudgetBackpressure(t *testing.T) {
	const limit = 8192
	body := strings.Repeat("x", 1000)
	_, j, p, _ := pipeBroker(t, Config{MaxConnectionBytes: limit})
	sent := 0
	for range 100 { // far past the budget, if nothing stopped it
		if paused, _ := p.s.FlowWait(); paused {
			break
		}
		p.mustSend(frames.CmdSend, body, "destination:/queue/q", "persistent:true", "receipt:r"+strconv.Itoa(sent))
		sent++
	}
	if paused, _ := p.s.FlowWait(); !paused {
		t.Fatalf("after %d SENDs of 1000 B in flight the driver still reads; budget %d", sent, limit)
	}
	if sent > limit/1000+1 {
		t.Fatalf("%d SENDs in flight before the driver stopped, want at most %d", sent, limit/1000+1)
	}
	if in := p.s.budget.input.Load(); in <= limit-1200 || in > limit+1200 {
		t.Fatalf("%d input bytes charged for %d in flight, want about the budget", in, sent)
	}
	// A read chunk already taken is still handled: more frames past the
	// budget are held, charged, and the driver stays stopped.
	p.mustSend(frames.CmdSend, body, "destination:/queue/q", "persistent:true")
	if paused, _ := p.s.FlowWait(); !paused || j.submitted() != sent+1 {
		t.Fatalf("paused %v with %d submitted, want still paused with %d", paused, j.submitted(), sent+1)
	}
	for i := range sent + 1 {
		j.complete(t, i, nil)
	}
	p.poked()
	if paused, _ := p.s.FlowWait(); paused {
		t.Fatal("completions freed the budget: the driver must read again")
	}
	if ids := receiptIDs(p.poll()); len(ids) != sent {
		t.Fatalf("%d receipts, want %d", len(ids), sent)
	}
	if in := p.s.budget.input.Load(); in != 0 {
		t.Fatalf("%d input bytes still charged", in)
	}
}

// TestPipelineFullJournalBlocks: a journal whose budget is full refuses
// the append at once; the SEND is held by flow control (blocked on the
// journal) and joins the pipeline when retried.
func TestPipelineFullJournalBlocks(t *testing.T) {
	clock := newFakeClock()
	_, j, p, c := pipeBroker(t, Config{Now: clock.Now})
	p.mustSend(frames.CmdSend, "a", "destination:/queue/q", "persistent:true", "receipt:ra")
	j.mu.Lock()
	j.full = true
	j.mu.Unlock()
	p.mustSend(frames.CmdSend, "b", "destination:/queue/q", "persistent:true", "receipt:rb")
	if reason, _ := p.s.Blocked(); reason != FullJournal {
		t.Fatalf("blocked on %v, want journal", reason)
	}
	p.mustSend(frames.CmdSend, "c", "destination:/queue/q", "receipt:rc")
	j.complete(t, 0, nil)
	p.poked()
	if ids := receiptIDs(p.poll()); !slices.Equal(ids, []string{"ra"}) {
		t.Fatalf("receipts %v, want [ra]", ids)
	}
	j.mu.Lock()
	j.full = false
	j.mu.Unlock()
	_, wakeAt := p.s.FlowWait()
	clock.now = wakeAt
	if err := p.s.Poked(); err != nil {
		t.Fatal(err)
	}
	if reason, _ := p.s.Blocked(); reason != NotFull || j.submitted() != 2 {
		t.Fatalf("blocked on %v with %d appends; want unblocked, b submitted", reason, j.submitted())
	}
	if sends, held := p.s.pipedCount(); sends != 1 || held != 1 {
		t.Fatalf("pipeline: %d sends, %d held; want b in flight, c behind it", sends, held)
	}
	j.complete(t, 1, nil)
	p.poked()
	if ids := receiptIDs(p.poll()); !slices.Equal(ids, []string{"rb", "rc"}) {
		t.Fatalf("receipts %v, want [rb rc]", ids)
	}
	if got := bodies(c.poll()); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("delivered %v, want [a b c]", got)
	}
}

// TestPipelineShutdownWaits: Shutdown lets the SENDs in flight be
// receipted before the server-shutdown ERROR.
func TestPipelineShutdownWaits(t *testing.T) {
	_, j, p, _ := pipeBroker(t, Config{})
	p.mustSend(frames.CmdSend, "a", "destination:/queue/q", "persistent:true", "receipt:ra")
	p.s.Shutdown()
	if fs := p.poll(); len(fs) != 0 {
		t.Fatalf("got %v before the SEND in flight completed", commands(fs))
	}
	p.mustSend(frames.CmdSend, "b", "destination:/queue/q", "persistent:true", "receipt:rb")
	if j.submitted() != 1 {
		t.Fatal("a frame after Shutdown must not run")
	}
	j.complete(t, 0, nil)
	p.tr.pokes.Store(0)
	if err := p.s.Poked(); !isClosed(err) {
		t.Fatalf("Poked: %v, want closed", err)
	}
	fs := p.poll()
	if got := commands(fs); !slices.Equal(got, []string{"RECEIPT", "ERROR"}) || hdr(fs[1], "error-code") != CodeServerShutdown {
		t.Fatalf("got %v, want RECEIPT then ERROR server-shutdown", got)
	}
}

// TestPipelineReleaseApplies: a connection that goes away with SENDs in
// flight: those the journal wrote enter their queue (they are on disk and
// would come back after a restart anyway), without a RECEIPT.
func TestPipelineReleaseApplies(t *testing.T) {
	b, j, p, c := pipeBroker(t, Config{})
	p.mustSend(frames.CmdSend, "a", "destination:/queue/q", "persistent:true")
	p.mustSend(frames.CmdSend, "b", "destination:/queue/q", "persistent:true")
	p.s.Abort(ClosePeer)
	released := make(chan struct{})
	go func() {
		defer close(released)
		p.s.Release()
	}()
	j.complete(t, 0, nil)
	j.complete(t, 1, errors.New("disk: lost"))
	<-released
	fs := c.poll()
	if got := bodies(fs); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("delivered %v, want [a]", got)
	}
	c.mustSend(frames.CmdAck, "", "id:"+hdr(fs[0], "ack"))
	if b.queuedBytes.Load() != 0 || p.s.budget.input.Load() != 0 {
		t.Fatalf("%d queued bytes (a acked, b failed), %d input bytes left", b.queuedBytes.Load(), p.s.budget.input.Load())
	}
}

// TestPipelineTopicDurables: a persistent SEND to a topic with a durable
// subscription is pipelined too, and reaches the durable only once
// written.
func TestPipelineTopicDurables(t *testing.T) {
	j := &pipeJournal{}
	b := New(Config{Journal: j})
	d := newClient(t, b)
	d.connect("client-id:app")
	d.mustSend(frames.CmdSubscribe, "", "destination:/topic/t", "id:d", "durable-subscription-name:n")
	d.poll()
	p := newClient(t, b)
	p.connect()
	p.mustSend(frames.CmdSend, "t1", "destination:/topic/t", "persistent:true", "receipt:r")
	if j.submitted() != 1 || len(bodies(d.poll())) != 0 {
		t.Fatal("the topic SEND must be in flight, not delivered")
	}
	j.complete(t, 0, nil)
	p.poked()
	if ids := receiptIDs(p.poll()); !slices.Equal(ids, []string{"r"}) {
		t.Fatalf("receipts %v", ids)
	}
	if got := bodies(d.poll()); !slices.Equal(got, []string{"t1"}) {
		t.Fatalf("durable got %v, want [t1]", got)
	}
}

// TestPipelineLateNotifyKeepsPoking: a completion marks its SEND done
// before it sets the notified flag, so a drain may apply the SEND first
// and the flag be set after, with nothing left in flight; the next round's
// completions must still poke (a flag left set would silence them, and the
// connection would wait for its RECEIPTs forever).
func TestPipelineLateNotifyKeepsPoking(t *testing.T) {
	_, j, p, _ := pipeBroker(t, Config{})
	p.mustSend(frames.CmdSend, "a", "destination:/queue/q", "persistent:true", "receipt:ra")
	e := p.s.pipe.sends[p.s.pipe.head]
	e.done.Store(true) // the first half of JournalDone
	if err := p.s.Poked(); err != nil {
		t.Fatal(err)
	}
	if ids := receiptIDs(p.poll()); !slices.Equal(ids, []string{"ra"}) {
		t.Fatalf("receipts %v, want [ra]", ids)
	}
	if !p.s.pipe.notified.Swap(true) { // the second half, late
		p.s.t.Poke()
	}
	p.poked() // the late poke finds nothing in flight
	p.mustSend(frames.CmdSend, "b", "destination:/queue/q", "persistent:true", "receipt:rb")
	j.complete(t, 1, nil)
	if !p.poked() {
		t.Fatal("the next completion did not poke: the late flag silenced it")
	}
	if ids := receiptIDs(p.poll()); !slices.Equal(ids, []string{"rb"}) {
		t.Fatalf("receipts %v, want [rb]", ids)
	}
}

// TestPipelineSafetyNet: while SENDs are in flight the driver is given a
// time to call Poked even without a poke, so a lost poke delays RECEIPTs by
// at most that, never forever.
func TestPipelineSafetyNet(t *testing.T) {
	clock := newFakeClock()
	_, j, p, _ := pipeBroker(t, Config{Now: clock.Now})
	if _, wakeAt := p.s.FlowWait(); !wakeAt.IsZero() {
		t.Fatalf("wakeAt %v with nothing in flight, want none", wakeAt)
	}
	p.mustSend(frames.CmdSend, "a", "destination:/queue/q", "persistent:true", "receipt:ra")
	paused, wakeAt := p.s.FlowWait()
	if paused || wakeAt != clock.Now().Add(flowSafetyRetry) {
		t.Fatalf("FlowWait = %v, %v; want reading, wake in %v", paused, wakeAt, flowSafetyRetry)
	}
	j.complete(t, 0, nil)
	p.tr.pokes.Store(0) // the poke is lost
	clock.now = wakeAt
	if err := p.s.Poked(); err != nil { // what the driver does at wakeAt
		t.Fatal(err)
	}
	if ids := receiptIDs(p.poll()); !slices.Equal(ids, []string{"ra"}) {
		t.Fatalf("receipts %v, want [ra]", ids)
	}
	if _, wakeAt := p.s.FlowWait(); !wakeAt.IsZero() {
		t.Fatalf("wakeAt %v once nothing is in flight, want none", wakeAt)
	}
}

// TestPipelineNoAllocOnNonPersistentPath: with a pipelining journal
// configured, a non-persistent SEND costs the allocations it costs
// without a journal (the pipeline adds none to the hot path).
func TestPipelineNoAllocOnNonPersistentPath(t *testing.T) {
	wire := wireFrame(frames.V12, frames.CmdSend, "hello", "destination:/topic/hot")
	allocs := func(cfg Config) float64 {
		c := newClient(t, New(cfg))
		c.connect()
		buf := make([]byte, len(wire))
		return testing.AllocsPerRun(200, func() {
			copy(buf, wire) // Feed decodes in place
			if err := c.s.Feed(buf); err != nil {
				t.Fatal(err)
			}
		})
	}
	without := allocs(Config{})
	with := allocs(Config{Journal: &pipeJournal{}})
	if with != without {
		t.Fatalf("a non-persistent SEND allocates %v times with a pipelining journal, %v without", with, without)
	}
	t.Logf("%v allocations per non-persistent SEND either way", with)
}

// TestPipelineRefusedForRoomIsRetried: a SEND the journal took and then
// refused for lack of room (its disk filled: ErrJournalFull from the
// write) is flow control under full_policy block: no ERROR, the records
// are handed to the journal again when the retry is due, the SENDs behind
// it wait, and once written everything is receipted in order. Under
// full_policy error the producer gets ERROR limit-exceeded.
func TestPipelineRefusedForRoomIsRetried(t *testing.T) {
	clock := newFakeClock()
	_, j, p, c := pipeBroker(t, Config{Now: clock.Now})
	for i := range 2 {
		p.mustSend(frames.CmdSend, "m"+strconv.Itoa(i), "destination:/queue/q", "persistent:true", "receipt:r"+strconv.Itoa(i))
	}
	full := fmt.Errorf("no space for the journal: %w", ErrJournalFull)
	j.complete(t, 0, full)
	j.complete(t, 1, nil)
	if err := p.s.Poked(); err != nil {
		t.Fatalf("Poked after a refusal for room: %v, want the session kept", err)
	}
	if fs := p.poll(); len(fs) != 0 {
		t.Fatalf("got %v after the refusal, want nothing yet (no ERROR, no RECEIPT for m1 before m0)", commands(fs))
	}
	if n := j.submitted(); n != 2 {
		t.Fatalf("%d appends handed over before the retry was due, want 2", n)
	}
	clock.advance(pipeRetryInterval)
	if err := p.s.Poked(); err != nil {
		t.Fatal(err)
	}
	if n := j.submitted(); n != 3 {
		t.Fatalf("%d appends handed over after the retry was due, want 3 (m0 again)", n)
	}
	j.complete(t, 2, nil)
	if err := p.s.Poked(); err != nil {
		t.Fatal(err)
	}
	if got := receiptIDs(p.poll()); !slices.Equal(got, []string{"r0", "r1"}) {
		t.Fatalf("receipts %v, want r0, r1", got)
	}
	if got := bodies(c.poll()); !slices.Equal(got, []string{"m0", "m1"}) {
		t.Fatalf("delivered %v, want m0, m1 in order", got)
	}

	// A shutdown does not wait for a disk that stays full: the SEND
	// waiting for its retry is refused with its ERROR.
	_, j, p, _ = pipeBroker(t, Config{Now: clock.Now})
	p.mustSend(frames.CmdSend, "y", "destination:/queue/q", "persistent:true", "receipt:ry")
	j.complete(t, 0, full)
	if err := p.s.Poked(); err != nil {
		t.Fatal(err)
	}
	p.s.Shutdown()
	if err := p.s.Poked(); !isClosed(err) {
		t.Fatalf("Poked during a shutdown with a SEND waiting for room: %v, want the session closed", err)
	}
	if fs := p.poll(); len(fs) == 0 || hdr(fs[0], "error-code") != CodeLimitExceeded {
		t.Fatalf("got %v, want ERROR limit-exceeded for the refused SEND", commands(fs))
	}

	_, j, p, _ = pipeBroker(t, Config{FullPolicy: FullError})
	p.mustSend(frames.CmdSend, "x", "destination:/queue/q", "persistent:true", "receipt:rx")
	j.complete(t, 0, full)
	if err := p.s.Poked(); !isClosed(err) {
		t.Fatalf("Poked under full_policy error: %v, want the session closed", err)
	}
	if fs := p.poll(); len(fs) != 1 || hdr(fs[0], "error-code") != CodeLimitExceeded {
		t.Fatalf("got %v, want ERROR limit-exceeded", commands(fs))
	}
}

// TestPipelineTopicDurablesReserveRoom: persistent SENDs to a topic in
// flight hold room in each durable subscription's queue, as those to a
// queue do, so that SENDs in flight together cannot pass
// max_queue_messages (each passed the room check on its own, and all
// entered later: the e2e budget test saw the durable's queue 14 KB past
// max_queue_bytes). Past the room, the producer is held (flow control).
func TestPipelineTopicDurablesReserveRoom(t *testing.T) {
	j := &pipeJournal{}
	b := New(Config{Journal: j, MaxQueueMessages: 2})
	d := newClient(t, b)
	d.connect("client-id:app")
	d.mustSend(frames.CmdSubscribe, "", "destination:/topic/t", "id:d", "durable-subscription-name:n", "ack:client")
	d.poll()
	p := newClient(t, b)
	p.connect()
	for i := range 3 {
		p.mustSend(frames.CmdSend, "t"+strconv.Itoa(i), "destination:/topic/t", "persistent:true", "receipt:r"+strconv.Itoa(i))
	}
	if n := j.submitted(); n != 2 {
		t.Fatalf("%d topic SENDs in flight with room for 2 in the durable subscription, want 2 (the third held)", n)
	}
	j.complete(t, 0, nil)
	j.complete(t, 1, nil)
	p.poked()
	if ids := receiptIDs(p.poll()); !slices.Equal(ids, []string{"r0", "r1"}) {
		t.Fatalf("receipts %v, want r0, r1", ids)
	}
	fs := d.poll()
	if got := bodies(fs); !slices.Equal(got, []string{"t0", "t1"}) {
		t.Fatalf("durable got %v, want t0, t1", got)
	}
	if n := j.submitted(); n != 2 {
		t.Fatalf("%d SENDs handed over while the durable subscription is full, want 2", n)
	}
	d.mustSend(frames.CmdAck, "", "id:"+hdr(fs[1], "ack")) // client ack: both
	p.poked()
	if n := j.submitted(); n != 3 {
		t.Fatalf("%d SENDs handed over after the durable subscription drained, want 3", n)
	}
}
