package persistence

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/stompbox/stompbox/broker"
	jt "github.com/stompbox/stompbox/persistence/journaltest"
)

// faultScenario is a run of the journal, failed in turn at each of its
// file system operations.
type faultScenario struct {
	name string
	cfg  Config
	// prep builds the journal before the faults (it opens and closes it).
	prep func(e *faultEnv)
	// run is the part whose every step fails in turn: it opens, works and
	// closes.
	run func(e *faultEnv)
	// covers are operations run must do without faults, so that the
	// scenario keeps testing what it is named after.
	covers []opKind
}

var faultScenarios = []faultScenario{
	{
		name: "append", cfg: Config{SegmentSize: 64 << 10},
		run: func(e *faultEnv) {
			if !e.open() {
				return
			}
			d := jt.DurableCreate(broker.DurableSpec{User: "u", ClientID: "c", Name: "d", Topic: "t"})
			e.append(e.message("/queue/a", 10))
			e.append(d, e.message(d.Queue, 20), e.message("/queue/a", 30))
			e.forget(e.oldest(1)...)
			e.append(e.message("/queue/b", 40))
			e.removeOldest(1)
			e.append(e.message("/queue/a", 50))
			e.close()
		},
		covers: []opKind{opCreate, opAllocate, opWrite, opDatasync, opSyncDir, opTruncate, opClose},
	},
	{
		name: "rotation", cfg: Config{SegmentSize: MinSegmentSize, CompactBelow: -1},
		run: func(e *faultEnv) {
			if !e.open() {
				return
			}
			for i := range 6 {
				e.append(e.message("/queue/a", 60+20*i)) // about one record per segment
			}
			e.append(e.message("/queue/b", 400)) // larger than a segment
			e.forget(e.oldest(2)...)
			e.append(e.message("/queue/a", 10))
			if err := e.f.submitInternal(&request{seal: true}); err != nil {
				e.errs = append(e.errs, err)
			}
			e.append(e.message("/queue/a", 10))
			e.close()
		},
		covers: []opKind{opCreate, opAllocate, opWrite, opDatasync, opSyncDir, opTruncate, opClose},
	},
	{
		name: "compaction", cfg: Config{SegmentSize: 512, CompactBelow: 0.5},
		prep: func(e *faultEnv) {
			e.open()
			for i := range 12 {
				e.append(e.message("/queue/a", 40+10*i))
			}
			e.removeOldest(3) // a dead segment or two
			for range 2 {     // and sparse ones
				ids := e.oldest(4)
				e.removeOldest(1)
				e.forget(ids[2:]...)
			}
			e.close()
		},
		run: func(e *faultEnv) {
			if !e.open() {
				return
			}
			e.f.compactSync()
			e.append(e.message("/queue/a", 30))
			e.removeOldest(2)
			e.f.compactSync()
			e.replay()
			e.close()
		},
		covers: []opKind{opOpen, opRead, opRemove, opSyncDir, opWrite, opDatasync},
	},
	{
		name: "recovery", cfg: Config{SegmentSize: 512, CompactBelow: -1},
		prep: func(e *faultEnv) {
			e.open()
			for i := range 8 {
				e.append(e.message("/queue/a", 50+10*i))
			}
			e.removeOldest(2)
			e.close()
			// A torn write at the end of the newest segment, as a crash
			// leaves it: recovery truncates it.
			e.open()
			e.append(e.message("/queue/a", 70))
			_ = e.f.Close()
			ids, _ := segmentIDs(e.ffs.inner, e.dir)
			last := e.f.segPath(ids[len(ids)-1])
			fh, err := e.ffs.inner.OpenFile(last)
			if err != nil {
				e.t.Fatal(err)
			}
			size, _ := fh.Size()
			_, _ = fh.WriteAt([]byte{200, 0, 0, 0, 1, 2, 3, 4, 1, 9, 9}, size)
			_ = fh.Datasync()
			_ = fh.Close()
		},
		run: func(e *faultEnv) {
			if !e.open() {
				return
			}
			e.replay()
			e.append(e.message("/queue/a", 10))
			e.close()
		},
		covers: []opKind{opReadDir, opOpen, opRead, opTruncate, opDatasync, opCreate},
	},
}

// faultErrors are the failures injected at each step: EIO anywhere,
// ENOSPC where the disk can be full, and a short write.
var faultErrors = []struct {
	name  string
	err   error
	short bool
	kinds []opKind // nil: every kind
}{
	{"EIO", syscall.EIO, false, nil},
	{"ENOSPC", syscall.ENOSPC, false, []opKind{opCreate, opAllocate, opWrite, opDatasync, opTruncate}},
	{"short-write", syscall.ENOSPC, true, []opKind{opWrite}},
}

