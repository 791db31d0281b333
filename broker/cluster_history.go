package broker

import "sync"

// Topic history across the nodes of a cluster (docs/cluster.md "Topic
// history"), when Config.Cluster implements ClusterHistory. The cluster
// keeps each history rule of each virtual host in a stream of its own: a
// SEND to a topic with history is stored there (PublishHistory, RECEIPT
// once stored) and not delivered here directly; every node, this one
// included, mirrors the stream in its order (KeepHistory feeds a
// HistorySink) into the histories of history.go, whose offsets are then
// the stream's: <epoch>-<stream sequence>, the same on every node. The
// sequences of one topic are increasing but not consecutive (the stream
// holds every topic of its rule), so what a node knows is tracked per
// topic as before (topicHistory.before): everything of the topic after it
// is retained here.

// ClusterHistory is implemented by a Cluster that keeps topic histories
// cluster-wide; the broker uses it when Config.Cluster implements it and
// Config.TopicHistory has rules.
type ClusterHistory interface {
	// KeepHistory starts mirroring the history of rule index rule (of
	// Config.TopicHistory, spec r) in vhost into sink: the cluster keeps
	// the rule's messages (retaining per topic r.Size messages, none
	// older than r.MaxAge) and calls sink from one goroutine, in the
	// order it stored them, until it closes. broker.New calls it once per
	// virtual host and rule; it must not block.
	KeepHistory(vhost string, rule int, r HistoryRule, sink HistorySink)
	// PublishHistory stores m, published on this node to topic (a name,
	// without /topic/) whose history follows rule in vhost, without
	// waiting. done is called as PublishQueue's is: exactly once, with
	// nil once stored (every node then gets m through its HistorySink),
	// ErrClusterDuplicate for a repeat of m.DedupeID, or an error
	// wrapping ErrClusterUnavailable. When it returns an error nothing was
	// sent and done is never called; an error wrapping ErrClusterFull
	// says the cluster cannot take more now (this node's mirror of the
	// rule is too far behind): the producer is slowed down and the SEND
	// tried again.
	PublishHistory(vhost, topic string, rule int, m *Message, done ClusterDone) error
}

// HistorySink is one virtual host's history of one rule, as the cluster
// mirrors it into this node. Its methods are called from one goroutine.
type HistorySink interface {
	// Start says the mirror (re)starts on the history's lifetime epoch
	// (1 to 16 lowercase hex digits, from the stream's creation), whose
	// newest message has sequence last (0: none). It returns the first
	// sequence the mirror must deliver: 1 for an epoch this node has not
	// seen (the node's history of the rule starts over; what the stream
	// holds up to last is history, retained and not delivered to
	// subscribers as new), or the one after the last delivered for the
	// epoch it mirrors already (a restart after an outage: what it missed
	// meanwhile is delivered, late, in order).
	Start(epoch string, last uint64) (from uint64)
	// Deliver hands the node one message of the history: seq its
	// sequence (increasing; repeats of what was delivered are ignored),
	// topic its topic's name (without /topic/), at its store time in ms
	// since the Unix epoch. m must not be modified afterwards.
	Deliver(seq uint64, topic string, m *Message, at int64)
}

// historyMirror is a HistorySink: this node's copy of one rule's history
// in one virtual host. Lock order: the history table's mu, then a
// topic's mu, then the mirror's mu.
type historyMirror struct {
	sp   *space // immutable
	rule int    // immutable

	mu sync.Mutex
	// epoch (guarded by mu) is the lifetime mirrored; "" until the first
	// Start: no history is kept before it.
	epoch string
	pos   uint64 // guarded by mu: the newest seq delivered
	// quiet (guarded by mu): the seqs up to it were history already when
	// the mirror started on the epoch: retained, not delivered as new.
	quiet uint64
	// floor (guarded by mu): a topic of the rule without a history here
	// has no message after floor that this node has not seen: a history
	// made now knows everything of its topic from floor+1 on. What the
	// stream held when the mirror started was evicted oldest first per
	// topic, unseen, so it starts at quiet; a history dropped here, or a
	// message no history could keep, raises it.
	floor uint64
	// gapEnd (guarded by mu) is the newest seq the mirror delivered right
	// after a gap: the stream dropped what lay between before the mirror
	// read it, so no topic's known run may reach back across it.
	gapEnd uint64
}

// startMirrors hands the cluster sp's histories (newSpace, in cluster mode
// with rules): one mirror per rule.
func (sp *space) startMirrors(ch ClusterHistory) {
	t := sp.hist
	t.mirrors = make([]*historyMirror, len(t.rules))
	for i := range t.rules {
		t.mirrors[i] = &historyMirror{sp: sp, rule: i}
	}
	for i, r := range t.rules {
		ch.KeepHistory(sp.name, i, r, t.mirrors[i])
	}
}

// Start implements HistorySink.
func (x *historyMirror) Start(epoch string, last uint64) uint64 {
	x.mu.Lock()
	if epoch == x.epoch {
		from := x.pos + 1
		x.mu.Unlock()
		return from
	}
	old := x.epoch
	x.epoch, x.pos, x.quiet, x.floor, x.gapEnd = epoch, 0, last, last, 0
	x.mu.Unlock()
	if old != "" {
		x.sp.b.cfg.Logger.Warn("cluster: a topic history starts a new lifetime; what this node kept of the old one is dropped",
			"vhost", x.sp.name, "pattern", x.sp.hist.rules[x.rule].Pattern, "old_epoch", old, "epoch", epoch)
		x.dropOtherEpochs(epoch)
	}
	return 1
}

// dropOtherEpochs removes the rule's histories of another lifetime than
// epoch.
func (x *historyMirror) dropOtherEpochs(epoch string) {
	t := x.sp.hist
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, h := range t.topics {
		if h.mirror == x && h.epoch != epoch {
			x.sp.removeHistoryLocked(h)
		}
	}
}

