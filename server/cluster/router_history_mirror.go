package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// run is the mirror's goroutine: one session after another until the
// router closes, pausing after each (growing while sessions make no
// progress), so a stream that cannot be made or read never spins.
func (m *historyMirror) run() {
	r := m.r
	defer r.wg.Done()
	backoff := time.Duration(0)
	for r.ctx.Err() == nil {
		progressed, err := m.session()
		// Not running: not caught up, until the next session's Start.
		m.caughtUp.Store(false)
		if r.ctx.Err() != nil {
			return
		}
		if progressed {
			backoff = 0
		}
		level := slog.LevelDebug // an outage logs once, not every retry
		if backoff == 0 {
			level = slog.LevelWarn
		}
		backoff = min(max(2*backoff, feedBackoffMin), feedBackoffMax)
		r.log.Log(r.ctx, level, "history mirror: restarting", "vhost", m.key.vhost, "pattern", m.spec.Pattern,
			"stream", m.vs.name, "err", err, "retry_in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-r.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// session makes sure the stream exists, tells the sink its epoch and last
// sequence, and mirrors it from where the sink says until something fails.
// progressed: some message was read.
func (m *historyMirror) session() (progressed bool, err error) {
	r := m.r
	ctx, cancel := context.WithTimeout(r.ctx, r.cfg.PublishTimeout)
	defer cancel()
	if err := m.vs.ensure(ctx); err != nil {
		return false, err
	}
	st, err := r.js.Stream(ctx, m.vs.name)
	if err != nil {
		return false, fmt.Errorf("cluster: history stream %s: %w", m.vs.name, err)
	}
	info := st.CachedInfo()
	epoch, err := historyEpoch(info.Created)
	if err != nil {
		return false, err
	}
	r.historyStreamKnown(m.vs)
	last := info.State.LastSeq
	from := max(m.sink.Start(epoch, last), 1)
	m.begin(last, from)
	cons, err := r.js.CreateConsumer(ctx, m.vs.name, m.consumerConfig(from))
	if err != nil {
		return false, fmt.Errorf("cluster: history stream %s: consumer: %w", m.vs.name, err)
	}
	defer m.dropConsumer(cons.CachedInfo().Name)
	// The consumer was made between two looks at the stream that found it
	// created at the same time: it reads the incarnation whose epoch Start
	// was given, not one made since.
	again, err := st.Info(ctx)
	if err != nil {
		return false, fmt.Errorf("cluster: history stream %s: %w", m.vs.name, err)
	}
	if !again.Created.Equal(info.Created) {
		return false, errEpochMoved
	}
	cancel()
	r.log.Debug("history mirror: started", "vhost", m.key.vhost, "pattern", m.spec.Pattern,
		"epoch", epoch, "last", last, "from", from)
	return m.consume(cons)
}

// begin records a Start's answer.
func (m *historyMirror) begin(last, from uint64) {
	m.last.Store(last)
	m.done.Store(from - 1)
	m.known.Store(max(last, from-1))
	m.caughtUp.Store(from > last)
	m.started.Store(true)
}

// consumerConfig is the mirror's ephemeral consumer reading every subject
// of the stream from sequence from.
func (m *historyMirror) consumerConfig(from uint64) jetstream.ConsumerConfig {
	cfg := jetstream.ConsumerConfig{
		Description:       "stompbox topic history mirror of node " + m.r.cfg.Node,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		ReplayPolicy:      jetstream.ReplayInstantPolicy,
		InactiveThreshold: historyConsumerInactive,
		MemoryStorage:     true,
		Replicas:          1,
	}
	if from > 1 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = from
	}
	return cfg
}

// dropConsumer deletes a session's consumer, best effort: one left behind
// goes after historyConsumerInactive.
func (m *historyMirror) dropConsumer(name string) {
	r := m.r
	if !r.nc.IsConnected() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), historyDeleteWait)
	defer cancel()
	if err := r.js.DeleteConsumer(ctx, m.vs.name, name); err != nil {
		r.log.Debug("history mirror: consumer not deleted", "stream", m.vs.name, "consumer", name, "err", err)
	}
}

