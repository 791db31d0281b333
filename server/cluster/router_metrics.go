package cluster

import "github.com/prometheus/client_golang/prometheus"

// Publish failure reasons: the bounded values of the reason label.
const (
	reasonFull         = "full"         // the stream refused it for its limits
	reasonTimeout      = "timeout"      // no PubAck within PublishTimeout
	reasonDisconnected = "disconnected" // the connection to NATS was down or dropped
	reasonNoStream     = "no_stream"    // nothing answered on the subject (stream missing or JetStream down)
	reasonTooMany      = "too_many"     // too many publishes awaiting their PubAck
	reasonError        = "error"        // anything else
)

// routerMetrics are the router's collectors. They always exist (the code
// updates them unconditionally) and are registered only with a Registerer.
type routerMetrics struct {
	publishSeconds prometheus.Histogram
	publishFailed  *prometheus.CounterVec
	topicDropped   prometheus.Counter
	pendingAcks    prometheus.Gauge
	fed            *prometheus.CounterVec // by outcome: fetched, acked, nacked, termed
}

func newRouterMetrics(reg prometheus.Registerer) *routerMetrics {
	m := &routerMetrics{
		publishSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "stompbox_cluster_publish_seconds",
			Help:    "Time from handing a queue or topic history message to JetStream to its PubAck.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		publishFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stompbox_cluster_publish_failures_total",
			Help: "Queue and topic history messages JetStream did not store, by reason (full, timeout, disconnected, no_stream, too_many, error).",
		}, []string{"reason"}),
		topicDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stompbox_cluster_topic_dropped_total",
			Help: "Topic messages from other nodes dropped because this node did not read them fast enough (NATS slow consumer).",
		}),
		pendingAcks: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "stompbox_cluster_pending_acks",
			Help: "Queue messages fetched from JetStream and not yet settled on this node.",
		}),
		fed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stompbox_cluster_queue_messages_total",
			Help: "Queue messages fetched from JetStream and how they were settled (fetched, acked, nacked, termed).",
		}, []string{"outcome"}),
	}
	if reg != nil {
		reg.MustRegister(m.publishSeconds, m.publishFailed, m.topicDropped, m.pendingAcks, m.fed)
	}
	return m
}
