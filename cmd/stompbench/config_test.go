package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stompbox/stompbox/frames"
)

func TestParseFlagsRejects(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-url", "http://127.0.0.1:1"}, `scheme "http" not supported`},
		{[]string{"-url", "stomp://127.0.0.1"}, "want stomp://host:port"},
		{[]string{"-url", "::"}, "-url"},
		{[]string{"-scenario", "fanout"}, `-scenario "fanout"`},
		{[]string{"-messages", "0"}, "-messages must be positive"},
		{[]string{"-rate", "0"}, "-rate must be positive"},
		{[]string{"-rate", "-5"}, "-rate must be positive"},
		{[]string{"-producers", "0"}, "-producers must be positive"},
		{[]string{"-consumers", "-1"}, "-consumers must be positive"},
		{[]string{"-subscribers", "0"}, "-subscribers must be positive"},
		{[]string{"-prefetch", "0"}, "-prefetch must be positive"},
		{[]string{"-window", "0"}, "-window must be positive"},
		{[]string{"-connections", "0"}, "-connections must be positive"},
		{[]string{"-duration", "0s"}, "-duration must be positive"},
		{[]string{"-timeout", "0s"}, "-timeout must be positive"},
		{[]string{"-body-size", "-1"}, "-body-size must not be negative"},
		{[]string{"-heartbeat", "10s"}, "want send,receive"},
		{[]string{"-heartbeat", "10s,soon"}, `"soon" is not a duration`},
		{[]string{"-broker-pid", "-2"}, "-broker-pid"},
		{[]string{"extra"}, `unexpected argument "extra"`},
	} {
		_, err := ParseFlags(tc.args, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want it to say %q", tc.args, err, tc.want)
		}
	}
}

func TestParseFlagsDefaults(t *testing.T) {
	for _, tc := range []struct {
		args      []string
		transport string
		dest      string
		host      string
	}{
		{nil, "tcp", "/queue/stompbench", "/"},
		{[]string{"-scenario", "topic", "-url", "ws://localhost:15674/ws"}, "ws", "/topic/stompbench", "/"},
		{[]string{"-scenario", "idle", "-host", "vh1", "-destination", "/queue/x"}, "tcp", "/queue/x", "vh1"},
	} {
		cfg, err := ParseFlags(tc.args, &bytes.Buffer{})
		if err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		if cfg.Transport() != tc.transport || cfg.Destination != tc.dest || cfg.Host != tc.host {
			t.Errorf("%q: transport %q destination %q host %q, want %q %q %q", tc.args, cfg.Transport(), cfg.Destination, cfg.Host, tc.transport, tc.dest, tc.host)
		}
	}
	cfg, err := ParseFlags([]string{"-heartbeat", "5000,250ms"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if want := (frames.HeartBeat{Send: 5 * time.Second, Receive: 250 * time.Millisecond}); cfg.heartBeat != want {
		t.Errorf("heart-beat %+v, want %+v", cfg.heartBeat, want)
	}
}

func TestExitStatus(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(t.Context(), []string{"-messages", "0"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "-messages") {
		t.Errorf("bad flags: status %d, stderr %q; want 2 and the reason", code, stderr.String())
	}
	stderr.Reset()
	if code := run(t.Context(), []string{"-h"}, &stdout, &stderr); code != 0 || !strings.Contains(stderr.String(), "-scenario") {
		t.Errorf("-h: status %d, want 0 and the usage", code)
	}
}

func TestIdleRefusesMoreConnectionsThanTheHardLimit(t *testing.T) {
	err := raiseNoFile(1 << 40)
	if err == nil || !strings.Contains(err.Error(), "hard limit") {
		t.Fatalf("raiseNoFile(2^40) = %v, want a clear refusal naming the hard limit", err)
	}
}
