package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// maxScrapeBody bounds what one scrape reads: an admin API page of 1,000
// connections is well under it.
const maxScrapeBody = 64 << 20

// scraper fetches the -scrape URLs every -scrape-every while a scenario
// runs, the way a dashboard or a monitoring system would, so that a run
// shows what watching the broker costs it.
type scraper struct {
	urls   []string
	every  time.Duration
	auth   string // Authorization header value; "" for none
	client *http.Client

	mu      sync.Mutex
	samples []int64 // guarded by mu: each scrape's duration, ns
	bytes   int64   // guarded by mu
}

func newScraper(cfg *Config) *scraper {
	return &scraper{
		urls:   cfg.scrapeURLs,
		every:  cfg.ScrapeEvery,
		auth:   cfg.ScrapeAuth,
		client: &http.Client{Timeout: cfg.ScrapeEvery + 10*time.Second},
	}
}

// run scrapes until ctx ends; a failed scrape (refused, not 200) fails
// the run through fail, so a benchmark never silently watches nothing.
func (s *scraper) run(ctx context.Context, fail func(error)) {
	t := time.NewTicker(s.every)
	defer t.Stop()
	defer s.client.CloseIdleConnections()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, u := range s.urls {
			if err := s.scrape(ctx, u); err != nil {
				if ctx.Err() == nil {
					fail(err)
				}
				return
			}
		}
	}
}

func (s *scraper) scrape(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("-scrape %s: %w", url, err)
	}
	if s.auth != "" {
		req.Header.Set("Authorization", s.auth)
	}
	start := time.Now()
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("-scrape %s: %w", url, err)
	}
	n, err := io.Copy(io.Discard, io.LimitReader(resp.Body, maxScrapeBody))
	_ = resp.Body.Close()
	if err != nil {
		return fmt.Errorf("-scrape %s: reading the answer: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("-scrape %s: %s", url, resp.Status)
	}
	took := time.Since(start)
	s.mu.Lock()
	s.samples = append(s.samples, int64(took))
	s.bytes += n
	s.mu.Unlock()
	return nil
}

// result summarizes the scrapes made.
func (s *scraper) result() *ScrapeResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &ScrapeResult{Scrapes: len(s.samples), Bytes: s.bytes, Latencies: summarize(s.samples)}
}

// ScrapeResult is what -scrape measured.
type ScrapeResult struct {
	Scrapes   int        `json:"scrapes"`
	Bytes     int64      `json:"bytes"`
	Latencies *Latencies `json:"latencies,omitempty"` // each scrape's round trip
}
