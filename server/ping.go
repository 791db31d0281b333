package server

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultWebSocketPingInterval is Config.WebSocketPingInterval's default.
const DefaultWebSocketPingInterval = 25 * time.Second

// pingInterval is how long a WebSocket connection may stay silent before
// the writer pings it (0: never): Config.WebSocketPingInterval, but at
// most 3/5 of the heart-beat timeout once CONNECT negotiated one, so that
// a client whose page cannot run its heart-beat timers (a throttled
// background tab) stays alive on pongs alone, while a client that
// heart-beats on time (every half timeout with the default tolerance of
// 2) is never pinged. Both drivers count it from the later of the last
// ping and the last byte heard.
func (c *wire) pingInterval() time.Duration {
	if c.pinger == nil {
		return 0
	}
	every := c.srv.cfg.WebSocketPingInterval
	if t := c.session.LivenessTimeout(); t > 0 && t*3/5 < every {
		return max(t*3/5, time.Millisecond)
	}
	return every
}

// ping writes a WebSocket ping (no payload, no allocation; its write
// deadline comes from the stream's WriteDeadline hook) and counts it.
func (c *wire) ping() error {
	if err := c.pinger.WritePing(); err != nil {
		return err
	}
	c.srv.metrics.pingsSent.Add(1)
	return nil
}

func (m *metrics) countPong() { m.pongsReceived.Add(1) }

// pingCollector exposes the WebSocket ping and pong counters.
type pingCollector struct {
	m            *metrics
	pings, pongs *prometheus.Desc
}

func newPingCollector(m *metrics) *pingCollector {
	return &pingCollector{
		m: m,
		pings: prometheus.NewDesc("stompbox_websocket_pings_sent_total",
			"WebSocket pings sent (after websocket.ping_interval without a byte from the client, or 3/5 of its heart-beat timeout when that is shorter).", nil, nil),
		pongs: prometheus.NewDesc("stompbox_websocket_pongs_received_total",
			"WebSocket pongs received; each counts as the client's liveness for the heart-beat timeout.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *pingCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pings
	ch <- c.pongs
}

// Collect implements prometheus.Collector.
func (c *pingCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.pings, prometheus.CounterValue, float64(c.m.pingsSent.Load()))
	ch <- prometheus.MustNewConstMetric(c.pongs, prometheus.CounterValue, float64(c.m.pongsReceived.Load()))
}
