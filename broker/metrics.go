package broker

import (
	"cmp"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stompbox/stompbox/frames"
)

// collector exposes the broker's counters at scrape time: it reads the
// atomics the hot path already keeps, so serving metrics costs the hot path
// nothing. Every label set is fixed (commands, close reasons, error codes,
// queue kinds) except destination names, which appear only for the
// Config.DestinationMetrics deepest destinations.
type collector struct {
	b                    *Broker
	sessions             *prometheus.Desc
	queues               *prometheus.Desc
	queuedBytes          *prometheus.Desc
	framesIn, framesOut  *prometheus.Desc
	heartbeatsIn         *prometheus.Desc
	disconnects          *prometheus.Desc
	errors               *prometheus.Desc
	queueMessages        *prometheus.Desc
	queueConsumers       *prometheus.Desc
	topics               *prometheus.Desc
	topicSubscribers     *prometheus.Desc
	destinationMessages  *prometheus.Desc
	destinationConsumers *prometheus.Desc
	heartbeatTimeouts    *prometheus.Desc
	blocked              *prometheus.Desc
	blockedSeconds       *prometheus.Desc
	counters             []counterDesc
}

type counterDesc struct {
	desc  *prometheus.Desc
	value func(*Stats) uint64
}

// The kinds of queue, the values of the kind label.
var queueKinds = [...]string{"queue", "durable", "temp", "dlq"}

func newCollector(b *Broker) *collector {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("stompbox_"+name, help, labels, nil)
	}
	counter := func(name, help string, value func(*Stats) uint64) counterDesc {
		return counterDesc{desc: desc(name, help), value: value}
	}
	return &collector{
		b:                    b,
		sessions:             desc("sessions", "STOMP sessions open now (all transports)."),
		queues:               desc("queues", "Queues that exist now (including durable subscriptions' and temporary ones)."),
		queuedBytes:          desc("queued_bytes", "Bytes of messages held by all queues."),
		framesIn:             desc("frames_received_total", "STOMP frames received from clients, by command.", "command"),
		framesOut:            desc("frames_sent_total", "STOMP frames sent to clients, by command.", "command"),
		heartbeatsIn:         desc("heartbeats_received_total", "Heart-beat EOLs received from clients."),
		disconnects:          desc("disconnects_total", "Sessions ended, by close reason.", "reason"),
		errors:               desc("errors_total", "ERROR frames sent, by error-code.", "code"),
		queueMessages:        desc("queue_messages", "Messages held by queues (ready and unacknowledged), by kind of queue.", "kind"),
		queueConsumers:       desc("queue_consumers", "Consumers of queues, by kind of queue.", "kind"),
		topics:               desc("topics", "Topics with at least one exact-name subscriber."),
		topicSubscribers:     desc("topic_subscribers", "Topic subscriptions, wildcard ones included."),
		destinationMessages:  desc("destination_messages", "Messages held by one destination (only the deepest destinations, see admin.destination_metrics).", "destination"),
		destinationConsumers: desc("destination_consumers", "Consumers or subscribers of one destination (only the deepest destinations, see admin.destination_metrics).", "destination"),
		heartbeatTimeouts:    desc("heartbeat_timeouts_total", "Sessions closed because the client sent nothing for longer than its heart-beat interval times the tolerance (the heartbeat-timeout disconnects)."),
		blocked:              desc("blocked_connections", "Connections whose producer is blocked (or throttled, reason rate) now, by the bound that is full.", "reason"),
		blockedSeconds:       desc("blocked_seconds_total", "Time connections spent blocked (or throttled, reason rate), by the bound that was full.", "reason"),
		counters: []counterDesc{
			counter("connects_total", "CONNECT frames answered with CONNECTED.", func(s *Stats) uint64 { return s.Connects.Load() }),
			counter("messages_published_total", "Messages accepted from SEND.", func(s *Stats) uint64 { return s.Published.Load() }),
			counter("messages_delivered_total", "MESSAGE frames queued to subscribers, redeliveries included.", func(s *Stats) uint64 { return s.Delivered.Load() }),
			counter("messages_acked_total", "Messages acknowledged by ACK (a cumulative ACK counts each message).", func(s *Stats) uint64 { return s.Acked.Load() }),
			counter("messages_nacked_total", "Messages refused by NACK.", func(s *Stats) uint64 { return s.Nacked.Load() }),
			counter("messages_redelivered_total", "Deliveries of messages delivered before (NACK, disconnect, recovery).", func(s *Stats) uint64 { return s.Redelivered.Load() }),
			counter("messages_expired_total", "Messages dropped because their expires time passed.", func(s *Stats) uint64 { return s.Expired.Load() }),
			counter("messages_dead_lettered_total", "Messages moved to a dead-letter queue after max redeliveries.", func(s *Stats) uint64 { return s.DeadLettered.Load() }),
			counter("dead_letter_failures_total", "Dead-letter moves the journal refused; the message stayed in its queue.", func(s *Stats) uint64 { return s.DeadLetterFailures.Load() }),
			counter("messages_dropped_total", "Messages dropped with nowhere to go (a DLQ's own rejects, full durable backlogs).", func(s *Stats) uint64 { return s.Dropped.Load() }),
			counter("slow_consumers_total", "Sessions closed because their outbound buffer overflowed.", func(s *Stats) uint64 { return s.SlowConsumers.Load() }),
			counter("duplicates_dropped_total", "SENDs receipted but not applied: their idempotency-key repeated one sent within dedupe.window.", func(s *Stats) uint64 { return s.Duplicates.Load() }),
		},
	}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.sessions, c.queues, c.queuedBytes, c.framesIn, c.framesOut,
		c.heartbeatsIn, c.disconnects, c.errors, c.queueMessages, c.queueConsumers, c.topics,
		c.topicSubscribers, c.destinationMessages, c.destinationConsumers, c.heartbeatTimeouts, c.blocked, c.blockedSeconds} {
		ch <- d
	}
	for _, d := range c.counters {
		ch <- d.desc
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	b := c.b
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	count := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(c.sessions, float64(b.sessionCount.Load()))
	gauge(c.queuedBytes, float64(b.queuedBytes.Load()))
	for _, d := range c.counters {
		count(d.desc, d.value(&b.stats))
	}
	in, out, heartbeats := b.sumFrames()
	for cmd := frames.CmdConnect; int(cmd) < frames.NumCommands; cmd++ {
		count(c.framesIn, in[cmd], cmd.String())
	}
	for _, cmd := range []frames.Command{frames.CmdConnected, frames.CmdMessage, frames.CmdReceipt, frames.CmdError} {
		count(c.framesOut, out[cmd], cmd.String())
	}
	count(c.heartbeatsIn, heartbeats)
	blocked, blockedSeconds := b.flow.blockedStats(b.cfg.Now())
	for r := FullQueue; r < fullReasonCount; r++ {
		gauge(c.blocked, float64(blocked[r]), r.String())
		ch <- prometheus.MustNewConstMetric(c.blockedSeconds, prometheus.CounterValue, blockedSeconds[r], r.String())
	}
	for r := range closeReasonCount {
		count(c.disconnects, b.closes[r].Load(), r.String())
	}
	count(c.heartbeatTimeouts, b.closes[CloseHeartbeatTimeout].Load())
	for i, code := range errorCodes {
		count(c.errors, b.errors[i].Load(), code)
	}
	count(c.errors, b.errors[len(errorCodes)].Load(), "other")

	snap := b.destinationSnapshot()
	gauge(c.queues, float64(snap.queues))
	for k, kind := range queueKinds {
		gauge(c.queueMessages, float64(snap.kindMessages[k]), kind)
		gauge(c.queueConsumers, float64(snap.kindConsumers[k]), kind)
	}
	gauge(c.topics, float64(snap.topics))
	gauge(c.topicSubscribers, float64(snap.topicSubscribers))
	for _, d := range snap.deepest {
		gauge(c.destinationMessages, float64(d.messages), d.name)
		gauge(c.destinationConsumers, float64(d.consumers), d.name)
	}
}

