package broker

import "strings"

// Topics are publish-subscribe: every current subscriber gets each
// message. The subscriptions of a virtual host's topics live in its
// sublist (space.topics), which publishers read without an exclusive lock
// and without holding any lock while they deliver.

// publishTopic delivers m to the subscribers of the topic name and to every
// wildcard subscription matching it.
func (sp *space) publishTopic(name string, m *Message) { sp.publishTopicTo(name, m, true) }

// publishTopicLive delivers m to the subscribers of topic name other than
// durable subscriptions' feeds: a pipelined persistent SEND has already
// put m into the durable subscriptions its journal records name.
func (sp *space) publishTopicLive(name string, m *Message) { sp.publishTopicTo(name, m, false) }

// publishTopicTo publishes m to topic name, to the durable feeds too when
// feeds says so: through its history when it keeps one.
func (sp *space) publishTopicTo(name string, m *Message, feeds bool) {
	if h := sp.lockHistory(name); h != nil {
		sp.publishHistory(h, m, feeds)
		return
	}
	sp.fanOut(name, m, feeds)
}

// fanOut delivers m to the exact and wildcard subscribers of topic name.
func (sp *space) fanOut(name string, m *Message, feeds bool) {
	exact, wild := sp.topics.match(name)
	exact.deliverTo(m, feeds)
	for _, set := range wild {
		set.deliverTo(m, feeds)
	}
}

// addTopicSub registers sub for its pattern (exact or wildcard); a topic
// name seen for the first time is created once create allows it.
func (sp *space) addTopicSub(sub *subscription, create func() *stompError) *stompError {
	return sp.topics.insert(sub, create)
}

// addTopicSubLocked registers sub, creating its topic without asking: for
// a durable subscription's feed, which is created with sp.mu held (the
// sublist's own lock comes after sp.mu in the lock order).
func (sp *space) addTopicSubLocked(sub *subscription) {
	_ = sp.topics.insert(sub, nil)
}

// removeTopicSub unregisters sub; a topic left without subscribers is
// forgotten.
func (sp *space) removeTopicSub(sub *subscription) { sp.topics.remove(sub) }

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
// "*" matches exactly one segment, "#" zero or more. Routing does not call
// it (the sublist's trie does the same per segment), but it stays the
// reference the trie is tested against, and what MatchTopic exports. It is
// the classic
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
