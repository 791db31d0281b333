package main

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stompbox/stompbox/server"
)

// Every goroutine of a run, and of the brokers the tests start, must be
// gone when the tests end.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// startBroker starts a whole stompbox in-process with admission limits
// off, native STOMP and STOMP over WebSocket on loopback ports chosen by
// the kernel, and returns their URLs; it is shut down at cleanup.
func startBroker(t *testing.T, cfg server.Config) (tcpURL, wsURL string) {
	t.Helper()
	cfg.MaxConnectionsPerIP, cfg.ConnectionRatePerIP = -1, -1
	srv := server.New(cfg)
	native, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	web, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 2)
	go func() { served <- srv.Serve(native) }()
	go func() { served <- srv.ServeWeb(web) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		for range 2 {
			if err := <-served; !errors.Is(err, server.ErrServerClosed) {
				t.Errorf("serve returned %v, want ErrServerClosed", err)
			}
		}
	})
	return "stomp://" + native.Addr().String(), "ws://" + web.Addr().String() + "/ws"
}

// config parses flags as the command does, failing the test on an error.
func config(t *testing.T, args ...string) Config {
	t.Helper()
	var usage strings.Builder
	cfg, err := ParseFlags(append([]string{"-timeout", "20s"}, args...), &usage)
	if err != nil {
		t.Fatalf("flags %q: %v (%s)", args, err, usage.String())
	}
	return cfg
}

// runOK runs cfg and fails the test unless the run succeeded.
func runOK(t *testing.T, cfg Config) *Result {
	t.Helper()
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("run %s over %s: %v (errors %q)", cfg.Scenario, cfg.Transport(), err, res.Errors)
	}
	if !res.OK || len(res.Errors) != 0 {
		t.Fatalf("run succeeded but Result says ok=%v errors=%q", res.OK, res.Errors)
	}
	return res
}

// checkCounts asserts every expected message arrived and the rate is real.
func checkCounts(t *testing.T, res *Result, sent, expected int64) {
	t.Helper()
	c := res.Counts
	if c.Sent != sent || c.Received != expected || c.Expected != expected || c.Lost != 0 {
		t.Errorf("counts %+v, want sent %d, received and expected %d", c, sent, expected)
	}
	if res.Messages != expected || res.Rate <= 0 || res.Duration <= 0 {
		t.Errorf("measured %d messages in %.3f s (%.0f/s), want %d at a positive rate", res.Messages, res.Duration, res.Rate, expected)
	}
}

// checkLatencies asserts the percentiles are present and ordered.
func checkLatencies(t *testing.T, l *Latencies, samples int) {
	t.Helper()
	if l == nil {
		t.Fatal("no latencies")
	}
	if l.Samples != samples {
		t.Errorf("%d latency samples, want %d", l.Samples, samples)
	}
	if !(0 < l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max) {
		t.Errorf("latencies not ordered: %+v", *l)
	}
}
