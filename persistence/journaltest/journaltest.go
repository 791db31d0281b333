// Package journaltest is the conformance suite for broker.Journal: what
// the broker relies on when it journals persistent messages and replays
// them at start. Every implementation runs it from its own tests:
//
//	func TestConformance(t *testing.T) {
//		journaltest.Run(t, func(t *testing.T, dir string) broker.Journal {
//			j, err := persistence.Open(dir, persistence.Config{})
//			if err != nil {
//				t.Fatal(err)
//			}
//			return j
//		})
//	}
//
// Run opens journals in fresh directories, several times over the same
// directory to check what survives Close, and closes every journal it
// opens (open may register a Cleanup of its own only if Close may be
// called twice).
package journaltest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stompbox/stompbox/broker"
)

// Opener opens the journal kept in dir, creating it if dir is empty.
type Opener func(t *testing.T, dir string) broker.Journal

// Option changes what Run checks.
type Option func(*options)

type options struct {
	budget func(t *testing.T, dir string, maxBytes int64) broker.Journal
}

// Budget enables the disk budget checks for an implementation that has
// one: open returns a journal whose budget is maxBytes bytes.
func Budget(open func(t *testing.T, dir string, maxBytes int64) broker.Journal) Option {
	return func(o *options) { o.budget = open }
}

// Run runs the conformance suite as subtests of t.
func Run(t *testing.T, open Opener, opts ...Option) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	t.Run("Empty", func(t *testing.T) { testEmpty(t, open) })
	t.Run("EnqueueReplay", func(t *testing.T) { testEnqueueReplay(t, open) })
	t.Run("Remove", func(t *testing.T) { testRemove(t, open) })
	t.Run("ReEnqueueAfterRemove", func(t *testing.T) { testReEnqueue(t, open) })
	t.Run("AtomicMove", func(t *testing.T) { testAtomicMove(t, open) })
	t.Run("Durable", func(t *testing.T) { testDurable(t, open) })
	t.Run("Deliveries", func(t *testing.T) { testDeliveries(t, open) })
	t.Run("FanOut", func(t *testing.T) { testFanOut(t, open) })
	t.Run("Reopen", func(t *testing.T) { testReopen(t, open) })
	t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, open) })
	t.Run("AppendAfterClose", func(t *testing.T) { testAppendAfterClose(t, open) })
	if o.budget != nil {
		t.Run("Budget", func(t *testing.T) { testBudget(t, o.budget) })
	}
}

