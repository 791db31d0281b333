package server

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/stompbox/stompbox/frames"
)

// statusServiceRestart is close code 1012, sent at shutdown.
const statusServiceRestart ws.StatusCode = 1012

// reconnectDelays cuts the window into one slot per connection: each delay
// lies in its own slot, so they are distinct and cover the window evenly,
// whatever the random source returns (its extremes included).
func TestReconnectDelays(t *testing.T) {
	tests := []struct {
		name   string
		n      int
		window time.Duration
		rnd    float64
	}{
		{"none", 0, time.Second, 0.5},
		{"one", 1, time.Second, 0.5},
		{"many, low draws", 1000, 10 * time.Second, 0},
		{"many, high draws", 1000, 10 * time.Second, 0.9999999999},
		{"more connections than milliseconds", 5000, time.Second, 0.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			delays := reconnectDelays(tt.n, tt.window, func() float64 { return tt.rnd })
			if len(delays) != tt.n {
				t.Fatalf("%d delays, want %d", len(delays), tt.n)
			}
			sorted := slices.Clone(delays)
			slices.Sort(sorted)
			slot := tt.window / time.Duration(max(tt.n, 1))
			for i, d := range sorted {
				if d < 0 || d >= tt.window {
					t.Fatalf("delay %v outside [0, %v)", d, tt.window)
				}
				lo := time.Duration(i) * slot
				if d < lo-time.Microsecond || d > lo+slot+time.Microsecond {
					t.Fatalf("delay %d is %v, want within its slot [%v, %v]", i, d, lo, lo+slot)
				}
			}
		})
	}
}

// At shutdown many connections, TCP and WebSocket alike, get distinct
// reconnect-after values spread over the whole window (one per slot of
// window/n), and WebSocket clients then close code 1012.
func TestShutdownReconnectAfterSpread(t *testing.T) {
	const tcpConns, wsConns = 40, 10
	const window = 5 * time.Second
	srv, url := startWebServer(t, Config{ShutdownReconnectWindow: window, Linger: 100 * time.Millisecond})
	var tcps []*rawClient
	for range tcpConns {
		c := dialRaw(t, srv.addr)
		c.connect()
		tcps = append(tcps, c)
	}
	var wss []*wsClient
	for range wsConns {
		c := dialWSClient(t, url, nil, "v12.stomp")
		c.connect()
		wss = append(wss, c)
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := shutdownContext()
		defer cancel()
		done <- srv.Shutdown(ctx)
	}()
	var got []int
	for _, c := range tcps {
		f := c.next(5 * time.Second)
		checkERROR(t, f, serverShutdown)
		got = append(got, reconnectAfter(t, f))
	}
	for _, c := range wss {
		f, _ := c.next()
		checkERROR(t, f, serverShutdown)
		got = append(got, reconnectAfter(t, f))
		c.expectClose(statusServiceRestart)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	slices.Sort(got)
	n := len(got)
	slotMs := int(window.Milliseconds()) / n // 100ms
	for i, ms := range got {
		if i > 0 && ms == got[i-1] {
			t.Errorf("reconnect-after %d given twice", ms)
		}
		if lo := i * slotMs; ms < lo || ms > lo+slotMs {
			t.Errorf("the %d-th smallest reconnect-after is %dms, want within [%d, %d] (one per %dms slot)", i, ms, lo, lo+slotMs, slotMs)
		}
	}
	if spread := got[n-1] - got[0]; spread < int(window.Milliseconds())*9/10 {
		t.Errorf("reconnect-after spread over %dms, want most of the %v window", spread, window)
	}
}

// A negative window sends no reconnect-after (the ERROR is otherwise the
// same); WebSocket still closes 1012.
func TestShutdownReconnectAfterOff(t *testing.T) {
	srv, url := startWebServer(t, Config{ShutdownReconnectWindow: -1, Linger: 100 * time.Millisecond})
	tcp := dialRaw(t, srv.addr)
	tcp.connect()
	wc := dialWSClient(t, url, nil, "v12.stomp")
	wc.connect()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	f := tcp.next(5 * time.Second)
	checkERROR(t, f, serverShutdown)
	if _, ok := f.Header("reconnect-after"); ok {
		t.Errorf("reconnect-after %q with the window off", header(f, "reconnect-after"))
	}
	wf, _ := wc.next()
	checkERROR(t, wf, serverShutdown)
	if _, ok := wf.Header("reconnect-after"); ok {
		t.Errorf("reconnect-after %q over WebSocket with the window off", header(wf, "reconnect-after"))
	}
	wc.expectClose(statusServiceRestart)
}

func reconnectAfter(t *testing.T, f *frames.Frame) int {
	t.Helper()
	v, ok := f.Header("reconnect-after")
	if !ok {
		t.Fatalf("ERROR server-shutdown without reconnect-after: %v", f.Headers)
	}
	ms, err := strconv.Atoi(string(v))
	if err != nil || ms < 0 {
		t.Fatalf("reconnect-after %q, want milliseconds", v)
	}
	return ms
}
