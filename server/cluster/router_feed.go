package cluster

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stompbox/stompbox/broker"
)

// A queue's local consumers are fed from one durable pull consumer that
// every node shares (its name derived from the queue's subject), so the
// nodes compete for the queue's messages. Each feed is one goroutine: it
// fetches what the local queue has credit for, offers each message, and
// keeps the unsettled ones; the router's keepAlive tells JetStream every
// AckWait/3 that this node is still working on them, so only a dead (or
// stopped) node's messages come back after AckWait.

const (
	// feedMaxBatch bounds one Fetch.
	feedMaxBatch = 256
	// feedFetchWait bounds one Fetch's wait for messages, and so how long
	// a feed runs on after Stop.
	feedFetchWait = time.Second
	// feedIdleWait is the safety net when a queue has no credit and More
	// is never called.
	feedIdleWait = time.Second
	// feedBackoffMin and feedBackoffMax bound the pause after an error
	// (NATS down, stream or consumer gone).
	feedBackoffMin = 100 * time.Millisecond
	feedBackoffMax = 5 * time.Second
	// queueMaxAckPending bounds the unsettled messages of one queue
	// across all nodes: far above any prefetch, so that the broker's
	// credit, not JetStream, is what limits delivery.
	queueMaxAckPending = 65536
	// queueInactive removes the consumers of queues nobody consumed for
	// that long (a forgotten queue's messages stay in the stream).
	queueInactive = time.Hour
)

// queueFeed feeds one local queue; it implements broker.QueueFeed.
type queueFeed struct {
	r                         *router
	vhost, queue, subj, durab string
	sink                      broker.QueueSink
	more                      chan struct{} // cap 1: credit may have grown
	ctx                       context.Context
	cancel                    context.CancelFunc
}

// ConsumeQueue implements broker.Cluster: it starts the feed's goroutine
// and returns at once.
func (r *router) ConsumeQueue(vhost, queue string, sink broker.QueueSink) broker.QueueFeed {
	subj := queueSubject(r.cfg.Prefix, vhost, queue)
	f := &queueFeed{
		r: r, vhost: vhost, queue: queue, subj: subj,
		durab: queueConsumerName(r.cfg.Prefix, vhost, subj),
		sink:  sink, more: make(chan struct{}, 1),
	}
	f.ctx, f.cancel = context.WithCancel(r.ctx)
	q := &r.queues
	q.mu.Lock()
	if q.closing {
		q.mu.Unlock()
		f.cancel()
		return f
	}
	q.feeds[f] = struct{}{}
	r.wg.Add(1)
	q.mu.Unlock()
	go f.run()
	return f
}

// More implements broker.QueueFeed.
func (f *queueFeed) More() {
	select {
	case f.more <- struct{}{}:
	default:
	}
}

// Stop implements broker.QueueFeed: the goroutine ends once its fetch in
// progress has run out (feedFetchWait). Messages already offered and not
// settled stay kept alive until the broker settles them.
func (f *queueFeed) Stop() { f.cancel() }

// run is the feed's goroutine.
func (f *queueFeed) run() {
	r := f.r
	defer r.wg.Done()
	defer f.detach()
	var cons jetstream.Consumer
	backoff := time.Duration(0)
	fail := func(what string, err error) bool {
		level := slog.LevelDebug // an outage logs once, not every retry
		if backoff == 0 {
			level = slog.LevelWarn
		}
		backoff = min(max(2*backoff, feedBackoffMin), feedBackoffMax)
		r.log.Log(f.ctx, level, "queue feed: "+what+" failed; retrying", "queue", f.queue, "err", err, "retry_in", backoff)
		return f.sleep(backoff)
	}
	for f.ctx.Err() == nil {
		if cons == nil {
			c, err := f.consumer()
			if err != nil {
				if !fail("consumer", err) {
					return
				}
				continue
			}
			cons = c
			r.log.Debug("queue feed: consumer ready", "queue", f.queue, "consumer", f.durab)
		}
		credit := f.sink.Credit()
		if credit <= 0 {
			t := time.NewTimer(feedIdleWait)
			select {
			case <-f.ctx.Done():
			case <-f.more:
			case <-t.C:
			}
			t.Stop()
			continue
		}
		// Stop does not cut the fetch short: a pull request the server
		// still serves would send messages to nobody, and they would
		// come back only after AckWait. The fetch ends within
		// feedFetchWait and what arrives after Stop is given back (Nak)
		// at once.
		batch, err := cons.Fetch(min(credit, feedMaxBatch), jetstream.FetchMaxWait(feedFetchWait))
		if err != nil {
			cons = nil
			if !fail("fetch", err) {
				return
			}
			continue
		}
		for jm := range batch.Messages() {
			f.offer(jm)
		}
		if err := batch.Error(); err != nil {
			cons = nil
			if !fail("fetch", err) {
				return
			}
			continue
		}
		backoff = 0
	}
}

