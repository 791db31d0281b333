package main

import (
	"log/slog"
	"testing"
	"time"

	"github.com/stompbox/stompbox/cmd/stompbox/internal/config"
)

// TestPresenceConfigMapping: the presence options reach the broker, a
// grace of 0 (leave at once) as the broker's negative (its 0 is the
// default).
func TestPresenceConfigMapping(t *testing.T) {
	for _, tc := range []struct {
		grace config.Duration
		want  time.Duration
	}{{0, -1}, {config.Duration(3 * time.Second), 3 * time.Second}} {
		c := config.Default()
		c.Presence = config.Presence{Grace: tc.grace, MaxMembers: 5, MaxSets: 6}
		b := serverConfig(c, slog.New(slog.DiscardHandler), nil).Broker
		if b.PresenceGrace != tc.want || b.MaxPresenceMembers != 5 || b.MaxPresenceSets != 6 {
			t.Errorf("presence.grace %v: broker got grace %v, members %d, sets %d; want %v, 5, 6",
				tc.grace, b.PresenceGrace, b.MaxPresenceMembers, b.MaxPresenceSets, tc.want)
		}
	}
}
