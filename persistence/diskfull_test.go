package persistence

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stompbox/stompbox/broker"
	jt "github.com/stompbox/stompbox/persistence/journaltest"
)

// quotaFS is a file system of a fixed capacity: a file occupies what it
// was pre-allocated or written up to, and space is needed to allocate or
// to write past that; a write that runs out writes what fits and fails
// with ENOSPC, as pwrite does. Removing or truncating a file frees its
// space. Hooks fail the next Create, Allocate or write with ENOSPC, for
// file systems that refuse even pre-allocated space (copy-on-write, thin
// provisioning). The files themselves are real.
type quotaFS struct {
	osFS
	mu       sync.Mutex
	capacity int64
	sizes    map[string]int64 // bytes each file occupies
	// Faults, each consumed by the call it fails.
	createErr, allocErr int // the next n Creates or Allocates fail
	writeErr            int // the next n WriteAts fail after writing half
	writeNone           int // the next n WriteAts fail writing nothing
}

func newQuotaFS(capacity int64) *quotaFS {
	return &quotaFS{capacity: capacity, sizes: map[string]int64{}}
}

// track counts the segment files already in dir.
func (q *quotaFS) track(t *testing.T, dir string) {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, name := range names {
		st, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		q.sizes[name] = st.Size()
	}
}

func (q *quotaFS) usedLocked() int64 {
	var n int64
	for _, s := range q.sizes {
		n += s
	}
	return n
}

// fill sets the capacity to what is used now (plus extra): the disk is
// full.
func (q *quotaFS) fill(extra int64) {
	q.mu.Lock()
	q.capacity = q.usedLocked() + extra
	q.mu.Unlock()
}

func (q *quotaFS) grow(capacity int64) {
	q.mu.Lock()
	q.capacity = capacity
	q.mu.Unlock()
}

func (q *quotaFS) arm(create, alloc, write int) {
	q.mu.Lock()
	q.createErr, q.allocErr, q.writeErr = create, alloc, write
	q.mu.Unlock()
}

func (q *quotaFS) Create(path string) (segmentFile, error) {
	q.mu.Lock()
	if q.createErr > 0 {
		q.createErr--
		q.mu.Unlock()
		return nil, &fs.PathError{Op: "open", Path: path, Err: syscall.ENOSPC}
	}
	q.mu.Unlock()
	sf, err := q.osFS.Create(path)
	if err != nil {
		return nil, err
	}
	q.mu.Lock()
	q.sizes[path] = 0
	q.mu.Unlock()
	return &quotaFile{sf, q, path}, nil
}

func (q *quotaFS) OpenFile(path string) (segmentFile, error) {
	sf, err := q.osFS.OpenFile(path)
	if err != nil {
		return nil, err
	}
	size, err := sf.Size()
	if err != nil {
		sf.Close()
		return nil, err
	}
	q.mu.Lock()
	q.sizes[path] = size
	q.mu.Unlock()
	return &quotaFile{sf, q, path}, nil
}

func (q *quotaFS) Remove(path string) error {
	err := q.osFS.Remove(path)
	if err == nil {
		q.mu.Lock()
		delete(q.sizes, path)
		q.mu.Unlock()
	}
	return err
}

func (q *quotaFS) FreeBytes(string) (uint64, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return uint64(max(0, q.capacity-q.usedLocked())), nil
}

type quotaFile struct {
	segmentFile
	q    *quotaFS
	path string
}

func (f *quotaFile) Allocate(size int64) error {
	q := f.q
	q.mu.Lock()
	if q.allocErr > 0 {
		q.allocErr--
		q.mu.Unlock()
		return syscall.ENOSPC
	}
	need := size - q.sizes[f.path]
	if need > q.capacity-q.usedLocked() {
		q.mu.Unlock()
		return syscall.ENOSPC
	}
	q.sizes[f.path] = max(size, q.sizes[f.path])
	q.mu.Unlock()
	return f.segmentFile.Allocate(size)
}

func (f *quotaFile) WriteAt(b []byte, off int64) (int, error) {
	q := f.q
	q.mu.Lock()
	n := len(b)
	var err error
	switch {
	case q.writeNone > 0:
		q.writeNone--
		n, err = 0, syscall.ENOSPC
	case q.writeErr > 0:
		q.writeErr--
		n, err = len(b)/2, syscall.ENOSPC
	}
	have := q.sizes[f.path]
	if end := off + int64(n); end > have {
		free := q.capacity - q.usedLocked()
		if end-have > free {
			n, err = int(max(0, have+free-off)), syscall.ENOSPC
		}
		q.sizes[f.path] = max(have, off+int64(n))
	}
	q.mu.Unlock()
	if n > 0 {
		if _, werr := f.segmentFile.WriteAt(b[:n], off); werr != nil {
			return 0, werr
		}
	}
	if err != nil {
		return n, &fs.PathError{Op: "write", Path: f.path, Err: err}
	}
	return n, nil
}

