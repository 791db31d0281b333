package broker

import (
	"strconv"
	"strings"
	"testing"

	"github.com/stompbox/stompbox/frames"
)

// Each limit refuses the frame that would pass it with the ERROR named in
// docs/configuration.md, and accepts everything up to it.
func TestLimitsRefuseWithTheirError(t *testing.T) {
	cases := []struct {
		name   string
		cfg    Config
		setup  func(c *client) // frames that fit the limit
		over   []string        // the frame past it: command, body, headers...
		code   string
		reason CloseReason
	}{
		{
			name: "MaxQueues",
			cfg:  Config{MaxQueues: 2},
			setup: func(c *client) {
				c.mustSend(frames.CmdSend, "a", "destination:/queue/a")
				c.mustSend(frames.CmdSend, "b", "destination:/queue/b")
			},
			over: []string{"SEND", "c", "destination:/queue/c"},
			code: CodeLimitExceeded, reason: CloseLimitExceeded,
		},
		{
			name: "MaxQueueBytes",
			cfg:  Config{MaxQueueBytes: 1000, FullPolicy: FullError},
			setup: func(c *client) {
				c.mustSend(frames.CmdSend, strings.Repeat("x", 500), "destination:/queue/a")
			},
			over: []string{"SEND", strings.Repeat("y", 500), "destination:/queue/a"},
			code: CodeLimitExceeded, reason: CloseLimitExceeded,
		},
		{
			name: "MaxTotalQueuedBytes",
			cfg:  Config{MaxTotalQueuedBytes: 1000, FullPolicy: FullError},
			setup: func(c *client) {
				c.mustSend(frames.CmdSend, strings.Repeat("x", 500), "destination:/queue/a")
			},
			over: []string{"SEND", strings.Repeat("y", 500), "destination:/queue/b"},
			code: CodeLimitExceeded, reason: CloseLimitExceeded,
		},
		{
			name: "MaxTransactionFrames",
			cfg:  Config{MaxTransactionFrames: 2},
			setup: func(c *client) {
				c.mustSend(frames.CmdBegin, "", "transaction:t")
				c.mustSend(frames.CmdSend, "1", "destination:/topic/t", "transaction:t")
				c.mustSend(frames.CmdSend, "2", "destination:/topic/t", "transaction:t")
			},
			over: []string{"SEND", "3", "destination:/topic/t", "transaction:t"},
			code: CodeLimitExceeded, reason: CloseLimitExceeded,
		},
		{
			name:  "destination length",
			cfg:   Config{},
			setup: func(*client) {},
			over:  []string{"SEND", "x", "destination:/queue/" + strings.Repeat("d", maxDestinationLength)},
			code:  CodeInvalidDestination, reason: CloseProtocolError,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := New(tc.cfg)
			c := newClient(t, b)
			c.connect()
			tc.setup(c)
			c.poll()
			err := c.send(frames.ParseCommand([]byte(tc.over[0])), tc.over[1], tc.over[2:]...)
			if !isClosed(err) {
				t.Fatalf("frame past the limit: %v, want the session closed", err)
			}
			f := c.next()
			if f.Command != frames.CmdError || hdr(f, "error-code") != tc.code {
				t.Fatalf("got %s %v, want ERROR %s", f.Command, headerLines(f), tc.code)
			}
			if r, _ := c.s.CloseReason(); r != tc.reason {
				t.Fatalf("close reason %v, want %v", r, tc.reason)
			}
		})
	}
}

// A client-ack topic subscriber that never acknowledges is closed as a slow
// consumer at MaxTopicUnacked (or its prefetch-count), so unacknowledged
// topic deliveries cannot grow without bound; other subscribers go on.
func TestLimitTopicUnacked(t *testing.T) {
	b := New(Config{MaxTopicUnacked: 5})
	lazy := newClient(t, b)
	lazy.connect()
	lazy.mustSend(frames.CmdSubscribe, "", "destination:/topic/t", "id:s", "ack:client")
	bystander := newClient(t, b)
	bystander.connect()
	bystander.mustSend(frames.CmdSubscribe, "", "destination:/topic/t", "id:s")
	pub := newClient(t, b)
	pub.connect()
	var got []string
	var fs []*frames.Frame // the lazy one reads everything, it just never ACKs
	for i := range 6 {
		pub.mustSend(frames.CmdSend, strconv.Itoa(i), "destination:/topic/t")
		got = append(got, bodies(bystander.poll())...)
		fs = append(fs, lazy.poll()...)
	}
	last := fs[len(fs)-1]
	if hdr(last, "error-code") != CodeSlowConsumer || len(bodies(fs)) != 5 {
		t.Fatalf("lazy subscriber got %d messages then %v, want 5 then ERROR slow-consumer", len(bodies(fs)), headerLines(last))
	}
	if len(got) != 6 {
		t.Fatalf("bystander got %v, want all 6", got)
	}
	if n := b.Stats().SlowConsumers.Load(); n != 1 {
		t.Fatalf("SlowConsumers = %d, want 1", n)
	}
}
