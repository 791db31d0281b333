package main

import (
	"log/slog"
	"testing"
	"time"

	"github.com/stompbox/stompbox/cmd/stompbox/internal/config"
)

// TestEdgeConfigMapping: the WebSocket ping interval, the shutdown
// reconnect window and the dedupe settings reach the server and the
// broker, 0 (off in the configuration) as the libraries' negative.
func TestEdgeConfigMapping(t *testing.T) {
	tests := []struct {
		name                 string
		ping, window, dedupe time.Duration
		maxKeys              int
		wantPing, wantWindow time.Duration
		wantDedupe           time.Duration
	}{
		{"set", 5 * time.Second, 3 * time.Second, time.Minute, 7, 5 * time.Second, 3 * time.Second, time.Minute},
		{"off", 0, 0, 0, 1, -1, -1, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := config.Default()
			c.WebSocket.PingInterval = config.Duration(tt.ping)
			c.ShutdownReconnectWindow = config.Duration(tt.window)
			c.Dedupe.Window = config.Duration(tt.dedupe)
			c.Dedupe.MaxKeysPerUser = tt.maxKeys
			sc := serverConfig(c, slog.New(slog.DiscardHandler), nil)
			if sc.WebSocketPingInterval != tt.wantPing || sc.ShutdownReconnectWindow != tt.wantWindow ||
				sc.Broker.DedupeWindow != tt.wantDedupe || sc.Broker.DedupeMaxKeysPerUser != tt.maxKeys {
				t.Fatalf("got ping %v, window %v, dedupe %v, keys %d; want %v, %v, %v, %d",
					sc.WebSocketPingInterval, sc.ShutdownReconnectWindow, sc.Broker.DedupeWindow, sc.Broker.DedupeMaxKeysPerUser,
					tt.wantPing, tt.wantWindow, tt.wantDedupe, tt.maxKeys)
			}
		})
	}
}
