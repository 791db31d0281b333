package persistence

import (
	"cmp"
	"slices"

	"github.com/stompbox/stompbox/broker"
)

// entry is one live record: an enqueue not removed, or a durable
// subscription not deleted.
type entry struct {
	seg  uint64 // the segment holding it
	seq  uint64 // its sequence number: replay order
	pos  uint64 // order of application: breaks ties of seq (only damaged journals have any)
	size int64  // bytes counted for it in seg
	dead bool   // killed since it was added

	// count is, for an enqueue, its live delivery count record (nil:
	// none); deliveries is, for such a record, the count.
	count      *entry
	deliveries int
	// hseq is, for a history record, its offset's seq.
	hseq uint64

	// Replay only: the record, decoded once its segment has been read
	// (view until then, pointing into that segment's bytes).
	view *view
	rec  broker.JournalRecord
}

// segment is what the live set knows of one segment file.
type segment struct {
	id       uint64
	size     int64 // bytes of data: header and records written so far
	live     int64 // bytes of live records
	liveRecs int   // live records
	sealed   bool  // no more writes; a compaction candidate
	// noRewrite is set when a rewrite failed: it is not tried again.
	noRewrite bool
	// targets are the segments holding records that records of this one
	// killed (removed, superseded, or copied elsewhere). Deleting this
	// segment before them would bring those records back: its records are
	// their tombstones.
	targets map[uint64]struct{}
}

// targetsGone reports whether every segment s killed records in has been
// deleted, forgetting those that have.
func (s *segment) targetsGone(segs map[uint64]*segment) bool {
	for t := range s.targets {
		if segs[t] != nil {
			return false
		}
		delete(s.targets, t)
	}
	return true
}

// liveSet applies records in the order they were written and keeps the
// live ones. The same rules serve recovery and compaction (with segs: per
// segment accounting) and Replay (without).
//
// The rules: an enqueue makes (queue, message id) live, replacing an
// earlier live enqueue of the same pair; a remove kills it; a durable
// create makes the durable subscription live; a durable delete kills it and
// every live enqueue of its queue. A deliveries record of a live enqueue is
// live, replacing the enqueue's earlier one; whatever kills the enqueue
// kills it too, and one whose enqueue is not live is dead from the start.
// Order is by sequence number, which a compaction copy keeps: a copy
// replaces its original. A deliveries record always comes after its
// enqueue in the files too: compaction copies an enqueue's deliveries
// record right after it (compact.go).
type liveSet struct {
	queues   map[string]map[string]*entry
	durables map[string]*entry // by queue
	// histories are the topic histories, by topic key (liveset_history.go).
	histories map[string]*historyLive
	segs      map[uint64]*segment // nil: no accounting
	// shrunk is set when a sealed segment lost live records: compaction
	// may have work.
	shrunk bool
	added  uint64 // entries added so far
	// released is set once Replay has taken the records Open decoded:
	// entries keep no record after that.
	released bool
}

func newLiveSet(segs map[uint64]*segment) *liveSet {
	return &liveSet{queues: map[string]map[string]*entry{}, durables: map[string]*entry{}, segs: segs,
		histories: map[string]*historyLive{}}
}

// apply records l, written to segment seg, and returns its entry if it is
// live (an enqueue or a durable create).
func (s *liveSet) apply(l *logical, seg uint64) *entry {
	switch l.op {
	case broker.OpEnqueue:
		m := s.queues[l.queue]
		if m == nil {
			m = map[string]*entry{}
			s.queues[l.queue] = m
		}
		if old := m[l.id]; old != nil {
			s.killMessage(old, seg)
		}
		e := s.add(l, seg)
		m[l.id] = e
		return e
	case broker.OpDeliveries:
		e := s.queues[l.queue][l.id]
		if e == nil || l.seq < e.seq {
			return nil // its message is gone (or came back since): nothing to count
		}
		if e.count != nil {
			s.kill(e.count, 0)
		}
		c := s.add(l, seg)
		c.deliveries = l.deliveries
		e.count = c
		return c
	case broker.OpRemove:
		if m := s.queues[l.queue]; m != nil {
			if old := m[l.id]; old != nil {
				s.killMessage(old, seg)
				delete(m, l.id)
				if len(m) == 0 {
					delete(s.queues, l.queue)
				}
			}
		}
	case broker.OpDurableCreate:
		if old := s.durables[l.queue]; old != nil {
			s.kill(old, seg)
		}
		e := s.add(l, seg)
		s.durables[l.queue] = e
		return e
	case broker.OpHistoryAppend:
		return s.historyAppend(l, seg)
	case broker.OpHistoryTrim:
		return s.historyTrim(l, seg)
	case broker.OpHistorySeal:
		return s.historySeal(l, seg)
	case broker.OpHistoryDrop:
		s.historyDrop(l, seg)
	case broker.OpDurableDelete:
		if old := s.durables[l.queue]; old != nil {
			s.kill(old, seg)
			delete(s.durables, l.queue)
		}
		for _, old := range s.queues[l.queue] {
			s.killMessage(old, seg)
		}
		delete(s.queues, l.queue)
	}
	return nil
}

