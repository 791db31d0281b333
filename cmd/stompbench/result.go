package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
)

// Result is what a run measured; -json prints it as one object.
type Result struct {
	Scenario   string `json:"scenario"`   // as -scenario
	Transport  string `json:"transport"`  // tcp or ws
	Parameters Config `json:"parameters"` // the flags, defaults filled in
	// Messages is what the measured span delivered (for a topic: every
	// subscriber's copy); Duration its seconds and Rate their quotient.
	Messages int64   `json:"messages"`
	Duration float64 `json:"duration"`
	Rate     float64 `json:"rate"`
	// Latencies: from the intended send time to delivery (latency), or
	// from SEND to its RECEIPT (persistent).
	Latencies *Latencies `json:"latencies,omitempty"`
	// SendLag is how late this process sent each message (latency): a
	// large one means the generator, not the broker, is the limit.
	SendLag *Latencies `json:"send_lag,omitempty"`
	// Idle: connections held, how fast they were opened, the broker's
	// memory per connection and its CPU while they idled.
	Connections int      `json:"connections,omitempty"`
	ConnectRate float64  `json:"connect_rate,omitempty"`
	RSSBefore   int64    `json:"rss_before,omitempty"`
	RSSAfter    int64    `json:"rss_after,omitempty"`
	RSSPerConn  *float64 `json:"rss_per_conn,omitempty"`
	// CPUPct is the broker's CPU (-broker-pid), % of one core: while the
	// connections idled (idle), over the whole run (the others).
	CPUPct *float64 `json:"cpu_pct,omitempty"`
	// Scrape is what -scrape measured.
	Scrape *ScrapeResult `json:"scrape,omitempty"`
	Counts Counts        `json:"counts"`
	// OK is false when the run failed; Errors say why (at most 10, the
	// cause first).
	OK     bool     `json:"ok"`
	Errors []string `json:"errors"`
}

// Counts are the messages of a run, for checking it by hand.
type Counts struct {
	Sent     int64 `json:"sent"`     // SENDs written
	Received int64 `json:"received"` // deliveries checked (a topic's: every subscriber's)
	Expected int64 `json:"expected"` // deliveries the scenario promises
	Lost     int64 `json:"lost"`     // missing when the run ended
}

// Latencies are percentiles of a sample, in microseconds.
type Latencies struct {
	Samples int     `json:"samples"`  // measured messages (the warm-up left out)
	P50     float64 `json:"p50_us"`   // median
	P90     float64 `json:"p90_us"`   // 90th percentile
	P99     float64 `json:"p99_us"`   // 99th percentile
	P999    float64 `json:"p99_9_us"` // 99.9th percentile
	Max     float64 `json:"max_us"`   // the slowest
}

// summarize sorts samples (ns) in place and returns their percentiles
// (nil for none).
func summarize(samples []int64) *Latencies {
	if len(samples) == 0 {
		return nil
	}
	slices.Sort(samples)
	at := func(q float64) float64 {
		i := int(q*float64(len(samples))+0.999999) - 1
		i = min(max(i, 0), len(samples)-1)
		return float64(samples[i]) / 1e3
	}
	return &Latencies{
		Samples: len(samples),
		P50:     at(0.50), P90: at(0.90), P99: at(0.99), P999: at(0.999),
		Max: float64(samples[len(samples)-1]) / 1e3,
	}
}

// WriteJSON prints res as one JSON object.
func (res *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(res); err != nil {
		return fmt.Errorf("write JSON: %w", err)
	}
	return nil
}

// WriteTable prints res for people.
func (res *Result) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, args...)...) }
	p := &res.Parameters
	row("scenario", "%s over %s (%s)", res.Scenario, res.Transport, p.URL)
	switch res.Scenario {
	case ScenarioQueue, ScenarioPersistent:
		row("parameters", "%d producers x %d messages -> %d consumers, prefetch %d, body %d B", p.Producers, p.Messages, p.Consumers, p.Prefetch, p.BodySize)
	case ScenarioTopic:
		row("parameters", "1 producer x %d messages -> %d subscribers, body %d B", p.Messages, p.Subscribers, p.BodySize)
	case ScenarioLatency:
		row("parameters", "%d msgs/s for %v, body %d B", p.Rate, p.Duration, p.BodySize)
	case ScenarioIdle:
		row("parameters", "%d connections, heart-beat %s, held %v", p.Connections, p.HeartBeat, p.Duration)
	}
	if res.Scenario != ScenarioIdle {
		unit := "msgs/s"
		if res.Scenario == ScenarioTopic {
			unit = "deliveries/s"
		}
		row("rate", "%.0f %s (%d in %.3f s)", res.Rate, unit, res.Messages, res.Duration)
		row("counts", "sent %d, received %d of %d, lost %d", res.Counts.Sent, res.Counts.Received, res.Counts.Expected, res.Counts.Lost)
	}
	if l := res.Latencies; l != nil {
		name := "latency, us"
		if res.Scenario == ScenarioPersistent {
			name = "receipt latency, us"
		}
		row(name, "p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f (%d samples)", l.P50, l.P90, l.P99, l.P999, l.Max, l.Samples)
	}
	if l := res.SendLag; l != nil {
		row("send lag, us", "p50 %.1f  p99 %.1f  max %.1f", l.P50, l.P99, l.Max)
	}
	if res.Scenario == ScenarioIdle {
		row("connections", "%d open, %.0f connections/s", res.Connections, res.ConnectRate)
		if res.RSSPerConn != nil {
			row("broker RSS", "%d -> %d B, %.0f B per connection", res.RSSBefore, res.RSSAfter, *res.RSSPerConn)
		}
		if res.CPUPct != nil {
			row("broker CPU", "%.2f %% of one core while idle", *res.CPUPct)
		}
	} else if res.CPUPct != nil {
		row("broker CPU", "%.2f %% of one core over the run", *res.CPUPct)
	}
	if sc := res.Scrape; sc != nil {
		row("scrapes", "%d (%d B)", sc.Scrapes, sc.Bytes)
		if l := sc.Latencies; l != nil {
			row("scrape time, us", "p50 %.1f  p99 %.1f  max %.1f", l.P50, l.P99, l.Max)
		}
	}
	if res.OK {
		row("result", "ok")
	} else {
		row("result", "FAILED")
		for _, e := range res.Errors {
			row("error", "%s", e)
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	return nil
}
