package broker

import "strings"

// Topic history on the journal. With a journal that takes appends
// without waiting (PipelinedJournal; persistence.File does), every
// retained message is journaled as an OpHistoryAppend through the
// journal's group commit, and evictions as OpHistoryTrim records, one per
// many evictions. A publish never waits for the disk: a RECEIPT does not
// mean that the message is in the history on disk, so after a crash the
// journal may lack the newest offsets clients have seen; were the epoch
// kept, those offsets would be given again to other messages. So a
// restart keeps a topic's epoch (and its ring) only when a clean
// shutdown sealed it (history_seal.go); after a crash every history
// starts a new epoch, empty. A history dropped from memory is dropped on
// the journal too (OpHistoryDrop), so that churning topic names do not
// grow the journal for ever.

// historyTrimEvery is how many evictions one trim record covers at most
// for a topic keeping size messages: a trim per 1/16th of the ring, so a
// full ring costs one trim per size/16 publishes, and a restart finds at
// most that many evicted messages again (it evicts them by the rule).
func historyTrimEvery(size int) uint64 { return uint64(max(1, size/16)) }

// historyDone is the JournalDone of history records: nobody waits for
// them (a journal that fails logs it itself), but a record that did not
// reach the disk leaves its history unsealable (dirty). One pointer: it
// fits an interface without allocating.
type historyDone struct{ h *topicHistory }

// JournalDone implements JournalDone.
func (d historyDone) JournalDone(err error) {
	if err != nil && d.h != nil {
		d.h.dirty.Store(true)
	}
}

// historyKey is the topic's name in journal records.
func (sp *space) historyKey(name string) string { return sp.journalPrefix + "/topic/" + name }

// journalHistory records m, published at now with seq, if the ring kept
// it, and a trim once the evictions since the last one are many. Caller
// holds h.mu, so the records of one topic are queued in offset order.
func (sp *space) journalHistory(h *topicHistory, m *Message, seq uint64, now int64) {
	j := sp.b.pipelined
	if j == nil || h.mirror != nil {
		return
	}
	if h.count > 0 && seq == h.next-1 && seq >= h.first {
		err := j.AppendAsync(historyDone{h}, JournalRecord{Op: OpHistoryAppend, Queue: h.key, MessageID: m.ID,
			Message: m, Epoch: h.epoch, HistorySeq: seq, PublishedAt: now})
		if err != nil {
			// Not on disk: the shutdown does not seal this history, so
			// that a restart starts a new epoch rather than give seq
			// again to another message.
			h.dirty.Store(true)
			sp.b.cfg.Logger.Debug("journal: topic history message not written", "err", err)
		}
	}
	// A message not retained (too big for max_history_bytes) needs no
	// record: the trim past it, written here or by the seal, says that
	// the history goes on after it.
	sp.journalHistoryTrim(h)
}

// journalHistoryTrim writes a trim once the evictions since the last one
// are many. Caller holds h.mu.
func (sp *space) journalHistoryTrim(h *topicHistory) {
	j := sp.b.pipelined
	if j == nil || h.mirror != nil {
		return
	}
	if evicted := h.first - 1; evicted >= h.trim+historyTrimEvery(h.size) {
		err := j.AppendAsync(historyDone{}, JournalRecord{Op: OpHistoryTrim, Queue: h.key, Epoch: h.epoch, HistorySeq: evicted})
		if err == nil {
			h.trim = evicted
		}
	}
}

// journalHistoryDrop records that h left memory: its records are dead.
// A refused drop leaves them live until the topic's next history record
// of another epoch (or a later drop). Caller holds h.mu.
func (sp *space) journalHistoryDrop(h *topicHistory) {
	j := sp.b.pipelined
	if j == nil || h.mirror != nil {
		return
	}
	if err := j.AppendAsync(historyDone{}, JournalRecord{Op: OpHistoryDrop, Queue: h.key, Epoch: h.epoch}); err != nil {
		sp.b.cfg.Logger.Debug("journal: topic history drop not written", "topic", h.name, "err", err)
	}
}

// recoverHistory applies a replayed history record: the rings are
// rebuilt in offset order, with the journaled epochs. A topic no rule
// matches any more is skipped.
func (b *Broker) recoverHistory(r JournalRecord) bool {
	sp, dest := b.spaceOfJournalName(r.Queue)
	name, ok := strings.CutPrefix(dest, "/topic/")
	if sp == nil || sp.hist == nil || !ok || (r.Op == OpHistoryAppend && r.Message == nil) {
		return false
	}
	if sp.hist.mirrors != nil {
		return false // the cluster keeps the histories now (cluster_history.go)
	}
	if r.Op == OpHistoryDrop {
		sp.removeHistory(name)
		return true
	}
	next := r.HistorySeq + 1
	if r.Op == OpHistoryAppend || r.Op == OpHistorySeal {
		next = r.HistorySeq
	}
	h := sp.recoveredHistory(name, r.Epoch, next)
	if h == nil {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sealNext = 0 // a seal counts only as the topic's last record
	switch r.Op {
	case OpHistorySeal:
		h.sealNext = r.HistorySeq
	case OpHistoryAppend:
		if r.HistorySeq < h.next {
			return false // already there
		}
		if r.HistorySeq > h.next {
			// A gap (a message the journal did not get): the ring
			// restarts here, so it stays contiguous.
			for h.count > 0 {
				h.evictOldest()
			}
			h.first, h.next = r.HistorySeq, r.HistorySeq
		}
		h.next++
		h.retain(r.Message, h.next-1, r.PublishedAt)
	case OpHistoryTrim:
		for h.count > 0 && h.first <= r.HistorySeq {
			h.evictOldest()
		}
		if h.next <= r.HistorySeq {
			h.next = r.HistorySeq + 1
		}
		if h.count == 0 {
			h.first = h.next
		}
		h.trim = max(h.trim, r.HistorySeq)
	}
	return true
}

// recoveredHistory returns the history of name with epoch, starting at
// next if it is new; one of another epoch is replaced (the journal holds a
// newer lifetime).
func (sp *space) recoveredHistory(name, epoch string, next uint64) *topicHistory {
	t := sp.hist
	t.mu.Lock()
	if h := t.topics[name]; h != nil {
		if h.epoch == epoch {
			t.mu.Unlock()
			return h
		}
		sp.removeHistoryLocked(h)
	}
	t.mu.Unlock()
	rule := t.ruleFor(name)
	if rule < 0 {
		return nil
	}
	return sp.createHistory(name, rule, epoch, next)
}
