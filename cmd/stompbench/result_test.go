package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// The JSON object carries the keys the compare script reads.
func TestResultJSONKeys(t *testing.T) {
	rss, cpu := 25800.0, 1.5
	res := &Result{Scenario: "idle", Transport: "ws", Parameters: DefaultConfig(), Messages: 1, Duration: 1, Rate: 1,
		Latencies: summarize([]int64{1000, 2000, 3000}), RSSPerConn: &rss, CPUPct: &cpu, OK: true, Errors: []string{}}
	var out bytes.Buffer
	if err := res.WriteJSON(&out); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(out.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"scenario", "transport", "parameters", "messages", "duration", "rate", "latencies", "rss_per_conn", "cpu_pct", "ok", "errors", "counts"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON has no %q: %s", k, out.String())
		}
	}
	lat := m["latencies"].(map[string]any)
	for _, k := range []string{"p50_us", "p90_us", "p99_us", "p99_9_us", "max_us"} {
		if _, ok := lat[k]; !ok {
			t.Errorf("latencies have no %q", k)
		}
	}
	if strings.Contains(out.String(), "passcode") {
		t.Error("the passcode is printed")
	}
	if l := res.Latencies; l.P50 != 2 || l.P99 != 3 || l.Max != 3 {
		t.Errorf("percentiles of 1, 2, 3 ms: %+v", *l)
	}
	out.Reset()
	res.OK, res.Errors = false, []string{"message lost: producer 0 seq 7"}
	if err := res.WriteTable(&out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "FAILED") || !strings.Contains(out.String(), "producer 0 seq 7") {
		t.Errorf("table does not show the failure:\n%s", out.String())
	}
}
