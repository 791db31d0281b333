package broker

import (
	"strings"
	"testing"
	"time"
)

// topicMatch backtracks over every "#" without memoisation: a pattern of
// repeated "#" segments that cannot match costs combinatorial time, and it
// runs on every publisher's goroutine for every SEND to any topic. A client
// needs only one SUBSCRIBE (a valid pattern of ~40 bytes) to stall every
// topic publisher in the broker.
func TestReviewTopicMatchWildcardBlowup(t *testing.T) {
	pattern := strings.Repeat("#.", 12) + "z" // valid: validPattern accepts it
	name := strings.Repeat("a.", 40) + "b"    // a plain topic name
	if !validPattern(pattern) || len(pattern) > maxDestinationLength {
		t.Fatal("pattern should be accepted")
	}
	done := make(chan bool, 1)
	go func() { done <- topicMatch(pattern, name) }()
	select {
	case m := <-done:
		if m {
			t.Fatal("should not match")
		}
	case <-time.After(2 * time.Second):
		t.Fatalf("topicMatch(%q, %q) did not finish in 2s: exponential backtracking", pattern, name)
	}
}
