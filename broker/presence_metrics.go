package broker

import "github.com/prometheus/client_golang/prometheus"

// presenceCollector exposes presence at scrape time from the counters each
// virtual host keeps (presenceSpace), so presence costs no metric work as
// it changes.
type presenceCollector struct {
	b       *Broker
	members *prometheus.Desc
	events  *prometheus.Desc
}

func newPresenceCollector(b *Broker) *presenceCollector {
	return &presenceCollector{
		b: b,
		members: prometheus.NewDesc("stompbox_presence_members",
			"Members of all presence sets (SUBSCRIBE with presence:true), those in their grace period included.", nil, nil),
		events: prometheus.NewDesc("stompbox_presence_events_total",
			"Presence events, by kind: snapshot (one per /presence/ subscription), join, leave.", []string{"event"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *presenceCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.members
	ch <- c.events
}

// Collect implements prometheus.Collector.
func (c *presenceCollector) Collect(ch chan<- prometheus.Metric) {
	var members int64
	var events [presenceEventCount]uint64
	for _, sp := range c.b.spaces {
		members += sp.presence.members.Load()
		for ev := range events {
			events[ev] += sp.presence.events[ev].Load()
		}
	}
	ch <- prometheus.MustNewConstMetric(c.members, prometheus.GaugeValue, float64(members))
	for ev, n := range events {
		ch <- prometheus.MustNewConstMetric(c.events, prometheus.CounterValue, float64(n), presenceEventNames[ev])
	}
}
