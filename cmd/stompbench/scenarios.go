package main

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stompbox/stompbox/frames"
)

// readSize is the read buffer of a busy connection.
const readSize = 64 << 10

// noHeartBeat is what every scenario but idle offers: a busy connection
// needs no heart-beats, and a latency consumer sends nothing for long.
var noHeartBeat = frames.HeartBeat{}

// newConsumers opens n subscribed consumers sharing one total.
func (r *runner) newConsumers(n, producers int, expected int64, ack bool, gapless bool, l *ledger) ([]*consumer, chan struct{}, error) {
	done := make(chan struct{})
	total := new(atomic.Int64)
	ks := make([]*consumer, n)
	ackMode, prefetch := "auto", 0
	if ack {
		ackMode, prefetch = "client-individual", r.cfg.Prefetch
	}
	var mu sync.Mutex
	var firstErr error
	r.goAll(n, func(i int) error {
		k := &consumer{r: r, producers: producers, order: newOrder(producers, gapless, fmt.Sprintf("consumer %d", i)),
			ledger: l, ack: ack, total: total, expected: expected, done: done}
		c, _, err := r.open(readSize, noHeartBeat, func(c *conn) { k.c = c; c.onMessage = k.onMessage })
		if err == nil {
			// A receipt makes sure the subscription exists before anything
			// is published (a topic keeps nothing for later subscribers).
			err = c.subscribe(r.ctx, r.cfg.Destination, ackMode, prefetch, true)
		}
		if err != nil {
			mu.Lock()
			firstErr = cmpOr(firstErr, err)
			mu.Unlock()
			return err
		}
		ks[i] = k
		return nil
	})
	if firstErr != nil {
		return nil, nil, firstErr
	}
	return ks, done, nil
}

// cmpOr returns a unless it is nil.
func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// newProducers opens n producers.
func (r *runner) newProducers(n int, persistent bool) ([]*producer, error) {
	ps := make([]*producer, n)
	for i := range ps {
		p := &producer{r: r, enc: newSendEncoder(r.cfg, i, persistent, persistent)}
		var setup func(c *conn)
		if persistent {
			w := r.cfg.Window
			p.tokens = make(chan struct{}, w)
			p.sentAt, p.slotSeq = make([]int64, w), make([]int64, w)
			for s := range p.slotSeq {
				p.slotSeq[s] = -1
			}
			p.receipts = make([]int64, 0, r.cfg.Messages)
			p.warmupNs = r.now() + int64(r.cfg.Warmup)
			setup = func(c *conn) { c.onReceipt = p.onReceipt }
		}
		c, _, err := r.open(readSize, noHeartBeat, setup)
		if err != nil {
			return nil, err
		}
		p.c = c
		ps[i] = p
	}
	return ps, nil
}

// meter measures a rate, leaving out the warm-up.
type meter struct {
	start time.Time
	count func() int64
	mu    sync.Mutex
	from  time.Time // guarded by mu: where measuring starts
	base  int64     // guarded by mu: count at from
	timer *time.Timer
}

func newMeter(warmup time.Duration, count func() int64) *meter {
	m := &meter{start: time.Now(), count: count}
	m.from = m.start
	if warmup > 0 {
		m.timer = time.AfterFunc(warmup, func() {
			m.mu.Lock()
			m.from, m.base = time.Now(), m.count()
			m.mu.Unlock()
		})
	}
	return m
}

