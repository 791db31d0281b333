package broker

import (
	"testing"
	"time"

	"github.com/stompbox/stompbox/frames"
)

// The server sends heart-beats as often as the client asks, down to
// HeartbeatMinInterval; it expects them no more often than its own
// HeartBeat.Receive; CONNECTED carries what was negotiated.
func TestHeartBeatNegotiationTable(t *testing.T) {
	tenSeconds := frames.HeartBeat{Send: 10 * time.Second, Receive: 10 * time.Second}
	tests := []struct {
		name       string
		server     frames.HeartBeat
		min        time.Duration
		client     string // CONNECT heart-beat; "" for none
		version    string
		wantSend   time.Duration // server->client
		wantExpect time.Duration // client->server
	}{
		{"1000,1000 gets a heart-beat every second", tenSeconds, 0, "1000,1000", "1.2", time.Second, 10 * time.Second},
		{"faster than the minimum is raised to it", tenSeconds, 0, "100,250", "1.2", time.Second, 10 * time.Second},
		{"a configured minimum", tenSeconds, 3 * time.Second, "1000,1000", "1.2", 3 * time.Second, 10 * time.Second},
		{"slower than both: the client's", tenSeconds, 0, "30000,30000", "1.2", 30 * time.Second, 30 * time.Second},
		{"between the minimum and the interval: the client's", tenSeconds, 0, "0,4000", "1.2", 4 * time.Second, 0},
		{"client wants none", tenSeconds, 0, "5000,0", "1.2", 0, 10 * time.Second},
		{"client sends none", tenSeconds, 0, "0,1000", "1.2", time.Second, 0},
		{"none either way", tenSeconds, 0, "0,0", "1.2", 0, 0},
		{"no header", tenSeconds, 0, "", "1.2", 0, 0},
		{"STOMP 1.0 has no heart-beats", tenSeconds, 0, "1000,1000", "1.0", 0, 0},
		{"server sends none", frames.HeartBeat{Send: -1, Receive: 10 * time.Second}, 0, "1000,1000", "1.2", 0, 10 * time.Second},
		{"server expects none", frames.HeartBeat{Send: 10 * time.Second, Receive: -1}, 0, "1000,1000", "1.2", time.Second, 0},
		{"a server Send below the minimum lowers it", frames.HeartBeat{Send: 200 * time.Millisecond, Receive: time.Second}, 0, "100,100", "1.2", 200 * time.Millisecond, time.Second},
		{"server heart-beats off", frames.HeartBeat{Send: -1, Receive: -1}, 0, "1000,1000", "1.2", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := New(Config{HeartBeat: tt.server, HeartbeatMinInterval: tt.min, HeartbeatTolerance: 2})
			c := newClient(t, b)
			headers := []string{"accept-version:" + tt.version}
			if tt.client != "" {
				headers = append(headers, "heart-beat:"+tt.client)
			}
			f := c.connect(headers...)
			if got := c.s.HeartbeatInterval(); got != tt.wantSend {
				t.Errorf("server->client every %v, want %v", got, tt.wantSend)
			}
			if got := c.s.ReadTimeout(); got != 2*tt.wantExpect {
				t.Errorf("read timeout %v, want 2 x %v", got, tt.wantExpect)
			}
			want := frames.AppendHeartBeat(nil, frames.HeartBeat{Send: tt.wantSend, Receive: tt.wantExpect})
			if tt.version == "1.0" {
				want = []byte("0,0")
			}
			if got := hdr(f, "heart-beat"); got != string(want) {
				t.Errorf("CONNECTED heart-beat:%s, want %s", got, want)
			}
		})
	}
}