// consume pulls the consumer's messages, in order, into the sink until a
// pull fails, a message is missed or the router closes. Each pull is
// bounded in messages and bytes, so is what the mirror holds.
func (m *historyMirror) consume(cons jetstream.Consumer) (progressed bool, err error) {
	r := m.r
	maxBytes := max(historyFetchBytes, int(r.nc.MaxPayload())+64<<10)
	var cseq uint64 // the consumer sequence of the last message read
	for {
		fctx, cancel := context.WithTimeout(r.ctx, historyFetchWait)
		batch, err := cons.Fetch(historyFetchBatch, jetstream.FetchContext(fctx), jetstream.FetchMaxBytes(maxBytes))
		if err != nil {
			cancel()
			return progressed, fmt.Errorf("cluster: history fetch: %w", err)
		}
		n := 0
		for jm := range batch.Messages() {
			n++
			md, err := jm.Metadata()
			if err != nil {
				cancel()
				return progressed, fmt.Errorf("cluster: history message: %w", err)
			}
			// An AckNone consumer never redelivers: a message lost on the
			// way (a pull that ended while it travelled) is a gap, and the
			// next session reads on from what the sink has.
			if md.Sequence.Consumer != cseq+1 {
				cancel()
				return progressed, fmt.Errorf("%w: %d after %d", errHistoryGap, md.Sequence.Consumer, cseq)
			}
			cseq = md.Sequence.Consumer
			m.handle(jm, md)
			progressed = true
		}
		berr := batch.Error()
		cancel()
		if r.ctx.Err() != nil {
			return progressed, r.ctx.Err()
		}
		// A pull whose wait the server did not end in time ends at its
		// context's deadline: nothing more came, as with the server's end.
		if berr != nil && !errors.Is(berr, context.DeadlineExceeded) {
			return progressed, fmt.Errorf("cluster: history fetch: %w", berr)
		}
		if n == 0 {
			if err := m.idle(cons); err != nil {
				return progressed, err
			}
		}
	}
}

// handle hands the sink one message of the stream, or skips (and counts)
// one that does not decode.
func (m *historyMirror) handle(jm jetstream.Msg, md *jetstream.MsgMetadata) {
	r := m.r
	seq := md.Sequence.Stream
	if seq > m.done.Load() {
		msg, err := decodeMessage(jm.Data())
		topic, ok := topicOfSubject(m.base, jm.Subject())
		if err == nil && !ok {
			err = fmt.Errorf("%w: subject %q names no topic", errCodec, jm.Subject())
		}
		if err != nil {
			r.history.met.decodeErrors.Inc()
			r.log.Warn("history mirror: message skipped", "stream", m.vs.name, "seq", seq, "err", err)
		} else {
			m.sink.Deliver(seq, topic, msg, md.Timestamp.UnixMilli())
			r.history.met.mirrored.Inc()
		}
		m.done.Store(seq)
	}
	if k := seq + md.NumPending; k > m.known.Load() {
		m.known.Store(k)
	}
	if seq >= m.last.Load() || md.NumPending == 0 {
		m.caughtUp.Store(true)
	}
}

// idle follows a pull that brought nothing. Until the mirror has caught up
// it asks the consumer whether anything is pending (the last messages of
// Start's may be gone, by age or per-topic limit, and never come): none
// means caught up.
func (m *historyMirror) idle(cons jetstream.Consumer) error {
	if m.caughtUp.Load() {
		m.known.Store(m.done.Load())
		return nil
	}
	r := m.r
	ctx, cancel := context.WithTimeout(r.ctx, r.cfg.PublishTimeout)
	defer cancel()
	info, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("cluster: history consumer: %w", err)
	}
	m.known.Store(m.done.Load() + info.NumPending)
	if info.NumPending == 0 {
		m.caughtUp.Store(true)
	}
	return nil
}

// historyStreamKnown marks vs existing when nothing is making it: publishes
// go to it directly. (While a publish makes it, ensureAndFlush marks it
// once the publishes that waited are sent, to keep their order.)
func (r *router) historyStreamKnown(vs *vhostStream) {
	r.queues.mu.Lock()
	if vs.state == streamUnknown {
		vs.state = streamReady
	}
	r.queues.mu.Unlock()
}
