package server

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/frames"
)

// connectAt sends CONNECT with extra headers and returns CONNECTED and when
// it arrived.
func (c *rawClient) connectAt(headers ...string) (*frames.Frame, time.Time) {
	c.t.Helper()
	c.send(frame("CONNECT", "", append([]string{"host:test"}, headers...)...))
	select {
	case ev := <-c.events:
		if ev.err != nil || ev.frame == nil || ev.frame.Command != frames.CmdConnected {
			c.t.Fatalf("want CONNECTED first, got %+v", ev)
		}
		return ev.frame, ev.at
	case <-time.After(5 * time.Second):
		c.t.Fatal("no CONNECTED")
	}
	return nil, time.Time{}
}

// timingAttempts runs a timing measurement up to n times and fails only if
// every attempt is off: on a loaded machine one scheduling hiccup can spoil
// a measurement, a real fault spoils them all. measure reports a timing
// problem as a string and fails t itself for anything else.
func timingAttempts(t *testing.T, n int, measure func(t *testing.T) (problem string)) {
	t.Helper()
	var problems []string
	for range n {
		p := measure(t)
		if p == "" {
			if len(problems) > 0 {
				t.Logf("passed after %d spoilt attempts: %s", len(problems), strings.Join(problems, "; "))
			}
			return
		}
		problems = append(problems, p)
	}
	t.Errorf("timing off in all %d attempts:\n%s", n, strings.Join(problems, "\n"))
}

// STOMP 1.2, Heart-beating: the server sends every MAX(sx, cy) and expects
// the client every MAX(cx, sy). Here the client says 100,200 and the server
// 50,300: EOLs every 200ms; the client must beat within 300ms (x tolerance).
func TestHeartbeatServerSendsOnTime(t *testing.T) {
	const interval = 200 * time.Millisecond
	srv := startServer(t, Config{Broker: broker.Config{
		HeartBeat: frames.HeartBeat{Send: 50 * time.Millisecond, Receive: 300 * time.Millisecond},
	}})
	timingAttempts(t, 3, func(t *testing.T) string {
		c := dialRaw(t, srv.addr)
		f, last := c.connectAt("accept-version:1.2", "heart-beat:100,200")
		// Negotiated: the server sends every max(50, 200) ms and wants a
		// beat every max(300, 100) ms.
		if got := header(f, "heart-beat"); got != "200,300" {
			t.Fatalf("CONNECTED heart-beat = %q, want 200,300", got)
		}
		stop := beatEvery(c.conn, 50*time.Millisecond)
		defer stop()

		var gaps []time.Duration
		for _, at := range heartbeatsUntil(t, c, last.Add(1100*time.Millisecond)) {
			gaps = append(gaps, at.Sub(last))
			last = at
		}
		if len(gaps) < 4 || len(gaps) > 6 {
			return fmt.Sprintf("%d heart-beats in 1.1s (gaps %v), want about 5 at %v", len(gaps), gaps, interval)
		}
		for _, g := range gaps {
			if g < interval*8/10 || g > interval*16/10 {
				return fmt.Sprintf("gaps %v, want each %v (x0.8..x1.6)", gaps, interval)
			}
		}
		return ""
	})
}

// A client that negotiated heart-beats and goes silent is closed with
// ERROR heartbeat-timeout after its interval times the tolerance, not
// before; one that keeps beating stays connected past that time.
func TestHeartbeatSilentClientClosed(t *testing.T) {
	const (
		clientInterval = 150 * time.Millisecond
		slack          = 50 * time.Millisecond
	)
	tests := []struct {
		name      string
		tolerance float64 // 0: the default
		want      float64
	}{
		{"default tolerance", 0, 2},
		{"tolerance 3", 3, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, Config{Broker: broker.Config{
				HeartBeat:          frames.HeartBeat{Send: -1, Receive: clientInterval},
				HeartbeatTolerance: tt.tolerance,
			}})
			if got := srv.Broker().Config().HeartbeatTolerance; got != tt.want {
				t.Fatalf("tolerance %v, want %v", got, tt.want)
			}
			deadline := time.Duration(float64(clientInterval) * tt.want)

			t.Run("silent", func(t *testing.T) {
				timingAttempts(t, 3, func(t *testing.T) string {
					c := dialRaw(t, srv.addr)
					sent := time.Now()
					f, _ := c.connectAt("accept-version:1.2", "heart-beat:100,0")
					if got := header(f, "heart-beat"); got != "0,150" {
						t.Fatalf("CONNECTED heart-beat = %q, want 0,150", got)
					}
					e := c.next(deadline + 5*time.Second)
					elapsed := time.Since(sent)
					checkERROR(t, e, errorWant{message: "heart-beat timeout", code: "heartbeat-timeout", retryable: true})
					c.expectClosed(5 * time.Second)
					if elapsed < deadline-slack || elapsed > deadline+4*slack {
						return fmt.Sprintf("closed after %v, want %v (interval %v x tolerance %v)", elapsed, deadline, clientInterval, tt.want)
					}
					return ""
				})
			})

			t.Run("beating", func(t *testing.T) {
				timingAttempts(t, 3, func(t *testing.T) string {
					c := dialRaw(t, srv.addr)
					c.connectAt("accept-version:1.2", "heart-beat:100,0")
					stop := beatEvery(c.conn, clientInterval/6)
					select {
					case ev := <-c.events:
						stop()
						if ev.frame != nil && header(ev.frame, "error-code") == "heartbeat-timeout" {
							return "heart-beat timeout while beating every " + (clientInterval / 6).String()
						}
						t.Fatalf("while beating: %+v", ev)
					case <-time.After(2 * deadline):
					}
					stop()
					c.send(frame("SEND", "still here", "destination:/queue/hb", "receipt:alive"))
					if r := c.next(5 * time.Second); r.Command != frames.CmdReceipt || header(r, "receipt-id") != "alive" {
						if header(r, "error-code") == "heartbeat-timeout" {
							return "heart-beat timeout just after beating"
						}
						t.Fatalf("got %s %v, want RECEIPT alive", r.Command, r.Headers)
					}
					return ""
				})
			})
		})
	}
}