// TestFaultAtEveryStep runs each scenario once to record its file system
// operations, then once per operation and error with that operation
// failing, and checks the journal's contract:
//
//   - the failure is loud: an error returned (wrapping the cause) or, for
//     compaction, logged at error level;
//   - a failed segment write, fsync, truncation or rotation is terminal
//     (Failed, then every Append and barrier returns it, and Close does
//     too); a failed compaction step keeps the journal working;
//   - a failure during recovery fails Open, with the cause;
//   - after a restart, of the process or of the machine (only what was
//     fsynced), every acknowledged message is there and no acknowledged
//     removal is undone.
//
// ENOSPC is only held to the last two and to being reported: another
// change turns it into flow control rather than a failure.
func TestFaultAtEveryStep(t *testing.T) {
	for _, sc := range faultScenarios {
		t.Run(sc.name, func(t *testing.T) {
			trace := traceScenario(t, sc, false)
			t.Logf("%d file system operations", len(trace))
			for _, fe := range faultErrors {
				fired := 0
				for _, op := range trace {
					if fe.kinds != nil && !slices.Contains(fe.kinds, op.kind) {
						continue
					}
					rule := &faultRule{kind: op.kind, path: op.path, nth: op.nth, err: fe.err, short: fe.short}
					if runFault(t, sc, rule, false) {
						fired++
					}
				}
				t.Logf("%s: fired at %d steps", fe.name, fired)
				if fired == 0 {
					t.Errorf("%s: no fault fired", fe.name)
				}
			}
		})
	}
}

// traceScenario runs sc without faults and returns the operations of its
// run part.
func traceScenario(t *testing.T, sc faultScenario, onDisk bool) []faultOp {
	var e *faultEnv
	if onDisk {
		e = newFaultEnv(t, osFS{}, t.TempDir(), sc.cfg)
	} else {
		e = newFaultEnv(t, newCrashFS(), "/j", sc.cfg)
	}
	if sc.prep != nil {
		sc.prep(e)
	}
	e.ffs.startTrace()
	sc.run(e)
	trace := e.ffs.stopTrace()
	if len(e.errs) > 0 {
		t.Fatalf("scenario %s fails without a fault: %v", sc.name, e.errs)
	}
	for _, k := range sc.covers {
		if !slices.ContainsFunc(trace, func(op faultOp) bool { return op.kind == k }) {
			t.Errorf("scenario %s does no %v", sc.name, k)
		}
	}
	return trace
}

// TestFaultAtEveryStepOnDisk is TestFaultAtEveryStep for the append
// scenario on the real file system (osFS wrapped): a restart there keeps
// the page cache, as after the crash of a process.
func TestFaultAtEveryStepOnDisk(t *testing.T) {
	sc := faultScenarios[0]
	trace := traceScenario(t, sc, true)
	for _, fe := range []struct {
		err   error
		short bool
	}{{syscall.EIO, false}, {syscall.ENOSPC, true}} {
		fired := 0
		for _, op := range trace {
			if fe.short && op.kind != opWrite {
				continue
			}
			if runFault(t, sc, &faultRule{kind: op.kind, path: op.path, nth: op.nth, err: fe.err, short: fe.short}, true) {
				fired++
			}
		}
		if fired == 0 {
			t.Errorf("%v (short %v): no fault fired", fe.err, fe.short)
		}
	}
}

// runFault runs sc with rule armed and checks the outcome, on a crashFS
// or on disk; it reports whether the rule fired.
func runFault(t *testing.T, sc faultScenario, rule *faultRule, onDisk bool) bool {
	t.Helper()
	var base fileSystem = newCrashFS()
	dir := "/j"
	if onDisk {
		base, dir = osFS{}, t.TempDir()
	}
	e := newFaultEnv(t, base, dir, sc.cfg)
	if sc.prep != nil {
		sc.prep(e)
	}
	e.ffs.arm(rule)
	sc.run(e)
	phase := e.ffs.fired()
	if phase == "" {
		return false // the run took another path (the compactor's timing)
	}
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf("fault %v in phase %s: %s\njournal log:\n%s", rule, phase, fmt.Sprintf(format, args...), e.logs.String())
	}
	checkLoud(e, rule, fail)
	if rule.err == syscall.EIO {
		checkTerminal(e, rule, phase, fail)
	}
	if errors.Is(rule.err, syscall.ENOSPC) {
		checkFlowControl(e, rule, phase, fail)
	}
	if c, ok := base.(*crashFS); ok {
		// A restart of the process (the page cache, with whatever a
		// failed or short write left in it, is still there), then of the
		// machine (only what was fsynced).
		checkRestart(e, c.processRestart(), fail)
		base = c.Crash(tornNone, rand.New(rand.NewPCG(1, 1)))
	}
	checkRestart(e, base, fail)
	return true
}