// lookup finds the live entry of l's key, if any.
func (s *liveSet) lookup(l *logical) *entry {
	switch l.op {
	case broker.OpEnqueue:
		return s.queues[l.queue][l.id]
	case broker.OpDurableCreate:
		return s.durables[l.queue]
	case broker.OpDeliveries:
		if e := s.queues[l.queue][l.id]; e != nil {
			return e.count
		}
	case broker.OpHistoryAppend, broker.OpHistoryTrim, broker.OpHistorySeal:
		return s.historyLookup(l)
	}
	return nil
}

// stillAt reports whether the record l describes is live and still in
// segment src: a compaction copy of it is then worth writing.
func (s *liveSet) stillAt(l *logical, src uint64) bool {
	e := s.lookup(l)
	return e != nil && e.seg == src && e.seq == l.seq
}

// move records that the live record l was copied from its segment to dst.
func (s *liveSet) move(l *logical, dst uint64) {
	e := s.lookup(l)
	if e == nil || e.seg != l.src || e.seq != l.seq {
		return // not live any more; the copy is dead weight in dst
	}
	rec := e.rec // a copy keeps the record Replay may still hand out
	s.kill(e, dst)
	e.seg, e.size, e.dead, e.rec = dst, l.size, false, rec
	s.count(e)
}

func (s *liveSet) add(l *logical, seg uint64) *entry {
	s.added++
	e := &entry{seg: seg, seq: l.seq, pos: s.added, size: l.size}
	s.count(e)
	return e
}

func (s *liveSet) count(e *entry) {
	if seg := s.segs[e.seg]; seg != nil {
		seg.live += e.size
		seg.liveRecs++
	}
}

// killMessage kills an enqueue's entry e and its deliveries record. The
// latter needs no tombstone (by 0): without its enqueue it is dead from
// the start.
func (s *liveSet) killMessage(e *entry, by uint64) {
	s.kill(e, by)
	if e.count != nil {
		s.kill(e.count, 0)
		e.count = nil
	}
}

// kill marks e dead, by a record written to segment by (0: none that
// must outlive e's segment).
func (s *liveSet) kill(e *entry, by uint64) {
	e.dead = true
	e.rec = broker.JournalRecord{} // a dead record's message is not replayed: let its body go
	seg := s.segs[e.seg]
	if seg == nil {
		return
	}
	seg.live -= e.size
	seg.liveRecs--
	if seg.sealed {
		s.shrunk = true
	}
	if killer := s.segs[by]; killer != nil && by != e.seg {
		if killer.targets == nil {
			killer.targets = map[uint64]struct{}{}
		}
		killer.targets[e.seg] = struct{}{}
	}
}

// sorted returns the live entries in sequence order: the order their
// records were first appended.
func (s *liveSet) sorted() []*entry {
	var all []*entry
	for _, e := range s.durables {
		all = append(all, e)
	}
	for _, m := range s.queues {
		for _, e := range m {
			all = append(all, e)
		}
	}
	all = s.appendHistories(all)
	slices.SortFunc(all, func(a, b *entry) int { return cmp.Or(cmp.Compare(a.seq, b.seq), cmp.Compare(a.pos, b.pos)) })
	return all
}

// logicalOf describes a decoded record for the live set. Key strings are
// copies: they outlive the segment's bytes.
func logicalOf(v *view) logical {
	l := logical{op: v.op, queue: string(v.queue), seq: v.seq, size: v.size}
	switch v.op {
	case broker.OpEnqueue, broker.OpRemove:
		l.id = string(v.id)
	case broker.OpDeliveries:
		l.id, l.deliveries = string(v.id), v.deliveries
	case broker.OpHistoryAppend, broker.OpHistoryTrim, broker.OpHistorySeal, broker.OpHistoryDrop:
		l.epoch, l.hseq = string(v.epoch), v.hseq
	}
	return l
}

// replayed is the record Replay gives for the live entry e: an enqueue
// with its delivery count.
func (e *entry) replayed() broker.JournalRecord {
	rec := e.rec
	if e.count != nil {
		rec.Deliveries = e.count.deliveries
	}
	return rec
}
