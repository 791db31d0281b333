package persistence

import (
	"cmp"
	"slices"

	"github.com/stompbox/stompbox/broker"
)

// historyLive is what the live set keeps of one topic's history: the
// retained messages of its current epoch in offset order, and its newest
// trim record. The rules: an append of another epoch than the topic's
// kills everything the topic had (a new history lifetime); an append is
// live until a trim of its epoch reaches its seq; a trim kills the appends
// up to its seq and the topic's previous trim. So compaction keeps one
// trim per topic (it holds the epoch and the seq the history goes on
// from, even when nothing is retained) and the appends after it.
//
// A seal (written at a clean shutdown) is live until any later history
// record of its topic: an append, a trim, another seal, or a record of
// another epoch kills it, so a topic has at most one live seal, and a
// live seal is always its topic's last record. A drop kills every record
// of its topic, whatever their epoch, and is dead at once (like a
// durable delete): compaction keeps nothing of a dropped topic.
type historyLive struct {
	epoch   string
	entries []*entry // appends, ascending hseq
	trim    *entry   // the newest trim; nil: none
	seal    *entry   // the live seal; nil: none
}

// history returns the topic's history, switched to epoch: what another
// epoch left is killed by a record in segment seg.
func (s *liveSet) history(topic, epoch string, seg uint64) *historyLive {
	h := s.histories[topic]
	if h == nil {
		h = &historyLive{epoch: epoch}
		s.histories[topic] = h
	}
	if h.epoch != epoch {
		s.dropHistory(h, seg)
		*h = historyLive{epoch: epoch}
	}
	s.unseal(h, seg)
	return h
}

// dropHistory kills every record of h (appends, trim, seal) by a record
// in segment seg: a new epoch, or a drop.
func (s *liveSet) dropHistory(h *historyLive, seg uint64) {
	for _, e := range h.entries {
		s.kill(e, seg)
	}
	if h.trim != nil {
		s.kill(h.trim, seg)
	}
	s.unseal(h, seg)
}

// unseal kills h's seal, if any, by a later record of its topic in seg.
func (s *liveSet) unseal(h *historyLive, seg uint64) {
	if h.seal != nil {
		s.kill(h.seal, seg)
		h.seal = nil
	}
}

// historySeal applies an OpHistorySeal: live until the topic's next
// history record.
func (s *liveSet) historySeal(l *logical, seg uint64) *entry {
	h := s.history(l.queue, l.epoch, seg)
	h.seal = s.add(l, seg)
	h.seal.hseq = l.hseq
	return h.seal
}

// historyDrop applies an OpHistoryDrop: every record of the topic dies.
func (s *liveSet) historyDrop(l *logical, seg uint64) {
	h := s.histories[l.queue]
	if h == nil {
		return
	}
	s.dropHistory(h, seg)
	delete(s.histories, l.queue)
}

// historyAppend applies an OpHistoryAppend. An append at or below the
// topic's trim is dead from the start; one at or below an append already
// live replaces it (and what follows it: the history restarted there).
func (s *liveSet) historyAppend(l *logical, seg uint64) *entry {
	h := s.history(l.queue, l.epoch, seg)
	if h.trim != nil && l.hseq <= h.trim.hseq {
		return nil
	}
	for len(h.entries) > 0 && h.entries[len(h.entries)-1].hseq >= l.hseq {
		s.kill(h.entries[len(h.entries)-1], seg)
		h.entries = h.entries[:len(h.entries)-1]
	}
	e := s.add(l, seg)
	e.hseq = l.hseq
	h.entries = append(h.entries, e)
	return e
}

// historyTrim applies an OpHistoryTrim: the appends up to its seq and the
// previous trim die by it.
func (s *liveSet) historyTrim(l *logical, seg uint64) *entry {
	h := s.history(l.queue, l.epoch, seg)
	if h.trim != nil && h.trim.hseq >= l.hseq {
		return nil // an older trim point: nothing new
	}
	n := 0
	for n < len(h.entries) && h.entries[n].hseq <= l.hseq {
		s.kill(h.entries[n], seg)
		n++
	}
	clear(h.entries[:n])
	h.entries = h.entries[n:]
	if h.trim != nil {
		s.kill(h.trim, seg)
	}
	h.trim = s.add(l, seg)
	h.trim.hseq = l.hseq
	return h.trim
}

// historyLookup finds the live entry of a history record, if any.
func (s *liveSet) historyLookup(l *logical) *entry {
	h := s.histories[l.queue]
	if h == nil || h.epoch != l.epoch {
		return nil
	}
	switch l.op {
	case broker.OpHistoryTrim:
		if h.trim != nil && h.trim.hseq == l.hseq {
			return h.trim
		}
		return nil
	case broker.OpHistorySeal:
		if h.seal != nil && h.seal.hseq == l.hseq {
			return h.seal
		}
		return nil
	}
	i, found := slices.BinarySearchFunc(h.entries, l.hseq, func(e *entry, hseq uint64) int { return cmp.Compare(e.hseq, hseq) })
	if !found {
		return nil
	}
	return h.entries[i]
}

// appendHistories appends the live history records to all.
func (s *liveSet) appendHistories(all []*entry) []*entry {
	for _, h := range s.histories {
		all = append(all, h.entries...)
		if h.trim != nil {
			all = append(all, h.trim)
		}
		if h.seal != nil {
			all = append(all, h.seal)
		}
	}
	return all
}
