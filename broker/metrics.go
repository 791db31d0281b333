package broker

import "github.com/prometheus/client_golang/prometheus"

// collector exposes the broker's counters at scrape time: it reads the
// atomics the hot path already keeps, so serving metrics costs the hot path
// nothing.
type collector struct {
	b           *Broker
	sessions    *prometheus.Desc
	queues      *prometheus.Desc
	queuedBytes *prometheus.Desc
	counters    []counterDesc
}

type counterDesc struct {
	desc  *prometheus.Desc
	value func(*Stats) uint64
}

func newCollector(b *Broker) *collector {
	counter := func(name, help string, value func(*Stats) uint64) counterDesc {
		return counterDesc{desc: prometheus.NewDesc("stompbox_"+name, help, nil, nil), value: value}
	}
	return &collector{
		b:           b,
		sessions:    prometheus.NewDesc("stompbox_sessions", "STOMP sessions open now (all transports).", nil, nil),
		queues:      prometheus.NewDesc("stompbox_queues", "Queues that exist now (including durable subscriptions' and temporary ones).", nil, nil),
		queuedBytes: prometheus.NewDesc("stompbox_queued_bytes", "Bytes of messages held by all queues.", nil, nil),
		counters: []counterDesc{
			counter("messages_published_total", "Messages accepted from SEND.", func(s *Stats) uint64 { return s.Published.Load() }),
			counter("messages_delivered_total", "MESSAGE frames queued to subscribers, redeliveries included.", func(s *Stats) uint64 { return s.Delivered.Load() }),
			counter("messages_redelivered_total", "Deliveries of messages delivered before (NACK, disconnect, recovery).", func(s *Stats) uint64 { return s.Redelivered.Load() }),
			counter("messages_expired_total", "Messages dropped because their expires time passed.", func(s *Stats) uint64 { return s.Expired.Load() }),
			counter("messages_dead_lettered_total", "Messages moved to a dead-letter queue after max redeliveries.", func(s *Stats) uint64 { return s.DeadLettered.Load() }),
			counter("messages_dropped_total", "Messages dropped with nowhere to go (a DLQ's own rejects, full durable backlogs).", func(s *Stats) uint64 { return s.Dropped.Load() }),
			counter("slow_consumers_total", "Sessions closed because their outbound buffer overflowed.", func(s *Stats) uint64 { return s.SlowConsumers.Load() }),
		},
	}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.sessions
	ch <- c.queues
	ch <- c.queuedBytes
	for _, d := range c.counters {
		ch <- d.desc
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	b := c.b
	ch <- prometheus.MustNewConstMetric(c.sessions, prometheus.GaugeValue, float64(b.sessionCount.Load()))
	b.mu.RLock()
	queues := len(b.queues)
	b.mu.RUnlock()
	ch <- prometheus.MustNewConstMetric(c.queues, prometheus.GaugeValue, float64(queues))
	ch <- prometheus.MustNewConstMetric(c.queuedBytes, prometheus.GaugeValue, float64(b.queuedBytes.Load()))
	for _, d := range c.counters {
		ch <- prometheus.MustNewConstMetric(d.desc, prometheus.CounterValue, float64(d.value(&b.stats)))
	}
}