// Deliver implements HistorySink: m is retained in its topic's history
// and, unless it is older than the mirror's start, fanned out to the
// topic's subscribers here, under the history's lock (as a publish on a
// single node is), carrying offset:<epoch>-<seq>.
func (x *historyMirror) Deliver(seq uint64, topic string, m *Message, at int64) {
	x.mu.Lock()
	epoch, quiet := x.epoch, x.quiet
	if epoch == "" || seq <= x.pos {
		x.mu.Unlock()
		return
	}
	if seq > x.pos+1 {
		x.gapEnd = seq
	}
	x.mu.Unlock()
	sp := x.sp
	t := sp.hist
	if t.ruleFor(topic) != x.rule {
		// Another rule keeps this topic here (a second rule of the same
		// pattern shares the first one's stream; or the nodes' rules
		// differ): its own mirror delivers it, or nothing should.
		x.advance(seq, false)
		return
	}
	if m.Persistent && sp.b.cfg.Journal != nil {
		// Stored in the cluster, never journaled here (DeliverTopic).
		local := *m
		local.Persistent = false
		m = &local
	}
	m = m.withOffset(epoch, seq)
	m.histSeq, m.histEpoch = seq, epoch
	live := seq > quiet && !m.expired(sp.b.nowMs())
	for range 4 {
		h := sp.lockHistoryAt(topic, x, seq)
		if h != nil && h.epoch != epoch {
			// Made of the lifetime Start just left (a race with its
			// clean-up): it goes, and the topic starts over.
			h.mu.Unlock()
			t.mu.Lock()
			if t.topics[topic] == h {
				sp.removeHistoryLocked(h)
			}
			t.mu.Unlock()
			continue
		}
		if h != nil {
			h.next = max(h.next, seq+1)
			h.retain(m, seq, at)
			if live {
				sp.fanOut(topic, m, true)
			}
			x.advance(seq, false)
			h.mu.Unlock()
			return
		}
		// No history could be made (the broker-wide bound): the message
		// is seen, not kept. Under the table's lock, so that a history
		// made meanwhile by a SUBSCRIBE is not passed by.
		t.mu.RLock()
		if t.topics[topic] != nil {
			t.mu.RUnlock()
			continue
		}
		x.advance(seq, true)
		if live {
			sp.fanOut(topic, m, true)
		}
		t.mu.RUnlock()
		return
	}
	x.advance(seq, true)
	if live {
		sp.fanOut(topic, m, true)
	}
}

// advance records seq as delivered; unkept says no history kept it.
func (x *historyMirror) advance(seq uint64, unkept bool) {
	x.mu.Lock()
	x.pos = max(x.pos, seq)
	if unkept {
		x.floor = max(x.floor, seq)
	}
	x.mu.Unlock()
}

// state returns the mirror's epoch, position, quiet mark and newest gap
// end.
func (x *historyMirror) state() (epoch string, pos, quiet, gapEnd uint64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.epoch, x.pos, x.quiet, x.gapEnd
}

// raiseFloor says a history of the rule left this node knowing its topic
// up to seq.
func (x *historyMirror) raiseFloor(seq uint64) {
	x.mu.Lock()
	x.floor = max(x.floor, seq)
	x.mu.Unlock()
}

// createMirrored makes (or finds) the history of topic name, mirrored by
// x: seq is the message that makes it (0: a SUBSCRIBE does). Nil before
// the mirror started, or when the broker-wide bound leaves no room.
func (sp *space) createMirrored(name string, x *historyMirror, seq uint64) *topicHistory {
	x.mu.Lock()
	epoch, first := x.epoch, x.floor+1
	x.mu.Unlock()
	if epoch == "" {
		return nil
	}
	if seq != 0 {
		// While the mirror loads what the stream held, a topic's first
		// message seen is the oldest of its retained run.
		first = min(first, seq)
	}
	return sp.createHistory(name, x.rule, epoch, first)
}

// replayMirrored is replayStart for a history the cluster keeps: the
// index of the first entry to replay (h.count: none), whether everything
// asked for is here, and the seq up to which the subscription skips what
// the mirror delivers (an offset this node has not reached yet: everything
// after it comes live, in order). Caller holds mu.
func (h *topicHistory) replayMirrored(req historyRequest, asked bool) (start int, recovered bool, skip uint64) {
	epoch, pos, quiet, gapEnd := h.mirror.state()
	switch {
	case !asked:
		return h.count, false, 0
	case epoch != h.epoch:
		return 0, false, 0 // a lifetime being dropped (Start)
	case req.resume:
		x := req.seq
		switch {
		case req.epoch != h.epoch:
			return 0, false, 0
		case x > pos && x >= quiet:
			return h.count, true, x
		case pos < quiet:
			// Still loading what the stream held up to quiet: what of it
			// is not here yet will not be delivered as new.
			return h.after(x), false, 0
		}
		return h.after(x), x+1 >= max(h.first, gapEnd), 0
	}
	// Offsets of one topic are not consecutive here: everything asked for
	// is known only when that many are retained.
	start = max(0, h.count-req.last)
	recovered = req.last <= h.count && pos >= quiet && (start == h.count || gapEnd <= h.entry(start).seq)
	return start, recovered, 0
}

// latestMirrored is the offset a SUBSCRIBE's RECEIPT names for a history
// the cluster keeps: the mirror's position (or the offset a resume skips
// to, when the mirror has not reached it), after which everything of the
// topic is still to come. Caller holds mu.
func (h *topicHistory) latestMirrored(skip uint64) string {
	_, pos, _, _ := h.mirror.state()
	return h.token(max(h.next-1, pos, skip))
}
