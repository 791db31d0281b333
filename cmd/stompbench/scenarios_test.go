package main

import (
	"errors"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/frames"
	"github.com/stompbox/stompbox/server"
)

func TestScenarios(t *testing.T) {
	tcp, ws := startBroker(t, server.Config{})
	for _, url := range []string{tcp, ws} {
		transport := url[:strings.Index(url, ":")]
		t.Run("queue-1-1-"+transport, func(t *testing.T) {
			res := runOK(t, config(t, "-url", url, "-messages", "3000"))
			checkCounts(t, res, 3000, 3000)
		})
		t.Run("queue-4-4-"+transport, func(t *testing.T) {
			res := runOK(t, config(t, "-url", url, "-producers", "4", "-consumers", "4", "-messages", "1000", "-prefetch", "10"))
			checkCounts(t, res, 4000, 4000)
		})
		t.Run("topic-"+transport, func(t *testing.T) {
			res := runOK(t, config(t, "-url", url, "-scenario", "topic", "-subscribers", "20", "-messages", "500"))
			checkCounts(t, res, 500, 20*500)
		})
		t.Run("latency-"+transport, func(t *testing.T) {
			res := runOK(t, config(t, "-url", url, "-scenario", "latency", "-rate", "2000", "-duration", "500ms"))
			checkCounts(t, res, 1000, 1000)
			checkLatencies(t, res.Latencies, 1000)
			if res.SendLag == nil || res.SendLag.Samples != 1000 {
				t.Errorf("send lag %+v, want 1000 samples", res.SendLag)
			}
			if res.Rate < 1000 || res.Rate > 4000 {
				t.Errorf("rate %.0f msgs/s, want about 2000", res.Rate)
			}
		})
		t.Run("persistent-"+transport, func(t *testing.T) {
			res := runOK(t, config(t, "-url", url, "-scenario", "persistent", "-producers", "2", "-messages", "1000", "-window", "16"))
			checkCounts(t, res, 2000, 2000)
			if l := res.Latencies; l == nil || l.Samples != 2000 || l.P50 <= 0 || l.P50 > l.P99 {
				t.Errorf("receipt latencies %+v, want 2000 ordered samples", l)
			}
		})
		t.Run("idle-"+transport, func(t *testing.T) {
			// The broker is this process: return the heap the scenarios
			// above left behind, so the runtime does not shrink RSS while
			// the connections open.
			debug.FreeOSMemory()
			res := runOK(t, config(t, "-url", url, "-scenario", "idle", "-connections", "200", "-duration", "300ms",
				"-heartbeat", "1s,1s", "-broker-pid", strconv.Itoa(os.Getpid())))
			if res.Connections != 200 || res.ConnectRate <= 0 {
				t.Errorf("%d connections at %.0f/s, want 200", res.Connections, res.ConnectRate)
			}
			if res.RSSPerConn == nil || *res.RSSPerConn <= 0 || res.RSSAfter <= res.RSSBefore {
				t.Errorf("RSS %d -> %d, per connection %v: want growth", res.RSSBefore, res.RSSAfter, res.RSSPerConn)
			}
			if res.CPUPct == nil || *res.CPUPct < 0 {
				t.Errorf("cpu_pct %v, want a value >= 0", res.CPUPct)
			}
		})
	}
}

// The idle connections must keep sending heart-beats: a broker expecting
// one every 200 ms closes (heartbeat-timeout) any that stays silent
// through a hold of several intervals.
func TestIdleHeartBeats(t *testing.T) {
	tcp, _ := startBroker(t, server.Config{Broker: broker.Config{
		HeartBeat:            frames.HeartBeat{Send: 200 * time.Millisecond, Receive: 200 * time.Millisecond},
		HeartbeatMinInterval: 100 * time.Millisecond,
		HeartbeatTolerance:   1.5,
	}})
	runOK(t, config(t, "-url", tcp, "-scenario", "idle", "-connections", "20", "-duration", "1500ms", "-heartbeat", "200ms,200ms"))
}

// An ERROR from the broker ends the run with its message.
func TestBrokerErrorEndsRun(t *testing.T) {
	tcp, ws := startBroker(t, server.Config{Broker: broker.Config{Frame: frames.Limits{MaxBody: 1024}}})
	for _, url := range []string{tcp, ws} {
		start := time.Now()
		res, err := Run(t.Context(), config(t, "-url", url, "-body-size", "4096", "-messages", "10"))
		if !errors.Is(err, errBrokerError) || !strings.Contains(err.Error(), "frame-too-large") {
			t.Fatalf("%s: run returned %v, want the broker's ERROR frame-too-large", url, err)
		}
		if res.OK || len(res.Errors) == 0 || !strings.Contains(res.Errors[0], "frame-too-large") {
			t.Errorf("%s: result ok=%v errors %q", url, res.OK, res.Errors)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("%s: the failed run took %v", url, d)
		}
	}
}
