package broker

import (
	"testing"

	"github.com/stompbox/stompbox/frames"
)

// topicMatchCases hold for topicMatch, the reference matcher, and for the
// sublist's trie (TestSublistMatchesTopicMatchCases).
var topicMatchCases = []struct {
	pattern, name string
	want          bool
}{
	// exact names
	{"a", "a", true},
	{"a.b", "a.b", true},
	{"a.b", "a.c", false},
	{"a.b", "a", false},
	{"a", "a.b", false},
	{"a.b", "a.bc", false},
	// * is exactly one segment
	{"*", "a", true},
	{"*", "a.b", false},
	{"a.*", "a.b", true},
	{"a.*", "a", false},
	{"a.*", "a.b.c", false},
	{"a.*.c", "a.b.c", true},
	{"a.*.c", "a.x.c", true},
	{"a.*.c", "a.c", false},
	{"a.*.c", "a.b.b.c", false},
	{"a.*.c", "a.b.d", false},
	{"*.b", "a.b", true},
	{"*.b", "x.b", true},
	{"*.b", "b", false},
	{"*.b", "a.b.c", false},
	{"*.*", "a.b", true},
	{"*.*", "a", false},
	// # is zero or more segments
	{"#", "a", true},
	{"#", "a.b.c", true},
	{"a.#", "a", true},
	{"a.#", "a.b", true},
	{"a.#", "a.b.c", true},
	{"a.#", "b", false},
	{"a.#", "ab", false},
	{"a.#", "b.a", false},
	{"#.c", "c", true},
	{"#.c", "a.b.c", true},
	{"#.c", "a.b", false},
	{"#.c", "a.c.d", false},
	{"a.#.c", "a.c", true},
	{"a.#.c", "a.b.c", true},
	{"a.#.c", "a.b.b.c", true},
	{"a.#.c", "a.b", false},
	{"a.#.c", "a.c.d", false},
	{"a.#.#", "a", true},
	{"a.#.*", "a", false},
	{"a.#.*", "a.b", true},
	{"a.#.*", "a.b.c", true},
	{"#.*", "a", true},
	{"*.#", "a", true},
	{"*.#", "a.b.c", true},
	{"a.*.#", "a", false},
	{"a.*.#", "a.b", true},
	{"a.*.#", "a.b.c.d", true},
}

func TestTopicMatch(t *testing.T) {
	for _, tc := range topicMatchCases {
		if got := topicMatch(tc.pattern, tc.name); got != tc.want {
			t.Errorf("topicMatch(%q, %q) = %v, want %v", tc.pattern, tc.name, got, tc.want)
		}
	}
}

func TestValidPattern(t *testing.T) {
	tests := []struct {
		pattern string
		want    bool
	}{
		{"a", true},
		{"a.b.c", true},
		{"*", true},
		{"#", true},
		{"a.*", true},
		{"a.#", true},
		{"*.b.#", true},
		{"#.#", true},
		{"", false},
		{"a.", false},
		{".a", false},
		{"a..b", false},
		{"a*", false},
		{"a.b#", false},
		{"**", false},
		{"a.*b.c", false},
		{"#a", false},
	}
	for _, tc := range tests {
		if got := validPattern(tc.pattern); got != tc.want {
			t.Errorf("validPattern(%q) = %v, want %v", tc.pattern, got, tc.want)
		}
	}
}

// A publish reaches exact and matching wildcard subscribers once each, and
// nobody else.
func TestTopicFanOutToExactAndWildcardSubscribers(t *testing.T) {
	b := New(Config{})
	subs := map[string]*client{}
	for _, dest := range []string{"/topic/a.b", "/topic/a.*", "/topic/a.#", "/topic/#", "/topic/*.c", "/topic/a.b.c", "/topic/x"} {
		c := newClient(t, b)
		c.connect()
		c.mustSend(frames.CmdSubscribe, "", "destination:"+dest, "id:0")
		subs[dest] = c
	}
	pub := newClient(t, b)
	pub.connect()
	pub.mustSend(frames.CmdSend, "hello", "destination:/topic/a.b")
	want := map[string]bool{"/topic/a.b": true, "/topic/a.*": true, "/topic/a.#": true, "/topic/#": true}
	for dest, c := range subs {
		fs := c.poll()
		if !want[dest] {
			if len(fs) != 0 {
				t.Errorf("%s got %v", dest, commands(fs))
			}
			continue
		}
		if len(fs) != 1 || string(fs[0].Body) != "hello" || hdr(fs[0], "destination") != "/topic/a.b" {
			t.Errorf("%s got %v", dest, commands(fs))
		}
	}
	if fs := pub.poll(); len(fs) != 0 {
		t.Errorf("publisher got %v", commands(fs))
	}
}
