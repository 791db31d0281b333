package persistence

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// fileMetrics are the histograms a File observes while it works; the
// counters and sizes it keeps anyway are read at scrape time by collector.
// A File opened without a Registerer still has them, unregistered.
type fileMetrics struct {
	appendSeconds prometheus.Histogram
	fsyncSeconds  prometheus.Histogram
}

func newFileMetrics() fileMetrics {
	return fileMetrics{
		appendSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "stompbox_journal_append_duration_seconds",
			Help:    "Time from Append to its records being as durable as the sync policy promises (the wait before a persistent SEND's RECEIPT).",
			Buckets: latencyBuckets(),
		}),
		fsyncSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "stompbox_journal_fsync_duration_seconds",
			Help:    "Duration of one fsync of a journal segment.",
			Buckets: latencyBuckets(),
		}),
	}
}

// register adds the File's metrics to reg.
func (f *File) register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{f.metrics.appendSeconds, f.metrics.fsyncSeconds, newCollector(f)} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("persistence: register metrics: %w", err)
		}
	}
	return nil
}

// latencyBuckets span a page-cache write (tens of µs) to a disk that has
// stalled (seconds): 50µs to 3.3s.
func latencyBuckets() []float64 { return prometheus.ExponentialBuckets(50e-6, 2, 17) }

func since(start time.Time) float64 { return time.Since(start).Seconds() }

// collector reads File.Stats at scrape time.
type collector struct {
	f                                              *File
	bytes, maxBytes, segments, failed              *prometheus.Desc
	appends, records, fsyncs, corrupt, compacted   *prometheus.Desc
	damagedRanges, damagedBytes, diskFull, dropped *prometheus.Desc
}

func newCollector(f *File) *collector {
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("stompbox_journal_"+name, help, nil, nil)
	}
	return &collector{
		f:        f,
		bytes:    desc("bytes", "Journal data bytes on disk, as counted against the disk budget."),
		maxBytes: desc("max_bytes", "The journal's disk budget in bytes (0: unlimited)."),
		segments: desc("segments", "Journal segment files in use."),
		failed: desc("failed", "1 once a journal write or fsync has failed: the journal accepts no more records "+
			"and the process exits for recovery; 0 while it works."),
		appends:   desc("appends_total", "Appends written (one per persistent SEND, transaction or removal batch)."),
		records:   desc("records_total", "Journal records written."),
		fsyncs:    desc("fsyncs_total", "fsyncs of journal segments."),
		corrupt:   desc("corrupt_records_total", "Corrupt records recovery skipped at start."),
		compacted: desc("segments_compacted_total", "Segment files deleted by compaction."),
		damagedRanges: desc("damaged_ranges", "Damaged ranges (corrupt records, damaged segment headers) recovery read "+
			"around at start; their bytes are copied to the journal's damaged/ directory (docs/persistence.md)."),
		damagedBytes: desc("damaged_bytes", "Bytes of the damaged ranges recovery read around at start."),
		diskFull: prometheus.NewDesc("stompbox_journal_disk_full",
			"1 while new persistent messages are refused (producers blocked), by reason: budget (journal.max_bytes), "+
				"min_free (free space under journal.min_free), no_space (the file system refused space); 0 otherwise.",
			[]string{"reason"}, nil),
		dropped: desc("dropped_records_total", "Removals still waiting for room when the journal closed on a full disk: their messages come back after a restart."),
	}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.bytes, c.maxBytes, c.segments, c.failed, c.appends, c.records, c.fsyncs,
		c.corrupt, c.compacted, c.damagedRanges, c.damagedBytes, c.diskFull, c.dropped} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.f.Stats()
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	count := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	gauge(c.bytes, float64(st.Bytes))
	gauge(c.maxBytes, float64(c.f.cfg.MaxBytes))
	gauge(c.segments, float64(st.Segments))
	failed := 0.0
	if c.f.Failed() != nil {
		failed = 1
	}
	gauge(c.failed, failed)
	count(c.appends, st.Appends)
	count(c.records, st.Records)
	count(c.fsyncs, st.Fsyncs)
	count(c.corrupt, st.CorruptRecords)
	count(c.compacted, st.SegmentsDeleted)
	gauge(c.damagedRanges, float64(c.f.damage.ranges))
	gauge(c.damagedBytes, float64(c.f.damage.bytes))
	count(c.dropped, st.DroppedRecords)
	full := c.f.fullMask.Load()
	for r := range fullReasons {
		ch <- prometheus.MustNewConstMetric(c.diskFull, prometheus.GaugeValue, float64(full>>r&1), r.String())
	}
}