// checkLoud: the injected error was returned or logged at error level.
// ENOSPC may also be met with flow control (a full journal) instead of a
// failure: then any error returned or warning logged will do.
func checkLoud(e *faultEnv, rule *faultRule, fail func(string, ...any)) {
	// Running out of space is flow control (ErrJournalFull, a warning),
	// or terminal where a fsync failed: either way it names the cause.
	enospc := errors.Is(rule.err, syscall.ENOSPC)
	for _, err := range e.errs {
		if errors.Is(err, rule.err) {
			return
		}
	}
	for _, line := range strings.Split(e.logs.String(), "\n") {
		if strings.Contains(line, rule.err.Error()) &&
			(strings.Contains(line, "level=ERROR") || enospc && strings.Contains(line, "level=WARN")) {
			return
		}
	}
	fail("the failure was neither returned nor logged as an error (returned: %v)", e.errs)
}

// checkTerminal holds EIO to the failure model: where it happened decides
// whether the journal is dead.
func checkTerminal(e *faultEnv, rule *faultRule, phase string, fail func(string, ...any)) {
	switch {
	case phase == "open" && e.f == nil:
		err := e.errs[0]
		if !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), e.dir) {
			fail("Open failed with %v: want an error naming the journal's files, wrapping EIO", err)
		}
	case phase == "run" && slices.Contains([]opKind{opCreate, opAllocate, opWrite, opDatasync, opTruncate, opClose}, rule.kind):
		// Only the flusher writes, truncates and creates in a running
		// journal: a segment write, fsync or rotation.
		failed := e.f.Failed()
		if !errors.Is(failed, broker.ErrJournalFailed) || !errors.Is(failed, syscall.EIO) {
			fail("Failed() = %v, want EIO wrapping broker.ErrJournalFailed", failed)
		}
	case phase == "run" && slices.Contains([]opKind{opRemove, opRead, opOpen}, rule.kind):
		// Compaction and Replay read and delete; their failures are
		// reported, the journal keeps working.
		if failed := e.f.Failed(); failed != nil {
			fail("a %v failure killed the journal: %v", rule.kind, failed)
		}
	}
}

// checkFlowControl holds running out of space to the full-disk model:
// creating, pre-allocating or writing a segment without space refuses new
// messages (ErrJournalFull), it never kills a running journal (a failed
// write is zeroed and not counted). A failed fsync stays terminal.
func checkFlowControl(e *faultEnv, rule *faultRule, phase string, fail func(string, ...any)) {
	if phase != "run" || !slices.Contains([]opKind{opCreate, opAllocate, opWrite}, rule.kind) {
		return
	}
	if failed := e.f.Failed(); failed != nil {
		fail("running out of space at %v killed the journal: %v", rule.kind, failed)
	}
	for _, err := range e.errs {
		if errors.Is(err, broker.ErrJournalFailed) {
			fail("an Append got %v, want ErrJournalFull (flow control)", err)
		}
	}
}

// checkRestart opens the journal on fsys without faults and checks what
// it replays against what was acknowledged.
func checkRestart(e *faultEnv, fsys fileSystem, fail func(string, ...any)) {
	cfg := e.cfg
	cfg.Logger = testLogger(e.t, e.logs)
	f, err := openWith(e.dir, cfg, fsys)
	if err != nil {
		fail("restart: Open: %v", err)
		return
	}
	defer f.Close()
	seen := map[string]bool{}
	if err := f.Replay(func(r broker.JournalRecord) error {
		seen[r.MessageID] = true
		switch {
		case e.removed[r.MessageID]:
			fail("restart: %s came back; its removal was acknowledged", r.MessageID)
		case r.Op == broker.OpEnqueue && e.acked[r.MessageID].Op != 0:
			if d := jt.Diff(r, e.acked[r.MessageID]); d != "" {
				fail("restart: %s: %s", r.MessageID, d)
			}
		}
		return nil
	}); err != nil {
		fail("restart: Replay: %v", err)
		return
	}
	for id := range e.acked {
		if !seen[id] {
			fail("restart: acknowledged %s lost", id)
		}
	}
}
