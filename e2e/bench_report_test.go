//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBenchReport runs bench/report.py, the table maker of
// bench/compare.sh, on stompbench results written here: medians of the
// runs, the ratio in stompbox's favour either way round (higher rates,
// lower latencies and memory), failed runs listed and left out, and
// docs' text outside the compare markers kept.
func TestBenchReport(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	raw := filepath.Join(dir, "raw")
	if err := os.MkdirAll(raw, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name string, v any) {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(raw, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i, rate := range []float64{400000, 100000, 300000} {
		write(fmt.Sprintf("queue-1-1-tcp.stompbox.%d.json", i+1), map[string]any{"ok": true, "rate": rate})
		write(fmt.Sprintf("queue-1-1-tcp.rabbitmq.%d.json", i+1), map[string]any{"ok": true, "rate": 10000})
	}
	lat := func(p99 float64) map[string]any {
		return map[string]any{"ok": true, "latencies": map[string]float64{"p50_us": 100, "p99_us": p99, "p99_9_us": 2 * p99}}
	}
	write("latency-10k-tcp.stompbox.1.json", lat(500))
	write("latency-10k-tcp.rabbitmq.1.json", lat(3000))
	write("persistent-tcp.rabbitmq.1.json", map[string]any{"ok": false, "errors": []string{"producer 0: 9 receipts for 10"}})
	doc := filepath.Join(dir, "benchmarks.md")
	before := "# Benchmarks\n\nkept above\n\n<!-- compare:begin -->\nold\n<!-- compare:end -->\n\nkept below\n"
	if err := os.WriteFile(doc, []byte(before), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	cmd := exec.Command(python(), filepath.Join(root, "bench", "report.py"), raw, out, doc)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("report.py: %v\n%s", err, b)
	}
	got, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	text := string(got)
	for _, want := range []string{
		"kept above", "kept below",
		"| queue-1-1-tcp | msgs/s | **300,000** (400,000 100,000 300,000) | **10,000** (10,000 10,000 10,000) | 30.0x |",
		"| latency-10k-tcp | p99 ms | **0.50** (0.50) | **3.00** (3.00) | 6.0x |",
		"- persistent-tcp on rabbitmq (run 1): producer 0: 9 receipts for 10",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("docs lack %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "\nold\n") || strings.Count(text, "<!-- compare:begin -->") != 1 {
		t.Errorf("the old section was not replaced once:\n%s", text)
	}
	if _, err := os.Stat(filepath.Join(out, "compare.svg")); err != nil {
		t.Errorf("no chart: %v", err)
	}
}

// python is the interpreter the e2e tests use.
func python() string {
	if p := os.Getenv(pythonEnv); p != "" {
		return p
	}
	return "/usr/bin/python3"
}
