package broker

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stompbox/stompbox/frames"
)

// Topic history (docs/compliance.md, "Topic history and resume"): a topic
// whose exact name matches a rule of Config.TopicHistory keeps its last
// messages in a ring, and every MESSAGE published to it carries
// offset:<epoch>-<seq>. The epoch (random hex) names one history
// lifetime; seq grows by one per message of the topic. A subscriber may
// ask for what it missed (resume-after) or for the last n (history).
//
// Order: a publish to a history topic takes the topic's lock, assigns the
// next seq, appends to the ring and fans out (outbox pushes, which never
// block) before it lets go, so every subscriber sees the offsets in
// order; a SUBSCRIBE with resume-after or history takes the same lock to
// register the subscription and queue the replay, so nothing published
// falls between the replay and the live stream, and nothing is in both.

// HistoryRule is one entry of Config.TopicHistory: topics whose names
// match Pattern keep their last Size messages, none older than MaxAge.
type HistoryRule struct {
	// Pattern is a topic destination, exact or with wildcards, e.g.
	// "/topic/chat.#".
	Pattern string
	// Size is how many messages each matching topic keeps (> 0).
	Size int
	// MaxAge evicts messages older than this; 0: no age limit.
	MaxAge time.Duration
}

// DefaultMaxHistoryBytes is the default of Config.MaxHistoryBytes.
const DefaultMaxHistoryBytes = 256 << 20

// historyTopicOverhead is what one topic's history counts against
// MaxHistoryBytes before it holds any message: its struct, map entry,
// name and epoch. A retained message counts Message.size() plus
// historyEntryOverhead plus historyHeaderOverhead per header: its
// Message struct, ring slot, id and header slice, with Go's size-class
// rounding, so that the count is the heap it takes (measured in
// BenchmarkHistoryMemory: docs/benchmarks.md).
const (
	historyTopicOverhead  = 256
	historyEntryOverhead  = 256
	historyHeaderOverhead = 48
)

// maxHistoryRequest bounds history:<n>.
const maxHistoryRequest = 1_000_000

// ValidateHistory checks Config.TopicHistory: each pattern a /topic/
// destination (wildcards as whole segments), each size positive, each
// max_age not negative. The error names the first bad rule.
func ValidateHistory(rules []HistoryRule) error {
	var errs []error
	for i, r := range rules {
		name, ok := strings.CutPrefix(r.Pattern, "/topic/")
		switch {
		case !ok || name == "":
			errs = append(errs, fmt.Errorf("topics.history[%d]: pattern %q must be /topic/<name or pattern>", i, r.Pattern))
		case len(r.Pattern) > maxDestinationLength:
			errs = append(errs, fmt.Errorf("topics.history[%d]: pattern longer than %d bytes", i, maxDestinationLength))
		case isWildcard(name) && !validPattern(name):
			errs = append(errs, fmt.Errorf("topics.history[%d]: pattern %q: * and # must each be a whole dot-separated segment", i, r.Pattern))
		}
		if r.Size <= 0 {
			errs = append(errs, fmt.Errorf("topics.history[%d]: size must be > 0 (got %d)", i, r.Size))
		}
		if r.MaxAge < 0 {
			errs = append(errs, fmt.Errorf("topics.history[%d]: max_age must be >= 0 (0: no age limit; got %s)", i, r.MaxAge))
		}
	}
	return errors.Join(errs...)
}

// historyEntry is one retained message.
type historyEntry struct {
	m   *Message // carries its offset header
	at  int64    // publish time, ms since the epoch (max_age)
	seq uint64   // its offset's seq: consecutive on a single node, increasing in a cluster
}

