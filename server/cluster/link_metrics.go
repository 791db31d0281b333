package cluster

import (
	"github.com/prometheus/client_golang/prometheus"
)

// linkMetrics is the NATS connection's collector: one value registered
// once on Config.Registerer, so a second node in the same process (tests)
// has its own and Close can unregister it.
type linkMetrics struct {
	connectedDesc *prometheus.Desc
	connected     func() bool
	reconnects    prometheus.Counter
	disconnects   prometheus.Counter
	info          prometheus.Gauge
}

// newLinkMetrics builds the collector. connected reports the live
// connection state at scrape time (no gauge to keep in step with the
// connection's handlers).
func newLinkMetrics(clusterName, node string, connected func() bool) *linkMetrics {
	m := &linkMetrics{
		connectedDesc: prometheus.NewDesc("stompbox_cluster_nats_connected",
			"1 while the node is connected to NATS, 0 while it is reconnecting.", nil, nil),
		connected: connected,
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stompbox_cluster_nats_reconnects_total",
			Help: "Times the node reconnected to NATS after losing the connection.",
		}),
		disconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stompbox_cluster_nats_disconnects_total",
			Help: "Times the node lost its NATS connection.",
		}),
		info: prometheus.NewGauge(prometheus.GaugeOpts{
			Name:        "stompbox_cluster_info",
			Help:        "Always 1; the labels name the cluster and this node.",
			ConstLabels: prometheus.Labels{"cluster": clusterName, "node": node},
		}),
	}
	m.info.Set(1)
	return m
}

// Describe implements prometheus.Collector.
func (m *linkMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.connectedDesc
	m.reconnects.Describe(ch)
	m.disconnects.Describe(ch)
	m.info.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *linkMetrics) Collect(ch chan<- prometheus.Metric) {
	v := 0.0
	if m.connected() {
		v = 1
	}
	ch <- prometheus.MustNewConstMetric(m.connectedDesc, prometheus.GaugeValue, v)
	m.reconnects.Collect(ch)
	m.disconnects.Collect(ch)
	m.info.Collect(ch)
}

// linkMetrics is registered as one collector.
var _ prometheus.Collector = (*linkMetrics)(nil)