// session opens the journal in dir, runs fn with it and closes it,
// failing t if Close fails.
func session(t *testing.T, open Opener, dir string, fn func(j broker.Journal)) {
	t.Helper()
	j := open(t, dir)
	closed := false
	defer func() {
		if !closed {
			j.Close()
		}
	}()
	fn(j)
	closed = true
	if err := j.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// replayed reopens dir and returns what Replay gives.
func replayed(t *testing.T, open Opener, dir string) []broker.JournalRecord {
	t.Helper()
	var got []broker.JournalRecord
	session(t, open, dir, func(j broker.Journal) { got = replayAll(t, j) })
	return got
}

func replayAll(t *testing.T, j broker.Journal) []broker.JournalRecord {
	t.Helper()
	var got []broker.JournalRecord
	if err := j.Replay(func(r broker.JournalRecord) error {
		got = append(got, r)
		return nil
	}); err != nil {
		t.Fatalf("Replay: %v", err)
	}
	return got
}

func mustAppend(t *testing.T, j broker.Journal, recs ...broker.JournalRecord) {
	t.Helper()
	if err := j.Append(context.Background(), recs...); err != nil {
		t.Fatalf("Append: %v", err)
	}
}

func testEmpty(t *testing.T, open Opener) {
	dir := t.TempDir()
	session(t, open, dir, func(j broker.Journal) {
		if got := replayAll(t, j); len(got) != 0 {
			t.Fatalf("a new journal replays %d records", len(got))
		}
	})
	if got := replayed(t, open, dir); len(got) != 0 {
		t.Fatalf("a closed empty journal replays %d records", len(got))
	}
}

func testEnqueueReplay(t *testing.T, open Opener) {
	dir := t.TempDir()
	var want []broker.JournalRecord
	for i := range 40 {
		want = append(want, Enqueue(fmt.Sprintf("/queue/q%d", i%3), Message(i)))
	}
	session(t, open, dir, func(j broker.Journal) {
		for _, r := range want {
			mustAppend(t, j, r)
		}
	})
	Expect(t, replayed(t, open, dir), want)
}

func testRemove(t *testing.T, open Opener) {
	dir := t.TempDir()
	a, b, c := Enqueue("/queue/r", Message(1)), Enqueue("/queue/r", Message(2)), Enqueue("/queue/r", Message(3))
	other := Enqueue("/queue/other", Message(2)) // same message id, another queue
	session(t, open, dir, func(j broker.Journal) {
		mustAppend(t, j, a)
		mustAppend(t, j, b, other)
		mustAppend(t, j, c)
		mustAppend(t, j, Remove(b))
		mustAppend(t, j, Remove(Enqueue("/queue/r", Message(99)))) // never enqueued: harmless
	})
	Expect(t, replayed(t, open, dir), []broker.JournalRecord{a, other, c})
	session(t, open, dir, func(j broker.Journal) { mustAppend(t, j, Remove(a), Remove(c), Remove(other)) })
	Expect(t, replayed(t, open, dir), nil)
}

// testReEnqueue is a message that went back to its queue after its
// removal was journaled (a consumer that failed before it acked): it is
// live again, in its new place.
func testReEnqueue(t *testing.T, open Opener) {
	dir := t.TempDir()
	a, b := Enqueue("/queue/re", Message(1)), Enqueue("/queue/re", Message(2))
	session(t, open, dir, func(j broker.Journal) {
		mustAppend(t, j, a)
		mustAppend(t, j, b)
		mustAppend(t, j, Remove(a))
		mustAppend(t, j, a)
	})
	Expect(t, replayed(t, open, dir), []broker.JournalRecord{b, a})
}

// testAtomicMove is a dead-lettering: the removal and the DLQ's enqueue
// are one Append.
func testAtomicMove(t *testing.T, open Opener) {
	dir := t.TempDir()
	orig := Enqueue("/queue/work", Message(7))
	dead := Enqueue("/queue/DLQ.work", Message(8))
	session(t, open, dir, func(j broker.Journal) {
		mustAppend(t, j, orig)
		mustAppend(t, j, Remove(orig), dead)
	})
	Expect(t, replayed(t, open, dir), []broker.JournalRecord{dead})
}

func testDurable(t *testing.T, open Opener) {
	dir := t.TempDir()
	d1 := DurableCreate(broker.DurableSpec{User: "alice", ClientID: "c1", Name: "s1", Topic: "prices.*"})
	d2 := DurableCreate(broker.DurableSpec{User: "alice", ClientID: "c1", Name: "s2", Topic: "news.#"})
	// Another owner's durable subscription with the same client id and
	// name, and one without an owner (as older journals recorded them):
	// each is its own, and the owner (or its absence) comes back.
	other := DurableCreate(broker.DurableSpec{User: "bob", ClientID: "c1", Name: "s1", Topic: "prices.*"})
	unowned := DurableCreate(broker.DurableSpec{ClientID: "c1", Name: "s1", Topic: "prices.*", Unowned: true})
	m1 := Enqueue(d1.Queue, Message(1))
	m2 := Enqueue(d1.Queue, Message(2))
	session(t, open, dir, func(j broker.Journal) {
		mustAppend(t, j, d1)
		mustAppend(t, j, d2)
		mustAppend(t, j, other)
		mustAppend(t, j, unowned)
		mustAppend(t, j, m1)
		mustAppend(t, j, m2)
		mustAppend(t, j, Remove(m1))
		mustAppend(t, j, DurableDelete(d2))
		mustAppend(t, j, DurableDelete(other))
	})
	Expect(t, replayed(t, open, dir), []broker.JournalRecord{d1, unowned, m2})
	// Deleted and created again: the new one is live, the old one's
	// message is not.
	session(t, open, dir, func(j broker.Journal) {
		mustAppend(t, j, Remove(m2))
		mustAppend(t, j, DurableDelete(d1))
		mustAppend(t, j, d1)
	})
	Expect(t, replayed(t, open, dir), []broker.JournalRecord{unowned, d1})
}

// testDeliveries: the last delivery count journaled for a live message
// comes back as its enqueue's Deliveries; a remove ends it, and so does a
// new enqueue of the message; a count for a message not in its queue
// counts nothing.
func testDeliveries(t *testing.T, open Opener) {
	dir := t.TempDir()
	a, b, c := Enqueue("/queue/n", Message(1)), Enqueue("/queue/n", Message(2)), Enqueue("/queue/n", Message(3))
	session(t, open, dir, func(j broker.Journal) {
		mustAppend(t, j, a, b, c)
		mustAppend(t, j, Deliveries(a, 2))
		mustAppend(t, j, Deliveries(b, 1))
		mustAppend(t, j, Deliveries(a, 3))
		mustAppend(t, j, Deliveries(c, 4))
		mustAppend(t, j, Remove(c))
		mustAppend(t, j, Deliveries(Enqueue("/queue/other", Message(1)), 9))
	})
	counted := func(r broker.JournalRecord, n int) broker.JournalRecord { r.Deliveries = n; return r }
	Expect(t, replayed(t, open, dir), []broker.JournalRecord{counted(a, 3), counted(b, 1)})
	session(t, open, dir, func(j broker.Journal) {
		mustAppend(t, j, Remove(b), b) // back in its queue as a new message
		mustAppend(t, j, c)
	})
	Expect(t, replayed(t, open, dir), []broker.JournalRecord{counted(a, 3), b, c})
}

// testFanOut is a persistent topic message to several durable
// subscriptions: one Append of its enqueue to each of their queues (the
// same *Message), mixed with other records. Each queue gets it, each
// remove takes it from one queue only.
func testFanOut(t *testing.T, open Opener) {
	dir := t.TempDir()
	m, other := Message(3), Message(4)
	var fan []broker.JournalRecord
	for _, q := range []string{"/durable/u/c/a", "/durable/u/c/b", "/durable/u/c/c"} {
		fan = append(fan, Enqueue(q, m))
	}
	single := Enqueue("/queue/x", other)
	session(t, open, dir, func(j broker.Journal) {
		mustAppend(t, j, fan...)
		mustAppend(t, j, single, fan[0], fan[1], Enqueue("/queue/y", other))
		mustAppend(t, j, Remove(fan[1]))
	})
	Expect(t, replayed(t, open, dir), []broker.JournalRecord{fan[2], single, fan[0], Enqueue("/queue/y", other)})
}

func testReopen(t *testing.T, open Opener) {
	dir := t.TempDir()
	var live []broker.JournalRecord
	for round := range 4 {
		session(t, open, dir, func(j broker.Journal) {
			Expect(t, replayAll(t, j), live)
			for i := range 10 {
				r := Enqueue("/queue/reopen", Message(round*100+i))
				mustAppend(t, j, r)
				live = append(live, r)
			}
			// Remove the oldest three each time.
			for _, r := range live[:3] {
				mustAppend(t, j, Remove(r))
			}
			live = live[3:]
		})
	}
	Expect(t, replayed(t, open, dir), live)
}

func testConcurrent(t *testing.T, open Opener) {
	const writers, each = 64, 16
	dir := t.TempDir()
	want := make([][]broker.JournalRecord, writers)
	session(t, open, dir, func(j broker.Journal) {
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for i := range each {
					r := Enqueue(fmt.Sprintf("/queue/c%d", w%4), Message(w*1000+i))
					if err := j.Append(context.Background(), r); err != nil {
						t.Errorf("writer %d: Append: %v", w, err)
						return
					}
					if i%4 == 3 { // remove every fourth one again
						if err := j.Append(context.Background(), Remove(r)); err != nil {
							t.Errorf("writer %d: Append: %v", w, err)
							return
						}
						continue
					}
					want[w] = append(want[w], r)
				}
			})
		}
		wg.Wait()
	})
	if t.Failed() {
		return
	}
	// Each writer's records come back once each, in its order.
	got := replayed(t, open, dir)
	byWriter := make([][]broker.JournalRecord, writers)
	for _, r := range got {
		if r.Message == nil {
			t.Fatalf("replayed %v without a message", r.Op)
		}
		w := index(r.Message) / 1000
		if w < 0 || w >= writers {
			t.Fatalf("replayed unknown message %q", r.MessageID)
		}
		byWriter[w] = append(byWriter[w], r)
	}
	for w := range writers {
		Expect(t, byWriter[w], want[w])
	}
}

