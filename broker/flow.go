package broker

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Flow control, broker side: who waits for room, who is woken when it
// frees, and how long producers were blocked. The session side (held
// frames, pausing the driver) is in flow_session.go.

// FullPolicy is what a producer meets when a bound on input is full.
type FullPolicy uint8

// The policies of Config.FullPolicy.
const (
	// FullBlock slows the producer down: the frame waits and is retried
	// once room frees, and the driver stops reading the connection when
	// its held input passes its budget. The default.
	FullBlock FullPolicy = iota
	// FullError answers ERROR limit-exceeded (retryable) and closes.
	FullError
)

// String returns "block" or "error", the configuration's spelling.
func (p FullPolicy) String() string {
	if p == FullError {
		return "error"
	}
	return "block"
}

// ParseFullPolicy reads "block" or "error".
func ParseFullPolicy(s string) (FullPolicy, error) {
	switch s {
	case "block", "":
		return FullBlock, nil
	case "error":
		return FullError, nil
	}
	return FullBlock, fmt.Errorf("full policy %q: want block or error", s)
}

// flowState is the broker-wide part of flow control.
type flowState struct {
	// totalWaiting mirrors len(totalWaiters), so the dequeue path pays one
	// atomic load when nobody waits for the broker-wide total.
	totalWaiting atomic.Int32
	// totalWake is the queued-bytes level at which the total's waiters are
	// woken: its low-water mark, lower when a waiter needs more room.
	totalWake    atomic.Int64
	mu           sync.Mutex
	totalWaiters map[*Session]struct{} // guarded by mu

	// Metrics, by reason; guarded by statsMu. Blocking and unblocking are
	// rare next to messages, so a mutex keeps the three consistent for a
	// scrape. blockedSeconds at time t is done + count*t - startSum.
	statsMu  sync.Mutex
	count    [fullReasonCount]int64 // connections blocked now
	startSum [fullReasonCount]int64 // sum of their start times (unix ns)
	done     [fullReasonCount]int64 // ns blocked by blocks that ended
	reported [fullReasonCount]int64 // last ns reported: a counter never goes down
}

// enter counts a connection blocked for r from now.
func (f *flowState) enter(r FullReason, now time.Time) {
	f.statsMu.Lock()
	f.count[r]++
	f.startSum[r] += now.UnixNano()
	f.statsMu.Unlock()
}

// leave ends a block for r that started at since.
func (f *flowState) leave(r FullReason, since, now time.Time) {
	f.statsMu.Lock()
	f.count[r]--
	f.startSum[r] -= since.UnixNano()
	f.done[r] += max(0, now.Sub(since).Nanoseconds())
	f.statsMu.Unlock()
}

// blockedStats returns, by reason, the connections blocked now and the
// seconds blocked so far (ongoing blocks included).
func (f *flowState) blockedStats(now time.Time) (count [fullReasonCount]int64, seconds [fullReasonCount]float64) {
	f.statsMu.Lock()
	defer f.statsMu.Unlock()
	for r := range fullReasonCount {
		ns := f.done[r] + f.count[r]*now.UnixNano() - f.startSum[r]
		ns = max(ns, f.reported[r])
		f.reported[r] = ns
		count[r] = f.count[r]
		seconds[r] = float64(ns) / 1e9
	}
	return count, seconds
}

// lowWater is the mark a bound must drain to before its waiters are
// woken: 7/8 of it (at least one below it), so a producer is not woken
// for every freed slot.
func lowWater(limit int) int { return limit - max(1, limit/8) }

// fullErr is the FullQueue error of q for input of need bytes, naming q
// so the producer can wait for it.
func (q *queue) fullErr(detail string, need int) *stompError {
	e := fullErr(FullQueue, detail)
	e.fullQueue, e.fullNeed = q, need
	return e
}

// wait registers s to be poked once q drains to its low-water mark, or
// further if s needs need bytes. It reports false, registering nothing,
// when q has that room already (or is gone): the refusal raced with a
// consumer, and the caller retries soon on its timer instead.
func (q *queue) wait(s *Session, need int) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	cfg := &q.b.cfg
	wake := min(lowWater(cfg.MaxQueueBytes), cfg.MaxQueueBytes-need)
	if q.deleted || q.count+q.reservedCount <= lowWater(cfg.MaxQueueMessages) && q.bytes+q.reservedBytes <= wake {
		return false
	}
	if q.waiters == nil {
		q.waiters = make(map[*Session]struct{})
		q.wakeBytes = wake
	}
	q.wakeBytes = min(q.wakeBytes, wake)
	q.waiters[s] = struct{}{}
	return true
}

// unwait forgets s (the session ended or now waits for something else).
func (q *queue) unwait(s *Session) {
	q.mu.Lock()
	delete(q.waiters, s)
	if len(q.waiters) == 0 {
		q.waiters = nil
	}
	q.mu.Unlock()
}

// wakeWaitersLocked pokes every waiter once q has drained to its
// low-water mark, counting what open transactions reserved. Poke never
// blocks, so it may run under q.mu.
func (q *queue) wakeWaitersLocked() {
	if q.count+q.reservedCount > lowWater(q.b.cfg.MaxQueueMessages) || q.bytes+q.reservedBytes > q.wakeBytes {
		return
	}
	for s := range q.waiters {
		s.t.Poke()
	}
	q.waiters = nil
}

// waitTotal registers s to be poked once all queues together drain to the
// low-water mark of MaxTotalQueuedBytes, or further if s needs need
// bytes; false (nothing registered) when they already have.
func (b *Broker) waitTotal(s *Session, need int) bool {
	f := &b.flow
	f.mu.Lock()
	defer f.mu.Unlock()
	wake := int64(min(lowWater(b.cfg.MaxTotalQueuedBytes), b.cfg.MaxTotalQueuedBytes-need))
	before := f.totalWake.Load()
	if len(f.totalWaiters) == 0 || wake < before {
		f.totalWake.Store(wake)
	}
	if f.totalWaiters == nil {
		f.totalWaiters = make(map[*Session]struct{})
	}
	f.totalWaiters[s] = struct{}{}
	f.totalWaiting.Store(int32(len(f.totalWaiters)))
	// Stored before loading queuedBytes, as dropLocked subtracts before it
	// loads totalWaiting: one of the two sees the other.
	if b.queuedBytes.Load() <= wake {
		delete(f.totalWaiters, s)
		f.totalWaiting.Store(int32(len(f.totalWaiters)))
		f.totalWake.Store(before)
		return false
	}
	return true
}

// unwaitTotal forgets s.
func (b *Broker) unwaitTotal(s *Session) {
	f := &b.flow
	f.mu.Lock()
	delete(f.totalWaiters, s)
	f.totalWaiting.Store(int32(len(f.totalWaiters)))
	f.mu.Unlock()
}

// wakeTotalWaiters pokes the total's waiters once it has drained.
func (b *Broker) wakeTotalWaiters() {
	if b.queuedBytes.Load() > b.flow.totalWake.Load() {
		return
	}
	f := &b.flow
	f.mu.Lock()
	for s := range f.totalWaiters {
		s.t.Poke()
	}
	clear(f.totalWaiters)
	f.totalWaiting.Store(0)
	f.mu.Unlock()
}