// sleep waits d or until Stop; false: stopped.
func (f *queueFeed) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-f.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// consumer makes sure the queue's stream and shared consumer exist.
func (f *queueFeed) consumer() (jetstream.Consumer, error) {
	r := f.r
	ctx, cancel := context.WithTimeout(f.ctx, r.cfg.PublishTimeout)
	defer cancel()
	q := &r.queues
	q.mu.Lock()
	vs := r.streamLocked(f.vhost)
	ready := vs.state == streamReady
	q.mu.Unlock()
	if !ready {
		if err := r.ensureStream(ctx, vs.name, vs.subjects); err != nil {
			return nil, err
		}
	}
	want := f.consumerConfig()
	// Look first: a queue gets its first local consumer often, its shared
	// consumer is made once; a lookup is a read, a create a proposal that
	// nodes starting together would contend on.
	c, err := r.js.Consumer(ctx, vs.name, f.durab)
	if err == nil && sameConsumer(c.CachedInfo().Config, want) {
		return c, nil
	}
	c, err = r.js.CreateOrUpdateConsumer(ctx, vs.name, want)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		r.streamGone(vs)
	}
	return c, err
}

// consumerConfig is the queue's shared consumer as this node makes it.
func (f *queueFeed) consumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:           f.durab,
		FilterSubject:     f.subj,
		AckPolicy:         jetstream.AckExplicitPolicy,
		AckWait:           f.r.cfg.AckWait,
		MaxDeliver:        -1, // the broker dead-letters by the delivery count itself
		MaxAckPending:     queueMaxAckPending,
		InactiveThreshold: queueInactive,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
	}
}

// sameConsumer reports whether an existing consumer has the settings this
// node would give it.
func sameConsumer(have, want jetstream.ConsumerConfig) bool {
	return have.FilterSubject == want.FilterSubject && have.AckPolicy == want.AckPolicy &&
		have.AckWait == want.AckWait && have.MaxDeliver == want.MaxDeliver &&
		have.MaxAckPending == want.MaxAckPending && have.InactiveThreshold == want.InactiveThreshold
}

// offer hands one fetched message to the queue, or settles it here: Nak
// after Stop (another node takes it), Term when it cannot be decoded.
func (f *queueFeed) offer(jm jetstream.Msg) {
	r := f.r
	if f.ctx.Err() != nil {
		_ = jm.Nak()
		return
	}
	meta, err := jm.Metadata()
	var m *broker.Message
	if err == nil {
		m, err = decodeMessage(jm.Data())
	}
	if err != nil {
		r.log.Warn("undecodable queue message removed", "queue", f.queue, "err", err)
		_ = jm.Term()
		r.met.fed.WithLabelValues("termed").Inc()
		return
	}
	s := &settler{f: f, jm: jm}
	q := &r.queues
	q.hmu.Lock()
	q.held[s] = struct{}{}
	q.hmu.Unlock()
	r.met.pendingAcks.Inc()
	r.met.fed.WithLabelValues("fetched").Inc()
	f.sink.Offer(m, int(meta.NumDelivered), s)
}

// detach runs when the goroutine ends: the feed leaves the keep-alive.
func (f *queueFeed) detach() {
	q := &f.r.queues
	q.mu.Lock()
	delete(q.feeds, f)
	q.mu.Unlock()
}

// keepAlive tells JetStream every AckWait/3 that the messages the live
// feeds hold are still being worked on.
func (r *router) keepAlive() {
	defer r.wg.Done()
	t := time.NewTicker(max(r.cfg.AckWait/3, 10*time.Millisecond))
	defer t.Stop()
	var held []*settler
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
		}
		// A snapshot, so that settling (queueState.hmu) does not wait
		// for the progress messages.
		r.queues.hmu.Lock()
		for s := range r.queues.held {
			held = append(held, s)
		}
		r.queues.hmu.Unlock()
		for _, s := range held {
			if !s.done.Load() {
				_ = s.jm.InProgress()
			}
		}
		clear(held)
		held = held[:0]
	}
}

// settler settles one fed message; it implements broker.Settler. Each
// method only publishes the acknowledgement (no wait for a reply), so it
// does not block; an acknowledgement lost to a disconnection means a
// redelivery after AckWait (at least once).
type settler struct {
	f    *queueFeed
	jm   jetstream.Msg
	done atomic.Bool
}

// Ack implements broker.Settler.
func (s *settler) Ack() { s.settle("acked", s.jm.Ack) }

// Nak implements broker.Settler.
func (s *settler) Nak() { s.settle("nacked", s.jm.Nak) }

// Term implements broker.Settler.
func (s *settler) Term() { s.settle("termed", s.jm.Term) }

func (s *settler) settle(outcome string, send func() error) {
	if !s.done.CompareAndSwap(false, true) {
		return
	}
	f := s.f
	q := &f.r.queues
	q.hmu.Lock()
	_, held := q.held[s]
	delete(q.held, s)
	q.hmu.Unlock()
	if held {
		f.r.met.pendingAcks.Dec()
	}
	f.r.met.fed.WithLabelValues(outcome).Inc()
	if err := send(); err != nil {
		f.r.log.Debug("queue message settle not sent", "queue", f.queue, "outcome", outcome, "err", err)
	}
}
