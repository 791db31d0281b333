package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// Sealing topic histories at a clean shutdown. Publishing to a history
// topic never waits for the disk (history_journal.go), so after a crash
// the journal may lack the newest offsets that clients already saw. Were
// the epoch kept, recovery would give those seqs again to other
// messages, and a client resuming after one of them would be told
// recovered:true while it misses the new ones. So a history keeps its
// epoch across a restart only when the shutdown sealed it: an
// OpHistorySeal, written (waited) after all its appends, says that the
// journal holds the history complete, up to the seq the next message
// gets. Any later record of the topic kills the seal on the journal, so
// a replayed seal is the topic's last record. Recovery keeps the epoch
// and ring of a topic whose seal matches what was replayed; any other
// history goes on under a new epoch, its retained messages kept
// (finishHistoryRecovery).
//
// A history that lost a record (an append refused by the journal's
// budget, or failed after it was queued) is dirty: it is not sealed but
// dropped (OpHistoryDrop), so it restarts with a new epoch too.

// sealBatch is how many seals one Append carries: a batch is one record
// on disk, which must stay well under the journal's record size limit
// (a seal is a topic key, an epoch and 8 bytes).
const sealBatch = 256

// SealHistories writes, for every topic history, a seal (or a drop, when
// a record of it may be missing) and waits for them to be on disk. Call
// it once at a clean shutdown, after every session has ended (nothing
// publishes any more) and before the journal is closed; ctx bounds it
// (histories not sealed in time restart with a new epoch). Without a
// pipelined journal it does nothing: histories are then not journaled.
func (b *Broker) SealHistories(ctx context.Context) error {
	if b.pipelined == nil {
		return nil
	}
	var recs []JournalRecord
	type topicRef struct {
		sp *space
		h  *topicHistory
	}
	var sealed []topicRef
	for _, sp := range b.spaces {
		if sp.hist == nil || sp.hist.mirrors != nil {
			continue // none, or the cluster keeps them
		}
		sp.hist.mu.RLock()
		hs := make([]*topicHistory, 0, len(sp.hist.topics))
		for _, h := range sp.hist.topics {
			hs = append(hs, h)
		}
		sp.hist.mu.RUnlock()
		for _, h := range hs {
			h.mu.Lock()
			recs = sp.sealRecords(recs, h)
			if !h.dirty.Load() {
				sealed = append(sealed, topicRef{sp, h})
			}
			h.mu.Unlock()
		}
	}
	var errs []error
	for chunk := range slices.Chunk(recs, sealBatch) {
		if err := ctx.Err(); err != nil {
			errs = append(errs, fmt.Errorf("broker: sealing topic histories: %w", err))
			break
		}
		if err := b.cfg.Journal.Append(ctx, chunk...); err != nil {
			errs = append(errs, fmt.Errorf("broker: sealing topic histories: %w", err))
		}
	}
	// The journal writes in submission order and reports each queued
	// append before the Appends queued after it return: a history whose
	// append failed while its seal was on the way is dirty by now. Its
	// seal would be a lie: drop the history.
	var drops []JournalRecord
	for _, r := range sealed {
		if r.h.dirty.Load() {
			drops = append(drops, JournalRecord{Op: OpHistoryDrop, Queue: r.h.key, Epoch: r.h.epoch})
		}
	}
	for chunk := range slices.Chunk(drops, sealBatch) {
		// Not cut short by ctx: a seal left in place would be a lie.
		if err := b.cfg.Journal.Append(context.WithoutCancel(ctx), chunk...); err != nil {
			errs = append(errs, fmt.Errorf("broker: dropping unsealable topic histories: %w", err))
		}
	}
	return errors.Join(errs...)
}

// sealRecords appends h's records of a clean shutdown to recs: a drop
// when h is dirty; else the trim of what was evicted since the last one
// (so that the journal holds exactly the ring) and the seal. Caller
// holds h.mu.
func (sp *space) sealRecords(recs []JournalRecord, h *topicHistory) []JournalRecord {
	key := h.key
	if h.dirty.Load() {
		return append(recs, JournalRecord{Op: OpHistoryDrop, Queue: key, Epoch: h.epoch})
	}
	if evicted := h.first - 1; evicted > h.trim {
		recs = append(recs, JournalRecord{Op: OpHistoryTrim, Queue: key, Epoch: h.epoch, HistorySeq: evicted})
	}
	return append(recs, JournalRecord{Op: OpHistorySeal, Queue: key, Epoch: h.epoch, HistorySeq: h.next})
}

// finishHistoryRecovery runs after the journal's records are replayed: a
// history whose last record is a seal of what was replayed keeps its
// epoch; any other (a crash, a refused append, records of an older
// stompbox) keeps its retained messages but goes on under a new epoch
// (renewEpochLocked), so that no offset a client may have seen is given
// to another message, and a client resuming with an old offset is told
// recovered:false.
func (b *Broker) finishHistoryRecovery() (kept, restarted int) {
	for _, sp := range b.spaces {
		t := sp.hist
		if t == nil || t.mirrors != nil {
			continue // none, or the cluster keeps them
		}
		t.mu.Lock()
		for _, h := range t.topics {
			h.mu.Lock()
			if h.sealNext != 0 && h.sealNext == h.next {
				kept++
			} else {
				sp.renewEpochLocked(h)
				restarted++
			}
			h.sealNext = 0
			h.mu.Unlock()
		}
		t.mu.Unlock()
	}
	return kept, restarted
}

// renewEpochLocked gives h, recovered unsealed, a new epoch. Its retained
// messages stay, with the offsets they were delivered with (their
// headers), and are journaled again under the new epoch: the journal
// then drops the old lifetime's records at the first of them, and a
// later restart finds them under the new one. New messages get offsets
// of the new epoch from the old next seq on; a resume-after of the old
// epoch is recovered:false and replays everything retained, which a
// client that drops what it has seen (same epoch, seq not above its
// last) takes without a duplicate. Recovery only (nothing publishes
// yet); caller holds h.mu.
func (sp *space) renewEpochLocked(h *topicHistory) {
	h.epoch = newEpoch()
	h.trim = h.first - 1
	j := sp.b.pipelined
	if j == nil {
		return
	}
	key := h.key
	for seq := h.first; seq < h.next; seq++ {
		e := h.at(seq)
		err := j.AppendAsync(historyDone{h}, JournalRecord{Op: OpHistoryAppend, Queue: key, MessageID: e.m.ID,
			Message: e.m, Epoch: h.epoch, HistorySeq: seq, PublishedAt: e.at})
		if err != nil {
			h.dirty.Store(true) // not all of it is on disk: not sealed at shutdown either
			sp.b.cfg.Logger.Warn("journal: topic history not rewritten under its new epoch; it restarts empty after the next restart",
				"topic", h.name, "err", err)
			return
		}
	}
}

// removeHistory removes topic name's history, if any (a replayed drop).
func (sp *space) removeHistory(name string) {
	t := sp.hist
	t.mu.Lock()
	defer t.mu.Unlock()
	if h := t.topics[name]; h != nil {
		sp.removeHistoryLocked(h)
	}
}

// removeHistoryLocked empties h and takes it out of its table and the
// broker-wide account. Caller holds sp.hist.mu, not h.mu.
func (sp *space) removeHistoryLocked(h *topicHistory) {
	h.mu.Lock()
	for h.count > 0 {
		h.evictOldest()
	}
	h.removed = true
	h.mu.Unlock()
	delete(sp.hist.topics, h.name)
	sp.b.hist.bytes.Add(-h.bytes)
	sp.b.hist.topics.Add(-1)
}