// destinationStats is what a scrape reports about destinations.
type destinationStats struct {
	queues, topics, topicSubscribers int
	kindMessages, kindConsumers      [len(queueKinds)]int
	deepest                          []destinationLoad // at most Config.DestinationMetrics
}

type destinationLoad struct {
	name                string
	messages, consumers int
}

// destinationSnapshot walks every destination once. The table lock is held
// only to copy the pointers; each queue's lock only to read two numbers.
func (b *Broker) destinationSnapshot() destinationStats {
	var queues []*queue
	var topics []destinationLoad // exact topic names, with their virtual host, as labels show them
	wildcards := 0
	for _, sp := range b.spaces {
		sp.mu.RLock()
		for _, q := range sp.queues {
			queues = append(queues, q)
		}
		sp.mu.RUnlock()
		topics = sp.topics.appendExactLoads(topics, sp)
		wildcards += int(sp.topics.wildcardSubs.Load())
	}

	var st destinationStats
	st.queues = len(queues)
	limit := b.cfg.DestinationMetrics
	var loads []destinationLoad
	for _, q := range queues {
		q.mu.Lock()
		messages, consumers := q.count, len(q.consumers)
		q.mu.Unlock()
		k := q.kind()
		st.kindMessages[k] += messages
		st.kindConsumers[k] += consumers
		if limit > 0 {
			loads = append(loads, destinationLoad{q.sp.label(q.name), messages, consumers})
		}
	}
	for _, t := range topics {
		if t.consumers == 0 {
			continue
		}
		st.topics++
		st.topicSubscribers += t.consumers
		if limit > 0 {
			loads = append(loads, t)
		}
	}
	st.topicSubscribers += wildcards
	if limit > 0 {
		slices.SortFunc(loads, func(x, y destinationLoad) int {
			return cmp.Or(cmp.Compare(y.messages, x.messages), cmp.Compare(y.consumers, x.consumers), strings.Compare(x.name, y.name))
		})
		st.deepest = loads[:min(limit, len(loads))]
	}
	return st
}

// kind is the queue's index in queueKinds.
func (q *queue) kind() int {
	switch {
	case q.owner != nil:
		return 2
	case q.durable:
		return 1
	case strings.HasPrefix(q.name, "/queue/DLQ."):
		return 3
	}
	return 0
}

// appendExactLoads appends each exact topic name of sp with its number of
// subscribers. The sublist's read lock is held only to walk its map.
func (sl *sublist) appendExactLoads(loads []destinationLoad, sp *space) []destinationLoad {
	sl.mu.RLock()
	defer sl.mu.RUnlock()
	for name, set := range sl.exact {
		loads = append(loads, destinationLoad{sp.label("/topic/" + name), 0, int(set.live.Load())})
	}
	return loads
}
