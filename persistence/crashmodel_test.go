package persistence

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/frames"
	jt "github.com/stompbox/stompbox/persistence/journaltest"
)

// The crash model test drives a File on a crashFS with random appends
// (some concurrent), removals (waited for and Forgotten), durable
// subscriptions, rotations (tiny segments), compactions, clean restarts,
// crashes of the process and crashes of the machine (at a quiet moment,
// or by the fs dying after a random number of operations, in the middle
// of whatever the flusher, the compactor or recovery was doing), under
// each sync policy. It keeps a model of what the journal has acknowledged
// and, after every restart, checks the replay against it:
//
//   - every message whose Append returned nil and whose removal was not
//     attempted is there, in append order within its queue (under sync
//     never and interval: unless the machine crashed before an fsync);
//   - nothing whose removal (or whose durable subscription's deletion) was
//     acknowledged comes back (with the same proviso), and nothing never
//     appended appears;
//   - an Append that failed is entirely there or entirely not (one framed
//     record), and so is a Forget;
//   - a durable subscription's create comes before its messages;
//   - recovery reports no corruption: a crash only tears tails.
//
// Unacknowledged records may or may not be there; what the replay shows
// of them becomes the model's truth from then on.

// crashSeedEnv overrides the random seed of TestCrashModel, to replay a
// failure: STOMPBOX_CRASH_SEED=<seed> go test -run TestCrashModel ./persistence
const crashSeedEnv = "STOMPBOX_CRASH_SEED"

func TestCrashModel(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(crashSeedEnv); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("%s: %v", crashSeedEnv, err)
		}
	}
	rounds := 30
	if testing.Short() {
		rounds = 5
	}
	var total Stats
	for i := range uint64(rounds) {
		s := seed + i
		t.Run(fmt.Sprintf("seed=%d", s), func(t *testing.T) {
			st := runCrashModel(t, s, 400)
			total.SegmentsDeleted += st.SegmentsDeleted
			total.SegmentsRewritten += st.SegmentsRewritten
		})
	}
	// The runs must have exercised what they are about.
	if total.SegmentsDeleted == 0 || total.SegmentsRewritten == 0 {
		t.Errorf("compaction deleted %d and rewrote %d segments over all runs: the model test no longer exercises it",
			total.SegmentsDeleted, total.SegmentsRewritten)
	}
}

// FuzzCrashModel is the model test with the seed chosen by the fuzzer:
// go test -fuzz FuzzCrashModel ./persistence. Without -fuzz it runs the
// seeds below.
func FuzzCrashModel(f *testing.F) {
	for _, s := range []uint64{1, 2, 3} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, seed uint64) { runCrashModel(t, seed, 150) })
}

// mState is what the model knows of a message or a durable subscription.
type mState uint8

const (
	mLive   mState = iota // acknowledged, not removed: must be replayed
	mMaybe                // its enqueue or its removal was not acknowledged
	mAbsent               // a durable subscription never created or deleted
	// Under sync never or interval, an Append that returned is written,
	// not fsynced: it survives the crash of the process, not necessarily
	// that of the machine.
	mWritten     // acknowledged, written, not known to be fsynced
	mGoneWritten // its removal (or its durable's deletion) written, not known to be fsynced
)

type mMsg struct {
	n     int // append order
	queue string
	state mState
	body  []byte
}

// mGroup is the records of one unacknowledged Append or Forget: on disk
// they are all there or none is.
type mGroup struct {
	enqueued, removed []string
	// durable are the removed messages whose enqueue is known to be on
	// disk: only for those does "not replayed" mean "removed".
	durable []string
	forget  bool
}

type crashModel struct {
	t     *testing.T
	rng   *rand.Rand
	fs    *crashFS
	f     *File
	cfg   Config
	logs  *syncBuffer
	steps []string // the latest steps, for the failure message

	next      int
	msgs      map[string]*mMsg
	durables  map[string]mState // by queue
	groups    []mGroup
	forgotten []string // removed by Forget since the last acknowledged Append

	crashes, deaths int
	torn            tornMode // the worst crash so far
	total           Stats    // summed over every File of the run
}

const crashDir = "/journal"

var (
	modelQueues   = []string{"/queue/a", "/queue/b", "/queue/c"}
	modelDurables = []broker.DurableSpec{
		{User: "u", ClientID: "c", Name: "d0", Topic: "t.*"},
		{User: "u", ClientID: "c", Name: "d1", Topic: "t.#"},
	}
)