// topicHistory is the history of one exact topic name.
type topicHistory struct {
	name   string        // immutable: topic name without /topic/
	key    string        // immutable: its name in journal records (historyKey), made once
	rule   int           // immutable: index of the matching rule
	size   int           // immutable: the rule's Size
	maxAge int64         // immutable: the rule's MaxAge in ms; 0 none
	epoch  string        // immutable once serving (recovery may renew it): this history lifetime
	hb     *historyBytes // immutable: the broker-wide account

	mu    sync.Mutex
	ring  []historyEntry // guarded by mu: circular, cap grows to size
	head  int            // guarded by mu: index of the oldest entry
	count int            // guarded by mu
	// first (guarded by mu): every message of the topic from seq first
	// on is retained (on a single node the oldest retained one; == next
	// when none).
	first uint64
	next  uint64 // guarded by mu: seq after the newest (on a single node, the seq the next message gets; the first is 1)
	bytes int64  // guarded by mu: what this topic counts in hb
	trim  uint64 // guarded by mu: journaled trim point (history_journal.go)
	// removed (guarded by mu) is set when the topic's history left its
	// table (dropIdleLocked, recovery): whoever locks it then looks the
	// topic up again (lockHistory).
	removed bool
	// sealNext (guarded by mu; recovery only) is the next seq of a
	// replayed seal that no history record of the topic followed; 0:
	// none (history_seal.go).
	sealNext uint64
	// mirror (immutable) is the cluster's mirror of the rule when the
	// cluster keeps the history (cluster_history.go); nil on a single
	// node.
	mirror *historyMirror
	// dirty is set when a message of this history may be missing from
	// the journal (an append refused, or failed after it was queued): a
	// clean shutdown then does not seal it (history_seal.go). Set from
	// the journal's goroutine too.
	dirty atomic.Bool
}

// historyBytes is the broker-wide account of retained history, against
// Config.MaxHistoryBytes.
type historyBytes struct {
	limit    int64 // immutable
	bytes    atomic.Int64
	messages atomic.Int64
	topics   atomic.Int64
}

// historyTable is one virtual host's histories, by exact topic name.
type historyTable struct {
	rules []HistoryRule // immutable: the valid rules, in order
	// mirrors (immutable once the space is made; one per rule) are set
	// when the cluster keeps the histories (cluster_history.go).
	mirrors []*historyMirror

	mu      sync.RWMutex
	topics  map[string]*topicHistory // guarded by mu
	sweptAt int64                    // guarded by mu: last dropIdleLocked, ms
}

// historySweepEvery is how often (ms) a new topic that finds the
// broker-wide bound reached may look for idle histories to drop: the scan
// takes time proportional to the histories, so it runs at most once a
// second.
const historySweepEvery = 1000

// newHistoryTable returns nil when no rule is configured: publishing then
// costs nothing more than a nil check.
func newHistoryTable(rules []HistoryRule) *historyTable {
	if len(rules) == 0 {
		return nil
	}
	return &historyTable{rules: rules, topics: make(map[string]*topicHistory)}
}

// ruleFor returns the index of the first rule matching topic name, or -1.
func (t *historyTable) ruleFor(name string) int {
	for i, r := range t.rules {
		if topicMatch(r.Pattern[len("/topic/"):], name) {
			return i
		}
	}
	return -1
}

// newEpoch draws a history lifetime's epoch: 32 random bits in lowercase
// hex.
func newEpoch() string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand never fails on supported platforms
	return hex.EncodeToString(b[:])
}

// history returns the history of topic name, created when a rule matches
// (nil: the topic keeps none). A topic that would take the broker-wide
// account past its limit gets none either (its messages then carry no
// offset) until room frees.
func (sp *space) history(name string) *topicHistory { return sp.historyAt(name, nil, 0) }

// historyAt is history; in cluster mode (cluster_history.go) a history is
// made from its rule's mirror, and the mirror x delivering seq of the
// topic passes itself (nil otherwise): a topic its rule does not match
// here (another node's rules differ) gets no history.
func (sp *space) historyAt(name string, x *historyMirror, seq uint64) *topicHistory {
	t := sp.hist
	if t == nil {
		return nil
	}
	t.mu.RLock()
	h := t.topics[name]
	t.mu.RUnlock()
	if h != nil {
		return h
	}
	rule := t.ruleFor(name)
	switch {
	case rule < 0:
		return nil
	case t.mirrors == nil:
		return sp.createHistory(name, rule, newEpoch(), 1)
	case x == nil:
		return sp.createMirrored(name, t.mirrors[rule], 0)
	case x.rule == rule:
		return sp.createMirrored(name, x, seq)
	}
	return nil
}

