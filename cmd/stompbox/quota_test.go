package main

import (
	"log/slog"
	"testing"
	"time"

	"github.com/stompbox/stompbox/cmd/stompbox/internal/config"
)

// TestQuotaConfigMapping: the per-user quotas and the durable idle TTL
// reach the broker, 0 (unlimited in the configuration) as the broker's
// negative.
func TestQuotaConfigMapping(t *testing.T) {
	c := config.Default()
	c.Limits.MaxQueuesPerUser = 7
	c.Limits.MaxDurablesPerUser = 0
	c.Limits.DurableIdleTTL = config.Duration(90 * time.Second)
	b := serverConfig(c, slog.New(slog.DiscardHandler), nil).Broker
	if b.MaxQueuesPerUser != 7 || b.MaxDurablesPerUser != -1 || b.DurableIdleTTL != 90*time.Second {
		t.Fatalf("broker got queues/user %d, durables/user %d, idle TTL %v; want 7, -1, 1m30s",
			b.MaxQueuesPerUser, b.MaxDurablesPerUser, b.DurableIdleTTL)
	}
}