func (f *quotaFile) Truncate(size int64) error {
	if err := f.segmentFile.Truncate(size); err != nil {
		return err
	}
	f.q.mu.Lock()
	f.q.sizes[f.path] = min(size, f.q.sizes[f.path])
	f.q.mu.Unlock()
	return nil
}

// medium is a message of about 400 bytes, as a journal record.
func medium(i int) broker.JournalRecord {
	m := jt.Message(i)
	return jt.Enqueue("/queue/c", broker.RecoveredMessage(m.ID, m.Destination, m.Headers[:2], make([]byte, 300), true, 0))
}

// fullConfig has small segments and no min_free (quotaFS decides).
func fullConfig(t *testing.T, logs *syncBuffer) Config {
	return Config{SegmentSize: 4096, MinFree: -1, Logger: testLogger(t, logs)}
}

func openOn(t *testing.T, dir string, cfg Config, fsys fileSystem) *File {
	t.Helper()
	f, err := openWith(dir, cfg, fsys)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// wantFull fails unless err is flow control: ErrJournalFull, not a
// failed journal.
func wantFull(t *testing.T, f *File, what string, err error) {
	t.Helper()
	if !errors.Is(err, broker.ErrJournalFull) || errors.Is(err, broker.ErrJournalFailed) {
		t.Fatalf("%s: %v, want an error wrapping broker.ErrJournalFull and not ErrJournalFailed", what, err)
	}
	if ferr := f.Failed(); ferr != nil {
		t.Fatalf("%s: the journal failed: %v", what, ferr)
	}
}

// fillUp appends messages from i on until the journal refuses one for
// lack of space, and returns the ones it took.
func fillUp(t *testing.T, f *File, i int) []broker.JournalRecord {
	t.Helper()
	var took []broker.JournalRecord
	for n := 0; n < 1000; n++ {
		r := medium(i + n)
		err := f.Append(context.Background(), r)
		if err != nil {
			wantFull(t, f, fmt.Sprintf("Append %d on a full disk", n), err)
			return took
		}
		took = append(took, r)
	}
	t.Fatalf("1000 messages taken on a full disk")
	return nil
}

// appendWhenRoom retries r until it is taken (the spare is retried every
// spareRetryInterval), failing after 5 seconds.
func appendWhenRoom(t *testing.T, f *File, r broker.JournalRecord) {
	t.Helper()
	var err error
	for range 500 {
		if err = f.Append(context.Background(), r); err == nil {
			return
		}
		wantFull(t, f, "Append while space frees", err)
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("Append never resumed: %v", err)
}

// reopened closes f and replays dir with the real file system.
func reopened(t *testing.T, f *File, dir string) []broker.JournalRecord {
	t.Helper()
	if err := f.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	g := open(t, dir, Config{MinFree: -1})
	if n := g.CorruptRecords(); n != 0 {
		t.Errorf("%d corrupt records after the disk was full", n)
	}
	return replay(t, g)
}

// The disk fills up (no room beyond the active segment and the spare):
// messages are refused with ErrJournalFull, never a failed journal; the
// consumer's acknowledgements are still journaled (the reserve), which
// makes the old segment dead; compaction deletes it, and new messages are
// taken again without a restart. The gauge says why in between. Nothing
// acknowledged is lost.
func TestDiskFullIsFlowControl(t *testing.T) {
	dir := t.TempDir()
	q := newQuotaFS(1 << 30)
	var logs syncBuffer
	f := openOn(t, dir, fullConfig(t, &logs), q)
	q.fill(0)
	took := fillUp(t, f, 0)
	if len(took) < 10 {
		t.Fatalf("only %d messages before the disk was full", len(took))
	}
	if f.fullMask.Load() != 1<<fullNoSpace {
		t.Errorf("full reasons %b, want no_space", f.fullMask.Load())
	}
	for _, r := range took {
		if err := f.Append(context.Background(), jt.Remove(r)); err != nil {
			t.Fatalf("removal on a full disk: %v", err)
		}
	}
	f.compactSync()
	if f.Stats().SegmentsDeleted == 0 {
		t.Fatalf("no segment deleted after every message was acknowledged: %+v", f.Stats())
	}
	last := medium(5000)
	appendWhenRoom(t, f, last)
	if f.fullMask.Load() != 0 {
		t.Errorf("full reasons %b after an append was taken, want none", f.fullMask.Load())
	}
	if st := f.Stats(); st.DroppedRecords != 0 {
		t.Errorf("%d removals dropped", st.DroppedRecords)
	}
	for _, want := range []string{"journal full", "reason=no_space", "accepted again"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
	jt.Expect(t, reopened(t, f, dir), []broker.JournalRecord{last})
}

// A write that runs out of space inside the active segment (a file system
// that does not honour the pre-allocation) after writing half its bytes:
// the Append is refused with ErrJournalFull, the half is zeroed, and the
// journal goes on at the same offset; a removal whose write fails once is
// written again on its own; one that fails twice waits for room and is
// written on a later round (never refused, never failed).
// Only when the half-written bytes cannot be zeroed is the journal failed.
// Recovery finds exactly the records that were acknowledged.
func TestDiskFullWriteFault(t *testing.T) {
	for _, policy := range []SyncPolicy{SyncAlways, SyncNever} {
		t.Run(policy.String(), func(t *testing.T) {
			dir := t.TempDir()
			q := newQuotaFS(1 << 30)
			cfg := fullConfig(t, nil)
			cfg.Sync = policy
			f := openOn(t, dir, cfg, q)
			ctx := context.Background()
			mustAppend(t, f, medium(1), medium(2))

			q.arm(0, 0, 1)
			wantFull(t, f, "Append whose write fails", f.Append(ctx, medium(3)))
			mustAppend(t, f, medium(4)) // the same offset, now clean

			q.arm(0, 0, 1)
			if err := f.Append(ctx, jt.Remove(medium(1))); err != nil {
				t.Fatalf("removal whose first write fails: %v", err)
			}
			q.mu.Lock()
			q.writeNone = 2
			q.mu.Unlock()
			// A removal whose writes fail twice waits for room (it is
			// never refused: that would bring its message back) and is
			// written on a later round.
			if err := f.Append(ctx, jt.Remove(medium(2))); err != nil {
				t.Fatalf("removal whose writes fail twice: %v, want it written once there is room", err)
			}
			mustAppend(t, f, medium(5))

			// Zeroing the half-written bytes fails too: what is on disk
			// is no longer known, and that is terminal.
			q.arm(0, 0, 2)
			err := f.Append(ctx, medium(6))
			if !errors.Is(err, broker.ErrJournalFailed) || !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("Append whose partial write cannot be undone: %v, want ErrJournalFailed", err)
			}
			if err := f.Close(); !errors.Is(err, broker.ErrJournalFailed) {
				t.Fatalf("Close after the failure: %v", err)
			}
			g := open(t, dir, Config{MinFree: -1})
			jt.Expect(t, replay(t, g), []broker.JournalRecord{medium(4), medium(5)})
		})
	}
}

// ENOSPC at each step of making the next segment ahead of time (create,
// allocate) and at rotation: the spare cannot be made, so growing appends
// fill the active segment only up to its reserve and are then refused;
// removals still land in the reserve; once the file system has room again,
// the spare is made and messages are taken again.
func TestDiskFullAtRotation(t *testing.T) {
	for _, step := range []string{"create", "allocate"} {
		t.Run(step, func(t *testing.T) {
			dir := t.TempDir()
			q := newQuotaFS(1 << 30)
			f := openOn(t, dir, fullConfig(t, nil), q)
			if step == "create" {
				q.arm(1<<20, 0, 0)
			} else {
				q.arm(0, 1<<20, 0)
			}
			took := fillUp(t, f, 0)
			// The active segment and the spare made at Open, less the reserve.
			if n := len(took); n < 8 || n > 16 {
				t.Errorf("%d messages taken, want about a segment and a half", n)
			}
			for _, r := range took {
				if err := f.Append(context.Background(), jt.Remove(r)); err != nil {
					t.Fatalf("removal in the reserve: %v", err)
				}
			}
			q.arm(0, 0, 0)
			last := medium(5000)
			appendWhenRoom(t, f, last)
			jt.Expect(t, reopened(t, f, dir), []broker.JournalRecord{last})
		})
	}
}

// Open works on a full disk. A journal closed normally (its spare given
// back) restarts on a file system with no byte free: no new segment can
// be made, so it appends where the newest segment ends; messages are
// refused until space frees, then taken. A journal closed while the disk
// was full keeps its pre-allocated space, so after a restart on the same
// full disk its removals are journaled at once.
func TestOpenOnFullDisk(t *testing.T) {
	ctx := context.Background()
	t.Run("closed normally", func(t *testing.T) {
		dir := t.TempDir()
		f := open(t, dir, fullConfig(t, nil))
		mustAppend(t, f, medium(1), medium(2))
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		q := newQuotaFS(0)
		q.track(t, dir)
		q.fill(0)
		q.arm(1, 0, 0) // and the first create fails too
		f = openOn(t, dir, fullConfig(t, nil), q)
		wantFull(t, f, "Append after Open on a full disk", f.Append(ctx, medium(3)))
		q.grow(1 << 30)
		appendWhenRoom(t, f, medium(4))
		mustAppend(t, f, jt.Remove(medium(1)))
		jt.Expect(t, reopened(t, f, dir), []broker.JournalRecord{medium(2), medium(4)})
	})
	t.Run("closed full", func(t *testing.T) {
		dir := t.TempDir()
		q := newQuotaFS(1 << 30)
		f := openOn(t, dir, fullConfig(t, nil), q)
		q.fill(0)
		took := fillUp(t, f, 0)
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		q = newQuotaFS(0)
		q.track(t, dir)
		q.fill(0)
		f = openOn(t, dir, fullConfig(t, nil), q)
		jt.Expect(t, replay(t, f), took)
		wantFull(t, f, "Append after a restart on a full disk", f.Append(ctx, medium(5000)))
		for _, r := range took[:4] {
			if err := f.Append(ctx, jt.Remove(r)); err != nil {
				t.Fatalf("removal after a restart on a full disk: %v", err)
			}
		}
		jt.Expect(t, reopened(t, f, dir), took[4:])
	})
}

// Compaction keeps working on a full disk: a small disk (eight segments)
// takes the 3,000 send/ack pairs with 10 stuck messages of the pinning
// test without a restart; messages may wait for compaction, never more
// than it takes to catch up.
func TestDiskFullCompaction(t *testing.T) {
	dir := t.TempDir()
	q := newQuotaFS(8 * 4096)
	cfg := fullConfig(t, nil)
	cfg.Sync = SyncNever
	f := openOn(t, dir, cfg, q)
	var stuck []broker.JournalRecord
	for i := range 10 {
		r := jt.Enqueue("/queue/DLQ.c", small(i))
		stuck = append(stuck, r)
		mustAppend(t, f, r)
	}
	for i := range 3000 {
		m := jt.Enqueue("/queue/c", small(1000+i))
		if err := f.Append(context.Background(), m); err != nil {
			wantFull(t, f, "Append on a small disk", err)
			f.compactSync()
			appendWhenRoom(t, f, m)
		}
		if err := f.Append(context.Background(), jt.Remove(m)); err != nil {
			t.Fatalf("removal %d: %v", i, err)
		}
	}
	if st := f.Stats(); st.DroppedRecords != 0 {
		t.Errorf("%d removals dropped", st.DroppedRecords)
	}
	jt.Expect(t, reopened(t, f, dir), stuck)
}

// journal.min_free: without a budget, once the file system has less free
// space than MinFree, messages are refused (ErrJournalFull, reason
// min_free) while removals are taken; free space is read at most every
// 100 ms, not per Append; when space frees, messages are taken again.
func TestMinFree(t *testing.T) {
	dir := t.TempDir()
	q := &countingFS{quotaFS: newQuotaFS(1 << 30)}
	cfg := fullConfig(t, nil)
	cfg.MinFree = 1 << 20
	f := openOn(t, dir, cfg, q)
	ctx := context.Background()
	mustAppend(t, f, medium(1))
	q.fill(1 << 19)
	time.Sleep(freeCheckInterval) // the next Append reads the free space again
	err := f.Append(ctx, medium(2))
	wantFull(t, f, "Append under min_free", err)
	if !strings.Contains(err.Error(), "min_free") || f.fullMask.Load() != 1<<fullMinFree {
		t.Errorf("refusal %q, reasons %b: want min_free", err, f.fullMask.Load())
	}
	mustAppend(t, f, jt.Remove(medium(1)))

	start := time.Now()
	before := q.calls()
	for range 2000 {
		wantFull(t, f, "Append under min_free", f.Append(ctx, medium(3)))
	}
	if n, most := q.calls()-before, int(time.Since(start)/freeCheckInterval)+2; n > most {
		t.Errorf("%d free-space reads for 2000 Appends in %v, want at most %d", n, time.Since(start), most)
	}

	q.grow(1 << 30)
	appendWhenRoom(t, f, medium(4))
	if f.fullMask.Load() != 0 {
		t.Errorf("reasons %b after space freed", f.fullMask.Load())
	}
	jt.Expect(t, reopened(t, f, dir), []broker.JournalRecord{medium(4)})
}

// countingFS counts FreeBytes calls.
type countingFS struct {
	*quotaFS
	mu sync.Mutex
	n  int
}

func (c *countingFS) FreeBytes(dir string) (uint64, error) {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	return c.quotaFS.FreeBytes(dir)
}

func (c *countingFS) calls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// A compaction rewrite whose copies find no room (the disk is full, the
// active segment past its reserve, no spare) is refused like a message:
// the segment is not marked unrewritable, and the same rewrite succeeds
// once space frees.
func TestDiskFullRewriteRetried(t *testing.T) {
	dir := t.TempDir()
	q := newQuotaFS(1 << 30)
	f := openOn(t, dir, fullConfig(t, nil), q)
	var live []broker.JournalRecord
	for i := range 7 {
		live = append(live, medium(i))
		mustAppend(t, f, medium(i))
	}
	sealNow(t, f) // segment 1: about 2.8 KB live, above CompactBelow
	q.fill(0)
	// Messages fill segment 2 and the spare, which cannot be replaced, up
	// to its reserve: the copies do not fit in what is left.
	took := fillUp(t, f, 100)
	if len(took) == 0 {
		t.Fatal("nothing taken before the reserve")
	}
	done, err := f.rewrite(1)
	wantFull(t, f, "rewrite on a full disk", err)
	f.smu.Lock()
	noRewrite := f.segs[1].noRewrite
	f.smu.Unlock()
	if done || noRewrite {
		t.Fatalf("rewrite refused for room: done %v, marked unrewritable %v", done, noRewrite)
	}
	q.grow(1 << 30)
	for i := 0; ; i++ {
		if done, err = f.rewrite(1); err == nil || i == 100 {
			break
		}
		time.Sleep(10 * time.Millisecond) // the spare is tried again every 100 ms
	}
	if !done || err != nil {
		t.Fatalf("rewrite after space freed: done %v, %v", done, err)
	}
	jt.Expect(t, reopened(t, f, dir), append(live, took...))
}

// crashImage copies the segment files of a running journal, as a crash
// would leave them (the spare included).
func crashImage(t *testing.T, from string) string {
	t.Helper()
	to := t.TempDir()
	names, err := filepath.Glob(filepath.Join(from, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, filepath.Base(name)), data, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	return to
}

// After a crash the spare, a segment holding only its header, is the
// newest file: the next Open makes it the active segment instead of
// leaving it for compaction and creating another.
func TestOpenReusesSpareAfterCrash(t *testing.T) {
	dir := t.TempDir()
	f := open(t, dir, Config{SegmentSize: 4096, MinFree: -1})
	mustAppend(t, f, medium(1), medium(2))
	spare := f.lastID
	if err := f.submitInternal(&request{}); err != nil {
		t.Fatal(err)
	}
	crashed := crashImage(t, dir)
	if !exists(t, crashed, spare) {
		t.Fatalf("no spare segment %d in the crash image", spare)
	}
	g := open(t, crashed, Config{SegmentSize: 4096, MinFree: -1})
	if g.activeID != spare {
		t.Errorf("active segment %d after the crash, want the spare %d", g.activeID, spare)
	}
	jt.Expect(t, replay(t, g), []broker.JournalRecord{medium(1), medium(2)})
	mustAppend(t, g, medium(3))
	jt.Expect(t, reopened(t, g, crashed), []broker.JournalRecord{medium(1), medium(2), medium(3)})
}

// asyncOutcome is a broker.JournalDone that hands its outcome to a
// channel.
type asyncOutcome chan error

func (o asyncOutcome) JournalDone(err error) { o <- err }

// TestDiskFullRefusesAsyncAppends: an AppendAsync the flusher refuses for
// lack of space is told so (ErrJournalFull), as an Append is; it is never
// told nil for records that were not written.
func TestDiskFullRefusesAsyncAppends(t *testing.T) {
	dir := t.TempDir()
	q := newQuotaFS(1 << 30)
	var logs syncBuffer
	f := openOn(t, dir, fullConfig(t, &logs), q)
	q.fill(0)
	fillUp(t, f, 0)
	r := medium(9000)
	out := make(asyncOutcome, 1)
	err := f.AppendAsync(out, r)
	if err == nil {
		select {
		case err = <-out:
		case <-time.After(5 * time.Second):
			t.Fatal("AppendAsync never answered")
		}
	}
	wantFull(t, f, "AppendAsync on a full disk", err)
	f.Close()
	for _, got := range replay(t, open(t, dir, Config{Logger: testLogger(t, nil)})) {
		if got.MessageID == r.MessageID {
			t.Fatal("the refused message was written")
		}
	}
}