func testAppendAfterClose(t *testing.T, open Opener) {
	j := open(t, t.TempDir())
	mustAppend(t, j, Enqueue("/queue/x", Message(1)))
	if err := j.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := j.Append(context.Background(), Enqueue("/queue/x", Message(2))); err == nil {
		t.Fatal("Append after Close succeeded")
	}
}

// testBudget fills a journal with a small budget: an Append past it fails
// with ErrJournalFull and records nothing; removals are still taken, and
// once the messages are gone the journal takes appends again.
func testBudget(t *testing.T, openBudget func(t *testing.T, dir string, maxBytes int64) broker.Journal) {
	const budget = 64 << 10
	dir := t.TempDir()
	open := func(t *testing.T, dir string) broker.Journal { return openBudget(t, dir, budget) }
	var kept []broker.JournalRecord
	session(t, open, dir, func(j broker.Journal) {
		for i := range 2 * budget / 1024 {
			r := Enqueue("/queue/full", sized(i, 1024))
			err := j.Append(context.Background(), r)
			if err == nil {
				kept = append(kept, r)
				continue
			}
			if !errors.Is(err, broker.ErrJournalFull) {
				t.Fatalf("Append %d: %v, want an error wrapping broker.ErrJournalFull", i, err)
			}
			return
		}
		t.Fatalf("%d appends of 1 KiB fit a %d-byte budget", 2*budget/1024, budget)
	})
	if len(kept) < budget/1024/4 {
		t.Fatalf("only %d appends of 1 KiB fit a %d-byte budget", len(kept), budget)
	}
	Expect(t, replayed(t, open, dir), kept)

	session(t, open, dir, func(j broker.Journal) {
		for _, r := range kept {
			mustAppend(t, j, Remove(r)) // a full journal takes removals
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := j.Append(context.Background(), Enqueue("/queue/full", sized(9999, 1024)))
			if err == nil {
				break
			}
			if !errors.Is(err, broker.ErrJournalFull) || time.Now().After(deadline) {
				t.Fatalf("after removing every message: %v", err)
			}
			time.Sleep(10 * time.Millisecond) // compaction runs in the background
		}
	})
	Expect(t, replayed(t, open, dir), []broker.JournalRecord{Enqueue("/queue/full", sized(9999, 1024))})
}
