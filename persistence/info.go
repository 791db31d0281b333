package persistence

import (
	"time"

	dto "github.com/prometheus/client_model/go"
)

// Info is what an operator sees of a File (the admin API's /api/journal).
type Info struct {
	Dir      string
	Sync     string // the sync policy: always, interval or never
	Size     int64  // data bytes counted against the budget (Stats.Bytes)
	Segments int    // segment files in use
	// Failed is the write or fsync error that broke the journal, or nil.
	Failed error
	// Damage describes the damage recovery read around ("" if none).
	Damage string
	// Fsync summarizes the fsyncs since Open.
	Fsync FsyncSummary
}

// FsyncSummary summarizes fsync latencies. P50 and P99 are the upper
// bounds of the histogram buckets (stompbox_journal_fsync_duration_seconds)
// the quantiles fall in, so they overstate by at most a factor of two; Max
// is exact. All zero before the first fsync.
type FsyncSummary struct {
	Count         uint64
	P50, P99, Max time.Duration
}

// Info returns the File's state; it takes the locks Stats takes, briefly.
func (f *File) Info() Info {
	st := f.Stats()
	return Info{
		Dir:      f.dir,
		Sync:     f.cfg.Sync.String(),
		Size:     st.Bytes,
		Segments: st.Segments,
		Failed:   f.Failed(),
		Damage:   f.Damage(),
		Fsync:    f.fsyncSummary(),
	}
}

// noteFsync keeps the slowest fsync seen.
func (f *File) noteFsync(d time.Duration) {
	for {
		cur := f.stats.fsyncMax.Load()
		if int64(d) <= cur || f.stats.fsyncMax.CompareAndSwap(cur, int64(d)) {
			return
		}
	}
}

// fsyncSummary reads the fsync histogram.
func (f *File) fsyncSummary() FsyncSummary {
	var m dto.Metric
	if err := f.metrics.fsyncSeconds.Write(&m); err != nil || m.Histogram == nil {
		return FsyncSummary{}
	}
	h := m.Histogram
	s := FsyncSummary{Count: h.GetSampleCount(), Max: time.Duration(f.stats.fsyncMax.Load())}
	if s.Count == 0 {
		return s
	}
	s.P50 = min(quantileBound(h, s.Count, 0.50), s.Max)
	s.P99 = min(quantileBound(h, s.Count, 0.99), s.Max)
	return s
}

// quantileBound is the upper bound of the bucket holding quantile q of
// count observations (the maximum past the last bucket).
func quantileBound(h *dto.Histogram, count uint64, q float64) time.Duration {
	rank := uint64(q*float64(count) + 0.5)
	rank = max(rank, 1)
	for _, b := range h.GetBucket() {
		if b.GetCumulativeCount() >= rank {
			return time.Duration(b.GetUpperBound() * float64(time.Second))
		}
	}
	return time.Duration(1<<63 - 1)
}
