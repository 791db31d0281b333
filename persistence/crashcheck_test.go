package persistence

import (
	"bytes"
	"errors"
	"strings"
	"syscall"

	"github.com/stompbox/stompbox/broker"
)

// restart opens the journal on m.fs, sometimes with the fs dying during
// recovery, and checks the replay.
func (m *crashModel) restart() {
	for attempt := 0; ; attempt++ {
		if attempt < 2 && m.rng.IntN(5) == 0 {
			n := 1 + m.rng.IntN(25)
			m.step("the fs dies in %d operations (during recovery)", n)
			m.fs.dieAfter(n)
		}
		f, err := openWith(crashDir, m.cfg, m.fs)
		if err != nil {
			if !m.fs.isDead() {
				m.fatalf("Open on a working fs: %v", err)
			}
			if !errors.Is(err, syscall.EIO) {
				m.fatalf("Open failed without saying why: %v", err)
			}
			m.step("Open failed: %v", err)
			m.fs = m.crashFS(tornMode(m.rng.IntN(3)))
			continue
		}
		m.f = f
		// A crash is not corruption: recovery truncates torn tails and
		// deletes segments whose header a crash tore while creating them
		// (warnings, their bytes kept aside), and reports nothing as
		// corrupt.
		if st := f.Stats(); st.CorruptRecords > 0 || st.CorruptSegments > 0 {
			m.fatalf("recovery after a crash (worst so far: %v) reported %d corrupt records and %d corrupt segments",
				m.torn, st.CorruptRecords, st.CorruptSegments)
		}
		if err := m.verify(true); err != nil {
			if !m.fs.isDead() {
				m.fatalf("Replay on a working fs: %v", err)
			}
			m.step("Replay failed: %v", err)
			next := m.crashFS(tornMode(m.rng.IntN(3)))
			_ = f.Close()
			m.account(f)
			m.fs = next
			continue
		}
		return
	}
}

// verify replays the journal and checks it against the model. With
// resolve, what the replay shows of unacknowledged records becomes the
// model's truth (after a restart: it is on disk now).
func (m *crashModel) verify(resolve bool) error {
	var got []broker.JournalRecord
	if err := m.f.Replay(func(r broker.JournalRecord) error {
		got = append(got, r)
		return nil
	}); err != nil {
		return err
	}
	seen := map[string]bool{}
	durSeen := map[string]bool{}
	lastN := map[string]int{}
	for _, r := range got {
		switch r.Op {
		case broker.OpDurableCreate:
			if s, ok := m.durables[r.Queue]; !ok || s == mGoneWritten {
				m.fatalf("durable subscription %s replayed, but its deletion was acknowledged (or it was never created)", r.Queue)
			}
			durSeen[r.Queue] = true
		case broker.OpEnqueue:
			mm := m.msgs[r.MessageID]
			switch {
			case mm == nil:
				m.fatalf("%s %s replayed, but its removal was acknowledged (or it was never appended)", r.Queue, r.MessageID)
			case seen[r.MessageID]:
				m.fatalf("%s replayed twice", r.MessageID)
			case mm.queue != r.Queue:
				m.fatalf("%s replayed in %s, appended to %s", r.MessageID, r.Queue, mm.queue)
			case !bytes.Equal(r.Message.Body, mm.body):
				m.fatalf("%s replayed with body %q, want %q", r.MessageID, r.Message.Body, mm.body)
			case strings.HasPrefix(r.Queue, "/durable/") && !durSeen[r.Queue]:
				m.fatalf("%s replayed before the create of its durable subscription %s", r.MessageID, r.Queue)
			case mm.n < lastN[r.Queue]:
				m.fatalf("%s replayed after a message appended later to %s", r.MessageID, r.Queue)
			}
			seen[r.MessageID] = true
			lastN[r.Queue] = mm.n
		default:
			m.fatalf("Replay gave a %v record", r.Op)
		}
	}
	for id, mm := range m.msgs {
		// A message of a durable subscription whose deletion is in doubt
		// is required only if the subscription is there.
		if acked(mm.state) && !seen[id] && (m.durableState(mm.queue) != mMaybe || durSeen[mm.queue]) {
			m.fatalf("acknowledged message %s in %s lost (%d records replayed)", id, mm.queue, len(got))
		}
	}
	for q, s := range m.durables {
		if acked(s) && !durSeen[q] {
			m.fatalf("acknowledged durable subscription %s lost", q)
		}
	}
	for _, g := range m.groups {
		if g.forget && !resolve {
			continue // may still be queued
		}
		m.checkAtomic(g, seen)
	}
	if resolve {
		m.resolve(seen, durSeen)
	}
	return nil
}

// checkAtomic fails unless g is all on disk or not at all.
func (m *crashModel) checkAtomic(g mGroup, seen map[string]bool) {
	var applied, notApplied int
	for _, id := range g.enqueued {
		if seen[id] {
			applied++
		} else {
			notApplied++
		}
	}
	for _, id := range g.durable {
		if mm := m.msgs[id]; mm != nil && m.durableState(mm.queue) == mMaybe && !seen[id] {
			continue // its durable subscription may be gone
		}
		if seen[id] {
			notApplied++
		} else {
			applied++
		}
	}
	if applied > 0 && notApplied > 0 {
		m.fatalf("one Append half on disk: enqueued %v, removed %v, seen %v", g.enqueued, g.removed, seen)
	}
}

func (m *crashModel) resolve(seen, durSeen map[string]bool) {
	for id, mm := range m.msgs {
		if seen[id] {
			mm.state = mLive
		} else {
			delete(m.msgs, id)
		}
	}
	for q := range m.durables {
		if durSeen[q] {
			m.durables[q] = mLive
		} else {
			delete(m.durables, q)
		}
	}
	m.groups, m.forgotten = nil, nil
}