// createHistory makes (or finds) the history of name under rule, starting
// at epoch and seq next (recovery passes the journaled ones).
func (sp *space) createHistory(name string, rule int, epoch string, next uint64) *topicHistory {
	t := sp.hist
	t.mu.Lock()
	defer t.mu.Unlock()
	if h := t.topics[name]; h != nil {
		return h
	}
	hb := &sp.b.hist
	if hb.bytes.Load()+historyTopicOverhead > hb.limit {
		if now := sp.b.nowMs(); now-t.sweptAt >= historySweepEvery {
			t.sweptAt = now
			sp.dropIdleLocked(now)
		}
		if hb.bytes.Load()+historyTopicOverhead > hb.limit {
			return nil
		}
	}
	r := t.rules[rule]
	h := &topicHistory{name: name, key: sp.historyKey(name), rule: rule, size: r.Size, maxAge: r.MaxAge.Milliseconds(), epoch: epoch, hb: hb,
		first: next, next: next, trim: next - 1, bytes: historyTopicOverhead}
	if t.mirrors != nil {
		h.mirror = t.mirrors[rule]
	}
	hb.bytes.Add(historyTopicOverhead)
	hb.topics.Add(1)
	t.topics[name] = h
	return h
}

// dropIdleLocked removes the histories that retain nothing (once max_age
// is applied) and that no exact-name subscriber is listening to, so that
// topic names used once do not keep the broker-wide bound taken for
// ever. Such a topic starts a new epoch when it is published to again: a
// resume-after its old offsets gets recovered:false, which is true, as
// nothing of it is retained. Caller holds t.mu.
func (sp *space) dropIdleLocked(now int64) {
	t := sp.hist
	for name, h := range t.topics {
		h.mu.Lock()
		h.expire(now)
		if h.count == 0 && !sp.topics.hasExact(name) {
			if h.mirror != nil {
				h.mirror.raiseFloor(h.first - 1) // what it knew of its topic goes
			}
			h.removed = true
			sp.journalHistoryDrop(h)
			delete(t.topics, name)
			sp.b.hist.bytes.Add(-h.bytes)
			sp.b.hist.topics.Add(-1)
		}
		h.mu.Unlock()
	}
}

// lockHistory returns the history of topic name locked, or nil when it
// keeps none.
func (sp *space) lockHistory(name string) *topicHistory { return sp.lockHistoryAt(name, nil, 0) }

// lockHistoryAt is lockHistory with historyAt's arguments. A history
// removed between the lookup and the lock is looked up again (a bounded
// number of times: each removal needs a sweep, at most one a second, or a
// new lifetime of the cluster's history).
func (sp *space) lockHistoryAt(name string, x *historyMirror, seq uint64) *topicHistory {
	for range 8 {
		h := sp.historyAt(name, x, seq)
		if h == nil {
			return nil
		}
		h.mu.Lock()
		if !h.removed {
			return h
		}
		h.mu.Unlock()
	}
	return nil
}

// token is the offset of seq in this history.
func (h *topicHistory) token(seq uint64) string {
	return h.epoch + "-" + strconv.FormatUint(seq, 10)
}

func entryBytes(m *Message) int64 {
	return int64(m.size() + historyEntryOverhead + historyHeaderOverhead*len(m.Headers))
}

// at returns the entry of seq, which must be retained, on a single node
// (consecutive seqs). Caller holds mu.
func (h *topicHistory) at(seq uint64) historyEntry {
	return h.ring[(h.head+int(seq-h.first))%len(h.ring)]
}

// entry returns the i-th oldest retained entry (0 <= i < count). Caller
// holds mu.
func (h *topicHistory) entry(i int) historyEntry {
	return h.ring[(h.head+i)%len(h.ring)]
}

