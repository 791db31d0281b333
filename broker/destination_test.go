package broker

import (
	"strings"
	"testing"
)

func TestParseDestination(t *testing.T) {
	tests := []struct {
		dest     string
		kind     destKind
		name     string
		wantCode string // "" = valid
	}{
		{"/topic/a", kindTopic, "a", ""},
		{"/topic/a.b.c", kindTopic, "a.b.c", ""},
		{"/topic/a.*", kindTopic, "a.*", ""}, // wildcards pass here; SUBSCRIBE and SEND decide
		{"/topic/#", kindTopic, "#", ""},
		{"/queue/orders", kindQueue, "orders", ""},
		{"/queue/DLQ.orders", kindQueue, "DLQ.orders", ""},
		{"/queue/a/b", kindQueue, "a/b", ""},
		{"/temp-queue/replies", kindTempQueue, "replies", ""},
		{"/reply-queue/s1/replies", kindReplyQueue, "s1/replies", ""},
		{"/topic/" + strings.Repeat("x", maxDestinationLength-len("/topic/")), kindTopic,
			strings.Repeat("x", maxDestinationLength-len("/topic/")), ""},

		{"", 0, "", CodeInvalidDestination},
		{"orders", 0, "", CodeInvalidDestination},
		{"/topics/a", 0, "", CodeInvalidDestination},
		{"/exchange/a", 0, "", CodeInvalidDestination},
		{"/Topic/a", 0, "", CodeInvalidDestination},
		{"/topic/", 0, "", CodeInvalidDestination},
		{"/queue/", 0, "", CodeInvalidDestination},
		{"/temp-queue/", 0, "", CodeInvalidDestination},
		{"/queue/a.*", 0, "", CodeInvalidDestination},
		{"/queue/#", 0, "", CodeInvalidDestination},
		{"/temp-queue/r*", 0, "", CodeInvalidDestination},
		{"/topic/" + strings.Repeat("x", maxDestinationLength-len("/topic/")+1), 0, "", CodeInvalidDestination},
	}
	for _, tc := range tests {
		kind, name, err := parseDestination(tc.dest)
		label := tc.dest
		if len(label) > 40 {
			label = label[:40] + "..."
		}
		if tc.wantCode != "" {
			if err == nil {
				t.Errorf("%q: accepted as (%d, %q), want %s", label, kind, name, tc.wantCode)
				continue
			}
			if err.code != tc.wantCode || err.reason != CloseProtocolError || err.retryable {
				t.Errorf("%q: error %+v, want code %s, protocol-error, not retryable", label, err, tc.wantCode)
			}
			if len(err.detail) > 300 {
				t.Errorf("%q: detail of %d bytes echoes too much of the destination", label, len(err.detail))
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", label, err)
			continue
		}
		if kind != tc.kind || name != tc.name {
			t.Errorf("%q: got (%d, %q), want (%d, %q)", label, kind, name, tc.kind, tc.name)
		}
	}
}
