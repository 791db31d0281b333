package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestTopicHistoryOption: topics.history as a YAML list and in the flag
// form, and the errors a bad rule gets at startup.
func TestTopicHistoryOption(t *testing.T) {
	want := HistoryRules{{Pattern: "/topic/chat.#", Size: 1000, MaxAge: Duration(24 * time.Hour)}, {Pattern: "/topic/feed", Size: 5}}
	l, err := load(t, []string{"-config", "stompbox.yaml"}, nil,
		"topics:\n  history:\n    - {pattern: \"/topic/chat.#\", size: 1000, max_age: 24h}\n    - pattern: /topic/feed\n      size: 5\n")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(l.Config.Topics.History, want) {
		t.Fatalf("from YAML: %+v, want %+v", l.Config.Topics.History, want)
	}
	l, err = load(t, []string{"-topic-history", "/topic/chat.#=1000/24h,/topic/feed=5"}, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(l.Config.Topics.History, want) {
		t.Fatalf("from the flag: %+v, want %+v", l.Config.Topics.History, want)
	}
	if got := l.Config.Topics.History.Broker(); len(got) != 2 || got[0].MaxAge != 24*time.Hour || got[1].Size != 5 {
		t.Fatalf("broker rules %+v", got)
	}
	for _, tc := range []struct {
		args       []string
		file, want string
	}{
		{nil, "topics:\n  history:\n    - {pattern: \"/topic/a\", size: 0}\n", "size must be > 0"},
		{nil, "topics:\n  history:\n    - {pattern: \"/queue/a\", size: 1}\n", "must be /topic/"},
		{nil, "topics:\n  history:\n    - {pattern: \"/topic/a.b#\", size: 1}\n", "whole dot-separated segment"},
		{nil, "topics:\n  history:\n    - {pattern: \"/topic/a\", size: 1, max_age: -1s}\n", "max_age must be >= 0"},
		{nil, "topics:\n  history:\n    - {pattern: \"/topic/a\"}\n", "pattern and size are required"},
		{nil, "topics:\n  history:\n    - {pattern: \"/topic/a\", size: 1, ttl: 1s}\n", "unknown key ttl"},
		{nil, "topics:\n  history: /topic/a\n", "want a list"},
		{[]string{"-topic-history", "/topic/a"}, "", "want pattern=size"},
		{[]string{"-topic-history", "/topic/a=x"}, "", "invalid size"},
		{[]string{"-topic-history-max-bytes", "0"}, "", "topics.history_max_bytes"},
	} {
		args := tc.args
		if tc.file != "" {
			args = append(args, "-config", "stompbox.yaml")
		}
		_, err := load(t, args, nil, tc.file)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %q: %v, want an error with %q", tc.args, tc.file, err, tc.want)
		}
	}
}
