package broker

import (
	"strings"
	"sync/atomic"
)

// topic is publish-subscribe: every current subscriber gets each message.
// Publishing reads a copy-on-write snapshot of the subscribers, so it takes
// no lock; subscribing and unsubscribing replace the snapshot under
// space.mu.
type topic struct {
	name string // immutable
	subs atomic.Pointer[[]*subscription]
}

// publishTopic delivers m to the subscribers of the topic name and to every
// wildcard subscription matching it.
func (sp *space) publishTopic(name string, m *Message) {
	sp.mu.RLock()
	t := sp.topics[name]
	sp.mu.RUnlock()
	if t != nil {
		for _, sub := range *t.subs.Load() {
			sub.deliverTopic(m)
		}
	}
	for _, sub := range *sp.wildcards.Load() {
		if topicMatch(sub.pattern, name) {
			sub.deliverTopic(m)
		}
	}
}

// addTopicSub registers sub for its pattern (exact or wildcard); a topic
// name seen for the first time is created once create allows it.
func (sp *space) addTopicSub(sub *subscription, create func() *stompError) *stompError {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if !isWildcard(sub.pattern) && sp.topics[sub.pattern] == nil {
		if err := create(); err != nil {
			return err
		}
	}
	sp.addTopicSubLocked(sub)
	return nil
}

func (sp *space) addTopicSubLocked(sub *subscription) {
	if isWildcard(sub.pattern) {
		sp.wildcards.Store(withSub(*sp.wildcards.Load(), sub))
		return
	}
	t := sp.topics[sub.pattern]
	if t == nil {
		t = &topic{name: sub.pattern}
		t.subs.Store(new([]*subscription))
		sp.topics[sub.pattern] = t
	}
	t.subs.Store(withSub(*t.subs.Load(), sub))
}

// removeTopicSub unregisters sub; a topic left without subscribers is
// forgotten.
func (sp *space) removeTopicSub(sub *subscription) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if isWildcard(sub.pattern) {
		sp.wildcards.Store(withoutSub(*sp.wildcards.Load(), sub))
		return
	}
	t := sp.topics[sub.pattern]
	if t == nil {
		return
	}
	rest := withoutSub(*t.subs.Load(), sub)
	if len(*rest) == 0 {
		delete(sp.topics, sub.pattern)
	}
	t.subs.Store(rest)
}

func withSub(subs []*subscription, sub *subscription) *[]*subscription {
	next := make([]*subscription, len(subs), len(subs)+1)
	copy(next, subs)
	next = append(next, sub)
	return &next
}

func withoutSub(subs []*subscription, sub *subscription) *[]*subscription {
	next := make([]*subscription, 0, len(subs))
	for _, s := range subs {
		if s != sub {
			next = append(next, s)
		}
	}
	return &next
}

func isWildcard(pattern string) bool { return strings.ContainsAny(pattern, "*#") }

// validPattern accepts dot-separated segments where "*" and "#" stand alone.
func validPattern(p string) bool {
	for seg := range strings.SplitSeq(p, ".") {
		if seg == "" || (len(seg) > 1 && strings.ContainsAny(seg, "*#")) {
			return false
		}
	}
	return true
}

// topicMatch reports whether a topic name matches a subscription pattern:
// "*" matches exactly one segment, "#" zero or more. It is the classic
// glob matcher over segments: only the last "#" is ever backtracked to, so
// it takes time proportional to len(pattern) x len(name) at worst, never
// exponential (a pattern like "#.#.#.#.z" must not stall publishers). It
// works on byte offsets and allocates nothing.
func topicMatch(pattern, name string) bool {
	p, n := 0, 0          // offsets of the current pattern and name segments
	hashP, hashN := -1, 0 // after the last "#": where its pattern continues, and the name offset it has reached
	for n <= len(name) {
		if p <= len(pattern) {
			pseg, pnext := segmentAt(pattern, p)
			if pseg == "#" {
				hashP, hashN, p = pnext, n, pnext // try "#" as zero segments first
				continue
			}
			nseg, nnext := segmentAt(name, n)
			if pseg == "*" || pseg == nseg {
				p, n = pnext, nnext
				continue
			}
		}
		if hashP < 0 {
			return false
		}
		_, hashN = segmentAt(name, hashN) // the last "#" takes one more segment
		p, n = hashP, hashN
	}
	for p <= len(pattern) { // what is left of the pattern must match nothing
		pseg, pnext := segmentAt(pattern, p)
		if pseg != "#" {
			return false
		}
		p = pnext
	}
	return true
}

// segmentAt returns the dot-separated segment of s starting at offset i and
// the offset of the next one (len(s)+1 past the last).
func segmentAt(s string, i int) (string, int) {
	if j := strings.IndexByte(s[i:], '.'); j >= 0 {
		return s[i : i+j], i + j + 1
	}
	return s[i:], len(s) + 1
}
