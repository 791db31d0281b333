package cluster

import (
	"testing"
	"time"
)

// TestHistoryNames: the stream, subjects and epoch of a history rule.
func TestHistoryNames(t *testing.T) {
	id := historyRuleID("/topic/chat.#")
	if len(id) != 12 || id == historyRuleID("/topic/chat.*") || id != historyRuleID("/topic/chat.#") {
		t.Fatalf("rule ids %q %q", id, historyRuleID("/topic/chat.*"))
	}
	if got, want := historyStreamName("sb.x", "/", id), "SB_X_H_~2f_"+id; got != want {
		t.Fatalf("stream name %q, want %q", got, want)
	}
	if got, want := historyStreamSubjects("sb", "/", id), "sb.h.~2f."+id+".>"; got != want {
		t.Fatalf("subjects %q, want %q", got, want)
	}
	base := historyBase("sb", "/", id)
	for _, topic := range []string{"chat", "chat.a.b", "chat.x y.~7e", "chat.*.>"} {
		subj := historySubject("sb", "/", id, topic)
		if got, ok := topicOfSubject(base, subj); !ok || got != topic {
			t.Fatalf("%q -> %q -> %q %v", topic, subj, got, ok)
		}
	}
	if _, ok := topicOfSubject(base, base+"a..b"); ok {
		t.Fatal("an empty token decoded")
	}
	for _, at := range []time.Time{time.Unix(0, 1), time.Now(), time.Date(2262, 1, 1, 0, 0, 0, 0, time.UTC)} {
		e, err := historyEpoch(at)
		if err != nil || !epochPattern.MatchString(e) {
			t.Fatalf("epoch of %v: %q %v", at, e, err)
		}
	}
	if e, err := historyEpoch(time.Time{}); err == nil {
		t.Fatalf("epoch of the zero time: %q", e)
	}
}
