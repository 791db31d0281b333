package broker

import "strings"

// Topic history on the journal. With a journal that takes appends
// without waiting (PipelinedJournal; persistence.File does), every
// retained message is journaled as an OpHistoryAppend through the
// journal's group commit, and evictions as OpHistoryTrim records, one per
// many evictions. A publish never waits for the disk: a RECEIPT does not
// mean that the message is in the history on disk. A clean shutdown
// (Journal.Close) writes everything; a crash loses at most what the
// journal had not written yet (journal.sync decides how much). The epoch
// lives in the records, so a restart keeps it and offsets go on.

// historyTrimEvery is how many evictions one trim record covers at most
// for a topic keeping size messages: a trim per 1/16th of the ring, so a
// full ring costs one trim per size/16 publishes, and a restart finds at
// most that many evicted messages again (it evicts them by the rule).
func historyTrimEvery(size int) uint64 { return uint64(max(1, size/16)) }

// historyDone is the JournalDone of history records: nobody waits for
// them; a journal that fails logs it itself.
type historyDone struct{}

// JournalDone implements JournalDone.
func (historyDone) JournalDone(error) {}

// historyKey is the topic's name in journal records.
func (sp *space) historyKey(name string) string { return sp.journalPrefix + "/topic/" + name }

// journalHistory records m, published at now with seq, if the ring kept
// it, and a trim once the evictions since the last one are many. Caller
// holds h.mu, so the records of one topic are queued in offset order.
func (sp *space) journalHistory(h *topicHistory, m *Message, seq uint64, now int64) {
	j := sp.b.pipelined
	if j == nil {
		return
	}
	if h.count > 0 && seq == h.next-1 && seq >= h.first {
		err := j.AppendAsync(historyDone{}, JournalRecord{Op: OpHistoryAppend, Queue: sp.historyKey(h.name), MessageID: m.ID,
			Message: m, Epoch: h.epoch, HistorySeq: seq, PublishedAt: now})
		if err != nil {
			// Not on disk: a restart finds a gap here and starts the
			// topic's history after it (recovered:false for offsets
			// before).
			sp.b.cfg.Logger.Debug("journal: topic history message not written", "err", err)
		}
	}
	if evicted := h.first - 1; evicted >= h.trim+historyTrimEvery(h.size) {
		err := j.AppendAsync(historyDone{}, JournalRecord{Op: OpHistoryTrim, Queue: sp.historyKey(h.name), Epoch: h.epoch, HistorySeq: evicted})
		if err == nil {
			h.trim = evicted
		}
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
	next := r.HistorySeq + 1
	if r.Op == OpHistoryAppend {
		next = r.HistorySeq
	}
	h := sp.recoveredHistory(name, r.Epoch, next)
	if h == nil {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	switch r.Op {
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
		h.retain(r.Message, r.PublishedAt)
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
		h.mu.Lock()
		for h.count > 0 {
			h.evictOldest()
		}
		h.removed = true
		h.mu.Unlock()
		delete(t.topics, name)
		sp.b.hist.bytes.Add(-h.bytes)
		sp.b.hist.topics.Add(-1)
	}
	t.mu.Unlock()
	rule := t.ruleFor(name)
	if rule < 0 {
		return nil
	}
	return sp.createHistory(name, rule, epoch, next)
}
