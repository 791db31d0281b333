package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stompbox/stompbox/server"
)

// -scrape fetches its URLs while the scenario runs, with the given
// Authorization, and reports how many it made and what they cost; with
// -broker-pid every scenario reports the broker's CPU.
func TestScrapeWhileRunning(t *testing.T) {
	tcp, _ := startBroker(t, server.Config{})
	var hits, authorized atomic.Int64
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.Header.Get("Authorization") == "Bearer sekrit" && r.URL.Path == "/api/connections" {
			authorized.Add(1)
		}
		_, _ = w.Write([]byte(`{"total":0,"items":[]}`))
	}))
	defer api.Close()
	res := runOK(t, config(t, "-url", tcp, "-scenario", "latency", "-rate", "1000", "-duration", "600ms",
		"-scrape", api.URL+"/api/connections, "+api.URL+"/api/overview", "-scrape-every", "100ms",
		"-scrape-auth", "Bearer sekrit", "-broker-pid", strconv.Itoa(os.Getpid())))
	sc := res.Scrape
	if sc == nil || sc.Scrapes < 4 || int64(sc.Scrapes) != hits.Load() || sc.Bytes != int64(sc.Scrapes)*22 {
		t.Fatalf("scrape result %+v, server saw %d requests: want >= 4, all counted, 22 B each", sc, hits.Load())
	}
	if authorized.Load()*2 < hits.Load()-1 || sc.Latencies == nil || sc.Latencies.Samples != sc.Scrapes {
		t.Fatalf("%d of %d requests carried the Authorization to /api/connections; latencies %+v", authorized.Load(), hits.Load(), sc.Latencies)
	}
	if res.CPUPct == nil || *res.CPUPct <= 0 {
		t.Fatalf("cpu_pct %v, want the broker's CPU over the run", res.CPUPct)
	}
	var table strings.Builder
	if err := res.WriteTable(&table); err != nil || !strings.Contains(table.String(), "scrapes") || !strings.Contains(table.String(), "over the run") {
		t.Fatalf("table %q (%v): want the scrapes and the broker CPU", table.String(), err)
	}
}

// A scrape the server refuses fails the run: a benchmark must not measure
// the cost of watching while nothing is watched.
func TestScrapeRefusedFailsTheRun(t *testing.T) {
	tcp, _ := startBroker(t, server.Config{})
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, `{"error":"no"}`, http.StatusUnauthorized)
	}))
	defer api.Close()
	res, err := Run(context.Background(), config(t, "-url", tcp, "-scenario", "latency", "-rate", "1000", "-duration", "2s",
		"-scrape", api.URL+"/api/overview", "-scrape-every", "50ms"))
	if err == nil || !strings.Contains(err.Error(), "401") || res.OK {
		t.Fatalf("run error %v, ok %v: want the refused scrape", err, res.OK)
	}
}

func TestScrapeFlagsValidated(t *testing.T) {
	for _, args := range [][]string{
		{"-scrape", "ftp://x/y"},
		{"-scrape", "http://"},
		{"-scrape-every", "0s"},
	} {
		var usage strings.Builder
		if _, err := ParseFlags(args, &usage); err == nil {
			t.Errorf("%q: accepted", args)
		}
	}
}