// stop returns the measured messages, seconds and rate.
func (m *meter) stop() (int64, float64, float64) {
	end := time.Now()
	if m.timer != nil {
		m.timer.Stop()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.count() - m.base
	secs := end.Sub(m.from).Seconds()
	if secs <= 0 {
		return n, secs, 0
	}
	return n, secs, float64(n) / secs
}

// runQueue is P producers to C consumers on one queue, every message
// acknowledged (client-individual, prefetch-count); persistent adds
// persistent:true and a RECEIPT per SEND within a window.
func (r *runner) runQueue() error {
	cfg := r.cfg
	persistent := cfg.Scenario == ScenarioPersistent
	expected := int64(cfg.Producers) * int64(cfg.Messages)
	l := newLedger(cfg.Producers, int64(cfg.Messages))
	ks, done, err := r.newConsumers(cfg.Consumers, cfg.Producers, expected, true, cfg.Consumers == 1, l)
	if err != nil {
		return err
	}
	ps, err := r.newProducers(cfg.Producers, persistent)
	if err != nil {
		return err
	}
	total := ks[0].total
	m := newMeter(cfg.Warmup, total.Load)
	r.goAll(len(ps), func(i int) error { return ps[i].runBurst(int64(cfg.Messages), nil, 0) })
	waitErr := r.waitFor(done, "deliveries")
	r.res.Messages, r.res.Duration, r.res.Rate = m.stop()
	r.res.Counts = counts(ps, total.Load(), expected)
	if waitErr != nil {
		if n, first := l.missing(); n > 0 {
			r.res.Counts.Lost = n
			return fmt.Errorf("%w: %d of %d messages not delivered (first: %s): %w", errLost, n, expected, first, waitErr)
		}
		return waitErr
	}
	if persistent {
		// A broker may send a SEND's RECEIPT after the message was
		// delivered, and after a later DISCONNECT's (RabbitMQ receipts a
		// persistent SEND once it is confirmed): every window empties
		// first, within the run's timeout.
		for _, p := range ps {
			for len(p.tokens) > 0 && r.ctx.Err() == nil && !r.failed() {
				time.Sleep(time.Millisecond)
			}
		}
		r.disconnectAll()
		var all []int64
		for i, p := range ps {
			if p.acked != int64(cfg.Messages) {
				return fmt.Errorf("producer %d: %d receipts for %d persistent SENDs", i, p.acked, cfg.Messages)
			}
			all = append(all, p.receipts...)
		}
		r.res.Latencies = summarize(all)
	}
	return nil
}

// runTopic is one producer to S subscribers of a topic.
func (r *runner) runTopic() error {
	cfg := r.cfg
	n := int64(cfg.Messages)
	expected := n * int64(cfg.Subscribers)
	ks, done, err := r.newConsumers(cfg.Subscribers, 1, expected, false, true, nil)
	if err != nil {
		return err
	}
	ps, err := r.newProducers(1, false)
	if err != nil {
		return err
	}
	// Keep the slowest subscriber within ~2 MiB of encoded MESSAGEs: far
	// below a broker's slow-consumer limit (stompbox: 8 MiB).
	maxLag := max(int64(2<<20/(cfg.BodySize+256)), 64)
	lag := func(sent int64) int64 {
		slowest := int64(math.MaxInt64)
		for _, k := range ks {
			slowest = min(slowest, k.count.Load())
		}
		return sent - slowest
	}
	total := ks[0].total
	m := newMeter(cfg.Warmup, total.Load)
	r.goAll(1, func(int) error { return ps[0].runBurst(n, lag, maxLag) })
	waitErr := r.waitFor(done, "deliveries")
	r.res.Messages, r.res.Duration, r.res.Rate = m.stop()
	r.res.Counts = counts(ps, total.Load(), expected)
	if waitErr != nil {
		if got := total.Load(); got < expected {
			r.res.Counts.Lost = expected - got
			return fmt.Errorf("%w: %d of %d deliveries missing: %w", errLost, expected-got, expected, waitErr)
		}
		return waitErr
	}
	return nil
}

// runLatency sends at a fixed rate from one producer to one consumer and
// measures each message from the time it was due to be sent, so a stall
// (of the broker or of this process) counts for every message it delays.
func (r *runner) runLatency() error {
	cfg := r.cfg
	interval := time.Second / time.Duration(cfg.Rate)
	n := int64((cfg.Warmup + cfg.Duration) / interval)
	if n <= 0 {
		return fmt.Errorf("-rate %d for %v sends nothing", cfg.Rate, cfg.Duration)
	}
	ks, done, err := r.newConsumers(1, 1, n, false, true, nil)
	if err != nil {
		return err
	}
	k := ks[0]
	k.latency = true
	ps, err := r.newProducers(1, false)
	if err != nil {
		return err
	}
	p := ps[0]
	lags := make([]int64, 0, n)
	start := r.now() + int64(time.Millisecond)
	k.warmupNs = start + int64(cfg.Warmup)
	k.latencies = make([]int64, 0, n)
	m := newMeter(0, k.total.Load)
	r.goAll(1, func(int) error {
		for seq := range n {
			due := start + seq*int64(interval)
			now := r.now()
			if wait := due - now; wait > 0 {
				preciseSleep(time.Duration(wait))
				now = r.now()
			}
			if due >= k.warmupNs {
				lags = append(lags, now-due)
			}
			// Flush unless the next message is already due (catching up).
			if err := p.send(seq, due, now < due+int64(interval)); err != nil {
				return p.writeErr(err)
			}
			if r.failed() {
				return errAborted
			}
		}
		return p.writeErr(p.flush())
	})
	waitErr := r.waitFor(done, "deliveries")
	r.res.Messages, r.res.Duration, r.res.Rate = m.stop()
	r.res.Counts = counts(ps, k.total.Load(), n)
	if waitErr != nil {
		if got := k.total.Load(); got < n {
			r.res.Counts.Lost = n - got
			return fmt.Errorf("%w: %d of %d messages missing: %w", errLost, n-got, n, waitErr)
		}
		return waitErr
	}
	// The consumer's reader is done with latencies once it counted the
	// last message (done is closed after the append).
	r.res.Latencies = summarize(k.latencies)
	r.res.SendLag = summarize(lags)
	return nil
}

// counts sums what the producers sent.
func counts(ps []*producer, received, expected int64) Counts {
	var sent int64
	for _, p := range ps {
		sent += p.sent.Load()
	}
	return Counts{Sent: sent, Received: received, Expected: expected}
}