func runCrashModel(t *testing.T, seed uint64, ops int) Stats {
	t.Logf("seed %d (rerun: %s=%d go test -run TestCrashModel ./persistence)", seed, crashSeedEnv, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	m := &crashModel{
		t: t, rng: rng, fs: newCrashFS(), logs: &syncBuffer{},
		msgs: map[string]*mMsg{}, durables: map[string]mState{},
	}
	m.cfg = Config{
		Sync:         []SyncPolicy{SyncAlways, SyncAlways, SyncNever, SyncInterval}[rng.IntN(4)],
		SyncInterval: time.Millisecond,
		SegmentSize:  []int64{MinSegmentSize, 512, 1024}[rng.IntN(3)],
		// Up to 0.95: a segment holding one small live record and no dead
		// one once counted as "sparse" there, and compaction rewrote such
		// segments into each other forever (TestCompactionEndsWithNothingDead).
		CompactBelow: []float64{0.25, 0.6, 0.95, -1}[rng.IntN(4)],
		Logger:       slog.New(slog.NewTextHandler(m.logs, nil)),
	}
	m.step("open: sync %v, segment size %d, compact below %v", m.cfg.Sync, m.cfg.SegmentSize, m.cfg.CompactBelow)
	m.restart()
	for range ops {
		if m.fs.isDead() {
			m.crash()
			continue
		}
		switch p := rng.IntN(100); {
		case p < 30:
			m.enqueue()
		case p < 35:
			m.concurrent()
		case p < 47:
			m.remove(false)
		case p < 60:
			m.remove(true)
		case p < 66:
			m.durable()
		case p < 72:
			m.step("seal")
			_ = m.f.submitInternal(&request{seal: true}) // a failure shows in the next Append
		case p < 80:
			m.step("compact")
			m.f.compactSync()
		case p < 84:
			m.closeAndReopen()
		case p < 87:
			m.crash()
		case p < 93:
			if !m.fs.dying() {
				n := 1 + rng.IntN(40)
				m.step("the fs dies in %d operations", n)
				m.deaths++
				m.fs.dieAfter(n)
			}
		default:
			m.step("replay while running")
			if err := m.verify(false); err != nil && !m.fs.isDead() {
				m.fatalf("Replay: %v", err)
			}
		}
	}
	m.crash()
	if err := m.f.Close(); err != nil {
		m.fatalf("final Close: %v", err)
	}
	m.account(m.f)
	t.Logf("%d crashes (%d deaths armed), %d messages known at the end; %d records appended, "+
		"%d segments deleted and %d rewritten by compaction", m.crashes, m.deaths, len(m.msgs),
		m.total.Records, m.total.SegmentsDeleted, m.total.SegmentsRewritten)
	return m.total
}

// account adds the counters of f, which is closed, to the run's.
func (m *crashModel) account(f *File) {
	st := f.Stats()
	m.total.Records += st.Records
	m.total.SegmentsDeleted += st.SegmentsDeleted
	m.total.SegmentsRewritten += st.SegmentsRewritten
}

func (m *crashModel) step(format string, args ...any) {
	m.steps = append(m.steps, fmt.Sprintf(format, args...))
	if len(m.steps) > 40 {
		m.steps = m.steps[len(m.steps)-40:]
	}
}

func (m *crashModel) fatalf(format string, args ...any) {
	m.t.Helper()
	logs := m.logs.String()
	logs = logs[max(0, len(logs)-6000):]
	m.t.Fatalf("%s\nlast steps:\n  %s\njournal log (tail):\n%s", fmt.Sprintf(format, args...), strings.Join(m.steps, "\n  "), logs)
}

// message makes a new message for queue.
func (m *crashModel) message(queue string) broker.JournalRecord {
	m.next++
	id := "m-" + strconv.Itoa(m.next)
	body := []byte(id + ":" + strings.Repeat("x", m.rng.IntN(120)))
	hs := []frames.Header{{Key: []byte("destination"), Value: []byte(queue)}}
	m.msgs[id] = &mMsg{n: m.next, queue: queue, state: mMaybe, body: body}
	return jt.Enqueue(queue, broker.RecoveredMessage(id, queue, hs, body, true, 0))
}

// liveIn returns up to n random live messages; durable queues only if
// plainOnly is false.
func (m *crashModel) live(n int, plainOnly bool) []string {
	var ids []string
	for id, mm := range m.msgs {
		if acked(mm.state) && (!plainOnly || !strings.HasPrefix(mm.queue, "/durable/")) {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	// Map order is random but not seeded: sort, then pick with rng.
	slices.SortFunc(ids, func(a, b string) int { return cmp.Compare(m.msgs[a].n, m.msgs[b].n) })
	m.rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	return ids[:min(n, len(ids))]
}

// targets are the queues an enqueue may go to: plain queues and live
// durable subscriptions.
func (m *crashModel) targets() []string {
	qs := append([]string(nil), modelQueues...)
	for _, d := range modelDurables {
		if q := jt.DurableCreate(d).Queue; acked(m.durableState(q)) {
			qs = append(qs, q)
		}
	}
	return qs
}

func (m *crashModel) durableState(queue string) mState {
	if s, ok := m.durables[queue]; ok {
		return s
	}
	return mAbsent
}

// appendGroup appends recs and updates the model by the answer.
func (m *crashModel) appendGroup(g mGroup, recs ...broker.JournalRecord) {
	m.outcome(g, m.f.Append(context.Background(), recs...))
}

// outcome updates the model by the answer to g's Append.
func (m *crashModel) outcome(g mGroup, err error) {
	if err != nil {
		if !m.fs.isDead() {
			m.fatalf("Append failed on a working fs: %v", err)
		}
		if !errors.Is(err, broker.ErrJournalFailed) || !errors.Is(err, syscall.EIO) {
			m.fatalf("Append on a dead fs: %v, want EIO wrapping broker.ErrJournalFailed", err)
		}
		if m.f.Failed() == nil {
			m.fatalf("an Append failed (%v) but the journal is not Failed", err)
		}
		for _, id := range g.removed {
			m.msgs[id].state = mMaybe
		}
		m.groups = append(m.groups, g)
		return
	}
	// Acknowledged: so is every Forget queued before it.
	m.settleForgotten()
	for _, id := range g.enqueued {
		m.msgs[id].state = m.ackState()
	}
	for _, id := range g.removed {
		m.gone(id)
	}
}

// acked reports whether an Append of the record was acknowledged and
// nothing since undid it.
func acked(s mState) bool { return s == mLive || s == mWritten }

// ackState is what an acknowledged Append makes of its records: durable
// under sync always, written otherwise.
func (m *crashModel) ackState() mState {
	if m.cfg.Sync == SyncAlways {
		return mLive
	}
	return mWritten
}

// gone records the acknowledged removal of message id.
func (m *crashModel) gone(id string) {
	if m.cfg.Sync == SyncAlways {
		delete(m.msgs, id)
	} else if mm := m.msgs[id]; mm != nil {
		mm.state = mGoneWritten
	}
}

// written settles what was written once it has been fsynced (a clean
// Close) or the process died with the machine still up: written records
// are there for good, written removals took effect.
func (m *crashModel) written() {
	for id, mm := range m.msgs {
		switch mm.state {
		case mWritten:
			mm.state = mLive
		case mGoneWritten:
			delete(m.msgs, id)
		}
	}
	for q, s := range m.durables {
		switch s {
		case mWritten:
			m.durables[q] = mLive
		case mGoneWritten:
			delete(m.durables, q)
		}
	}
}

// unsynced: the machine crashed, so what was only written may or may not
// be on disk.
func (m *crashModel) unsynced() {
	for _, mm := range m.msgs {
		if mm.state == mWritten || mm.state == mGoneWritten {
			mm.state = mMaybe
		}
	}
	for q, s := range m.durables {
		if s == mWritten || s == mGoneWritten {
			m.durables[q] = mMaybe
		}
	}
}

// settleForgotten: the Forgotten removals are on disk.
func (m *crashModel) settleForgotten() {
	for _, id := range m.forgotten {
		m.gone(id)
	}
	m.forgotten = nil
	m.groups = deleteForgets(m.groups)
}

func deleteForgets(gs []mGroup) []mGroup {
	out := gs[:0]
	for _, g := range gs {
		if !g.forget {
			out = append(out, g)
		}
	}
	return out
}

func (m *crashModel) enqueue() {
	qs := m.targets()
	var recs []broker.JournalRecord
	var g mGroup
	for range 1 + m.rng.IntN(3) {
		r := m.message(qs[m.rng.IntN(len(qs))])
		recs = append(recs, r)
		g.enqueued = append(g.enqueued, r.MessageID)
	}
	m.step("append %v", g.enqueued)
	m.appendGroup(g, recs...)
}

// concurrent appends to each plain queue from a goroutine of its own, all
// at once: they share writes and fsyncs (group commit), and rotations
// fall in the middle of a group.
func (m *crashModel) concurrent() {
	type job struct {
		g    mGroup
		recs []broker.JournalRecord
		err  error
	}
	jobs := make([]*job, len(modelQueues))
	for i, q := range modelQueues {
		j := &job{}
		for range 1 + m.rng.IntN(2) {
			r := m.message(q)
			j.recs = append(j.recs, r)
			j.g.enqueued = append(j.g.enqueued, r.MessageID)
		}
		jobs[i] = j
	}
	m.step("concurrent appends")
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Go(func() { j.err = m.f.Append(context.Background(), j.recs...) })
	}
	wg.Wait()
	for _, j := range jobs {
		m.outcome(j.g, j.err)
	}
}

// remove removes up to two live messages, waited for or Forgotten; a
// waited removal from a plain queue is sometimes a move to another queue
// in the same Append, as dead-lettering does.
func (m *crashModel) remove(forget bool) {
	move := !forget && m.rng.IntN(3) == 0
	ids := m.live(1+m.rng.IntN(2), move)
	if len(ids) == 0 {
		return
	}
	var recs []broker.JournalRecord
	g := mGroup{removed: ids, forget: forget}
	for _, id := range ids {
		recs = append(recs, broker.JournalRecord{Op: broker.OpRemove, Queue: m.msgs[id].queue, MessageID: id})
		if m.msgs[id].state == mLive {
			g.durable = append(g.durable, id)
		}
	}
	if move {
		r := m.message(modelQueues[m.rng.IntN(len(modelQueues))])
		recs = append(recs, r)
		g.enqueued = append(g.enqueued, r.MessageID)
	}
	if !forget {
		m.step("append remove %v, enqueue %v", ids, g.enqueued)
		m.appendGroup(g, recs...)
		return
	}
	m.step("forget remove %v", ids)
	m.f.Forget(recs...)
	for _, id := range ids {
		m.msgs[id].state = mMaybe
	}
	m.forgotten = append(m.forgotten, ids...)
	m.groups = append(m.groups, g)
}

// durable creates or deletes a durable subscription.
func (m *crashModel) durable() {
	rec := jt.DurableCreate(modelDurables[m.rng.IntN(len(modelDurables))])
	switch s := m.durableState(rec.Queue); {
	case acked(s):
		rec = jt.DurableDelete(rec)
	case s != mAbsent:
		return // in doubt: wait for the next restart to tell
	}
	m.step("append %v %s", rec.Op, rec.Queue)
	if err := m.f.Append(context.Background(), rec); err != nil {
		if !m.fs.isDead() || !errors.Is(err, broker.ErrJournalFailed) {
			m.fatalf("durable Append: %v", err)
		}
		m.durables[rec.Queue] = mMaybe
		return
	}
	m.settleForgotten()
	if rec.Op == broker.OpDurableCreate {
		m.durables[rec.Queue] = m.ackState()
		return
	}
	if m.cfg.Sync == SyncAlways {
		delete(m.durables, rec.Queue)
	} else {
		m.durables[rec.Queue] = mGoneWritten
	}
	for id, mm := range m.msgs {
		if mm.queue == rec.Queue {
			m.gone(id)
		}
	}
}

// closeAndReopen is a clean restart: Close must succeed on a working fs,
// and then everything it was given is on disk, so it survives a crash.
func (m *crashModel) closeAndReopen() {
	m.step("close")
	err := m.f.Close()
	m.account(m.f)
	if m.fs.isDead() {
		m.crash()
		return
	}
	if err != nil {
		m.fatalf("Close on a working fs: %v", err)
	}
	m.settleForgotten()
	m.written() // Close fsyncs under every policy
	if m.rng.IntN(2) == 0 {
		m.step("crash after a clean Close")
		m.fs = m.crashFS(tornNone)
	}
	m.restart()
}

// crash crashes the machine now, or takes what the dead fs left, and
// restarts.
func (m *crashModel) crash() {
	m.crashes++
	var next *crashFS
	if !m.fs.isDead() && m.rng.IntN(4) == 0 {
		// Only the process dies: what it wrote is still there.
		m.step("process crash")
		next = m.fs.processCrash()
		m.written()
	} else {
		mode := tornMode(m.rng.IntN(3))
		m.step("crash (%v)", mode)
		next = m.crashFS(mode)
		m.unsynced()
	}
	_ = m.f.Close() // the old process's goroutines; its fs is dead
	m.account(m.f)
	m.fs = next
	m.restart()
}

// crashFS crashes m.fs and returns what the reboot finds.
func (m *crashModel) crashFS(mode tornMode) *crashFS {
	m.torn = max(m.torn, mode)
	return m.fs.Crash(mode, m.rng)
}
