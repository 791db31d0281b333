package cluster

import (
	"regexp"
	"strings"
	"testing"

	"github.com/stompbox/stompbox/broker"
)

// kvKey is what nats.go accepts as a KV key.
var kvKey = regexp.MustCompile(`^[-/_=\.a-zA-Z0-9]+$`)

// Presence keys are valid KV keys, distinct for distinct members, sets,
// virtual hosts and nodes (also where dots could make two readings), and
// bounded in length.
func TestPresenceKeys(t *testing.T) {
	type in struct {
		vhost, set, node string
		m                broker.PresenceMember
	}
	long := strings.Repeat("é", 400)
	cases := []in{
		{"/", "chat.room", "node-a", broker.PresenceMember{User: "alice", ID: "tab1"}},
		{"/", "chat.room", "node-b", broker.PresenceMember{User: "alice", ID: "tab1"}},
		{"/", "chat.room", "node-a", broker.PresenceMember{User: "alice"}},
		{"/", "chat.room", "node-a", broker.PresenceMember{User: "alice", ID: "="}},
		{"/", "chat", "node-a", broker.PresenceMember{User: "room", ID: "alice.tab1"}},
		{"/", "chat.room.alice", "node-a", broker.PresenceMember{User: "tab1"}},
		{"/", "chat..room", "node-a", broker.PresenceMember{User: "a b", ID: "~x"}},
		{"tenant", "chat.room", "node-a", broker.PresenceMember{User: "alice", ID: "tab1"}},
		{"/", long, "node-a", broker.PresenceMember{User: "alice"}},
		{"/", long, "node-a", broker.PresenceMember{User: "bob"}},
		{"/", "x", "node.with.dots", broker.PresenceMember{User: long, ID: long}},
	}
	seen := map[string]in{}
	for _, c := range cases {
		key := presenceKeyOf(c.vhost, c.set, c.node, c.m)
		if !kvKey.MatchString(key) || strings.HasPrefix(key, ".") || strings.HasSuffix(key, ".") || strings.Contains(key, "..") {
			t.Errorf("%+v: key %q is not a valid KV key", c, key)
		}
		if len(key) > maxPresenceKey+2*len(c.node)+2 {
			t.Errorf("%+v: key of %d bytes", c, len(key))
		}
		if prev, dup := seen[key]; dup {
			t.Errorf("%+v and %+v share the key %q", prev, c, key)
		}
		seen[key] = c
	}
	if got := presenceBucketName("sb.test"); got != "SB_TEST_PRESENCE" {
		t.Errorf("bucket name %q", got)
	}
}