// after returns the index of the oldest retained entry whose seq is
// greater than seq (count: none). Caller holds mu.
func (h *topicHistory) after(seq uint64) int {
	lo, hi := 0, h.count
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if h.entry(mid).seq <= seq {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

// evictOldest drops the oldest entry. Caller holds mu.
func (h *topicHistory) evictOldest() {
	e := h.ring[h.head]
	h.ring[h.head] = historyEntry{}
	h.head = (h.head + 1) % len(h.ring)
	h.count--
	// In a cluster the next retained seq may be further on: the stream's
	// other topics took the seqs between (a message of this topic the
	// mirror never read shows as a gap: historyMirror.gapEnd).
	h.first = max(h.first, e.seq+1)
	n := entryBytes(e.m)
	h.bytes -= n
	h.hb.bytes.Add(-n)
	h.hb.messages.Add(-1)
}

// expire drops what max_age says is too old at now. Caller holds mu.
func (h *topicHistory) expire(now int64) {
	if h.maxAge <= 0 {
		return
	}
	for h.count > 0 && now-h.ring[h.head].at > h.maxAge {
		h.evictOldest()
	}
}

// retain appends m (seq h.next-1, newer than every retained one) to the
// ring, evicting the oldest past the rule's size, its max_age or the
// broker-wide bound. A message that does not fit the bound even alone is
// not retained: the ring stays the topic's newest messages, or empty.
// Caller holds mu.
func (h *topicHistory) retain(m *Message, seq uint64, now int64) {
	h.expire(now)
	n := entryBytes(m)
	for h.count > 0 && (h.count >= h.size || h.hb.bytes.Load()+n > h.hb.limit) {
		h.evictOldest()
	}
	if h.hb.bytes.Load()+n > h.hb.limit {
		h.first = h.next // nothing retained: a resume from before is not recovered
		return
	}
	if h.count == len(h.ring) {
		h.grow()
	}
	h.ring[(h.head+h.count)%len(h.ring)] = historyEntry{m: m, at: now, seq: seq}
	h.count++
	h.bytes += n
	h.hb.bytes.Add(n)
	h.hb.messages.Add(1)
}

// grow doubles the ring up to the rule's size. Caller holds mu.
func (h *topicHistory) grow() {
	ring := make([]historyEntry, min(h.size, max(8, 2*len(h.ring))))
	for i := range h.count {
		ring[i] = h.ring[(h.head+i)%len(h.ring)]
	}
	h.ring, h.head = ring, 0
}

// publishHistory is publishTopic for a topic with history, whose lock
// the caller took (lockHistory): the offset is assigned, the message
// retained and fanned out under it; it unlocks. feeds is false when
// durable subscriptions' feeds already have m (a pipelined persistent
// SEND).
func (sp *space) publishHistory(h *topicHistory, m *Message, feeds bool) {
	now := sp.b.nowMs()
	seq := h.next
	h.next++
	m = m.withOffset(h.epoch, seq)
	h.retain(m, seq, now)
	sp.journalHistory(h, m, seq, now)
	sp.fanOut(h.name, m, feeds)
	h.mu.Unlock()
}

// withOffset returns a copy of m carrying offset:<epoch>-<seq>, its 1.2
// headers extended once for all subscribers; the body is shared. Three
// allocations: the Message, its header slice, and its 1.2 encoding, in
// which the new header's key and value live (neither needs escaping:
// "offset", hex digits, "-" and decimal digits).
func (m *Message) withOffset(epoch string, seq uint64) *Message {
	c := *m
	enc := make([]byte, len(m.enc12), len(m.enc12)+len("offset:-\n")+len(epoch)+20)
	copy(enc, m.enc12)
	keyAt := len(enc)
	enc = append(enc, "offset:"...)
	valueAt := len(enc)
	enc = append(enc, epoch...)
	enc = append(enc, '-')
	enc = strconv.AppendUint(enc, seq, 10)
	end := len(enc)
	enc = append(enc, '\n')
	c.enc12 = enc
	c.Headers = append(m.Headers[:len(m.Headers):len(m.Headers)],
		frames.Header{Key: enc[keyAt : keyAt+len("offset") : keyAt+len("offset")], Value: enc[valueAt:end:end]})
	return &c
}

// parseOffset reads a token <epoch>-<seq>: epoch 1 to 16 lowercase hex
// digits, seq a decimal uint64 without sign or leading zeros.
func parseOffset(s string) (epoch string, seq uint64, ok bool) {
	epoch, num, found := strings.Cut(s, "-")
	if !found || epoch == "" || len(epoch) > 16 || num == "" || len(num) > 20 || (num[0] == '0' && len(num) > 1) {
		return "", 0, false
	}
	for i := range len(epoch) {
		c := epoch[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return "", 0, false
		}
	}
	for i := range len(num) {
		if num[i] < '0' || num[i] > '9' {
			return "", 0, false
		}
	}
	seq, err := strconv.ParseUint(num, 10, 64)
	if err != nil {
		return "", 0, false
	}
	return epoch, seq, true
}

// HistoryStats is what Broker.HistoryStats reports.
type HistoryStats struct {
	Topics   int64 // topics with a history
	Messages int64 // retained messages
	Bytes    int64 // what they count against Config.MaxHistoryBytes
}

// HistoryStats returns the retained history of all virtual hosts.
func (b *Broker) HistoryStats() HistoryStats {
	return HistoryStats{Topics: b.hist.topics.Load(), Messages: b.hist.messages.Load(), Bytes: b.hist.bytes.Load()}
}