// When either side says 0 (or the client speaks 1.0, which has no
// heart-beats), the server sends no EOLs and does not time the client out.
func TestHeartbeatDisabled(t *testing.T) {
	srv := startServer(t, Config{Broker: broker.Config{
		HeartBeat: frames.HeartBeat{Send: 50 * time.Millisecond, Receive: 50 * time.Millisecond},
	}})
	tests := []struct {
		name    string
		headers []string
	}{
		{"client 0,0", []string{"accept-version:1.2", "heart-beat:0,0"}},
		{"no heart-beat header", []string{"accept-version:1.2"}},
		{"STOMP 1.0 ignores heart-beat", []string{"accept-version:1.0", "heart-beat:100,100"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := dialRaw(t, srv.addr)
			f, _ := c.connectAt(tt.headers...)
			if got := header(f, "heart-beat"); got != "0,0" {
				t.Errorf("CONNECTED heart-beat = %q, want the negotiated 0,0", got)
			}
			select {
			case ev := <-c.events:
				t.Fatalf("silent connection got %+v", ev)
			case <-time.After(time.Second):
			}
			c.send(frame("SEND", "x", "destination:/queue/nohb", "receipt:alive"))
			if r := c.next(5 * time.Second); r.Command != frames.CmdReceipt {
				t.Fatalf("got %s, want RECEIPT", r.Command)
			}
		})
	}
}

// A heart-beat header that is not two non-negative integers is refused.
func TestHeartbeatInvalidHeader(t *testing.T) {
	srv := startServer(t, Config{})
	for _, value := range []string{"abc", "100", "-1,100", "100,x", "1,2,3", ",", "99999999999,0"} {
		t.Run(value, func(t *testing.T) {
			c := dialRaw(t, srv.addr)
			c.send(frame("CONNECT", "", "accept-version:1.2", "host:test", "heart-beat:"+value))
			c.expectERROR(errorWant{message: "invalid heart-beat header", code: "invalid-header"})
		})
	}
}

// go-stomp negotiates heart-beats and stays connected past several of the
// server's read deadlines, then still works. go-stomp offers 200,100 and
// beats at the server's wish (20ms); the server sends every
// max(50,100)=100ms and closes go-stomp if silent for max(200,20)x2=400ms.
func TestHeartbeatGoStomp(t *testing.T) {
	srv := startServer(t, Config{Broker: broker.Config{
		HeartBeat: frames.HeartBeat{Send: 50 * time.Millisecond, Receive: 20 * time.Millisecond},
	}})
	timingAttempts(t, 3, func(t *testing.T) string {
		c, err := stomp.Dial("tcp", srv.addr, stomp.ConnOpt.HeartBeat(200*time.Millisecond, 100*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = c.Disconnect() }()
		sub, err := c.Subscribe("/queue/hb", stomp.AckAuto)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-sub.C:
			if m.Err != nil && m.Err.Error() == "heart-beat timeout" {
				return "go-stomp timed out while idle"
			}
			t.Fatalf("idle subscription got %+v", m)
		case <-time.After(900 * time.Millisecond): // over 2 server deadlines
		}
		if err := c.Send("/queue/hb", "text/plain", []byte("after idle"), stomp.SendOpt.Receipt); err != nil {
			return fmt.Sprintf("send after idle: %v", err)
		}
		select {
		case m := <-sub.C:
			if m.Err != nil || string(m.Body) != "after idle" {
				t.Fatalf("got %+v", m)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no message")
		}
		if err := c.Disconnect(); err != nil {
			t.Fatal(err)
		}
		return ""
	})
}

// heartbeatsUntil collects when c received heart-beats until end, failing
// on anything else.
func heartbeatsUntil(t *testing.T, c *rawClient, end time.Time) []time.Time {
	t.Helper()
	var beats []time.Time
	for range 1000 {
		wait := time.Until(end)
		if wait <= 0 {
			break
		}
		select {
		case ev := <-c.events:
			if !ev.heartbeat {
				t.Fatalf("want only heart-beats, got %+v", ev)
			}
			beats = append(beats, ev.at)
		case <-time.After(wait):
		}
	}
	return beats
}

// A client asking heart-beat:1000,1000 of a server with the default 10s
// interval and 1s minimum gets an EOL about every second (CONNECTED says
// 1000,10000). Bounds are generous: 2 to 5 EOLs in 3.5s, never two within
// half a second.
func TestHeartbeatMinIntervalHonoursClient(t *testing.T) {
	srv := startServer(t, Config{})
	c := dialRaw(t, srv.addr)
	f, connected := c.connectAt("accept-version:1.2", "heart-beat:1000,1000")
	if got := header(f, "heart-beat"); got != "1000,10000" {
		t.Fatalf("CONNECTED heart-beat:%s, want 1000,10000", got)
	}
	stop := beatEvery(c.conn, time.Second) // our side of the bargain
	defer stop()
	beats := heartbeatsUntil(t, c, connected.Add(3500*time.Millisecond))
	if len(beats) < 2 || len(beats) > 5 {
		t.Fatalf("%d heart-beats in 3.5s, want about 3", len(beats))
	}
	prev := connected
	for i, at := range beats {
		if gap := at.Sub(prev); gap < 500*time.Millisecond {
			t.Errorf("heart-beat %d came %v after the one before, faster than the 1s asked", i, gap)
		}
		prev = at
	}
}
