package broker

import "github.com/prometheus/client_golang/prometheus"

// initHistory keeps the valid rules of Config.TopicHistory (an invalid one
// is logged and ignored: the command refuses to start with it, see
// ValidateHistory), sets the broker-wide bound and registers the history
// gauges.
func (b *Broker) initHistory() {
	b.hist.limit = int64(b.cfg.MaxHistoryBytes)
	for _, r := range b.cfg.TopicHistory {
		if err := ValidateHistory([]HistoryRule{r}); err != nil {
			b.cfg.Logger.Error("topic history rule ignored", "pattern", r.Pattern, "err", err)
			continue
		}
		b.historyRules = append(b.historyRules, r)
	}
	if b.cfg.Registerer != nil {
		b.cfg.Registerer.MustRegister(newHistoryCollector(b))
	}
}

// historyCollector exports the retained history as gauges, read from the
// broker-wide account at scrape time; no topic name is a label.
type historyCollector struct {
	b                      *Broker
	topics, messages, size *prometheus.Desc
}

func newHistoryCollector(b *Broker) *historyCollector {
	return &historyCollector{
		b:        b,
		topics:   prometheus.NewDesc("stompbox_topic_history_topics", "Topics that keep a history (topics.history).", nil, nil),
		messages: prometheus.NewDesc("stompbox_topic_history_messages", "Messages retained by all topic histories.", nil, nil),
		size: prometheus.NewDesc("stompbox_topic_history_bytes",
			"Bytes retained by all topic histories, as counted against topics.history_max_bytes.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *historyCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.topics
	ch <- c.messages
	ch <- c.size
}

// Collect implements prometheus.Collector.
func (c *historyCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.b.HistoryStats()
	ch <- prometheus.MustNewConstMetric(c.topics, prometheus.GaugeValue, float64(st.Topics))
	ch <- prometheus.MustNewConstMetric(c.messages, prometheus.GaugeValue, float64(st.Messages))
	ch <- prometheus.MustNewConstMetric(c.size, prometheus.GaugeValue, float64(st.Bytes))
}
