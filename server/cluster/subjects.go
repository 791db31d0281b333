package cluster

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// How STOMP names map onto NATS subjects, streams and consumers.
//
// Every subject starts with the cluster's prefix (Config.Name), then a
// class token ("t" topics, "q" queues), then the virtual host escaped as one
// token, then the destination's dot-separated segments, each escaped:
//
//	<prefix>.t.<vhost>.<segment>...   topic (name without /topic/)
//	<prefix>.q.<vhost>.<segment>...   queue (name without /queue/)
//	<prefix>.h.<vhost>.<rule>.<segment>...   topic history (router_history.go)
//
// A segment made only of [A-Za-z0-9_-] (and not empty) is its own token;
// any other segment becomes "~" followed by the lowercase hex of its bytes.
// Plain tokens never contain "~" and escaped ones always start with it, so
// the escaping is injective, and neither form can be "*", ">" or contain a
// dot or white space: a name never turns into a NATS wildcard.
//
// A topic pattern maps to the few subjects that together cover exactly the
// names it matches, each name by exactly one of them (see patternSubjects).
// A node subscribes once per distinct subject and counts, per subject, the
// patterns that map to it: a message arriving on a subject is delivered to
// the local subscribers of those patterns only, so a subscriber whose
// pattern maps to two overlapping subjects still gets each message once.

const (
	escapeMark     = '~'
	topicClass     = "t"
	queueClass     = "q"
	historyClass   = "h"
	queuePrefix    = "/queue/"
	nonQueueMarker = "~-" // queue destinations outside /queue/: never produced by escapeSegment ("-" is not hex)
)

// plainSegment reports whether s may be a subject token as it is.
func plainSegment(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// appendSegment appends the token of one name segment.
func appendSegment(b []byte, s string) []byte {
	if plainSegment(s) {
		return append(b, s...)
	}
	b = append(b, escapeMark)
	return hex.AppendEncode(b, []byte(s))
}

// unescapeSegment inverts appendSegment; ok is false for a token it cannot
// have produced.
func unescapeSegment(tok string) (string, bool) {
	if tok == "" {
		return "", false
	}
	if tok[0] != escapeMark {
		return tok, plainSegment(tok)
	}
	// Only the lowercase hex of a segment that is not plain is ours.
	raw, err := hex.DecodeString(tok[1:])
	if err != nil || plainSegment(string(raw)) || strings.ContainsAny(tok[1:], "ABCDEF") {
		return "", false
	}
	return string(raw), true
}

// appendName appends the tokens of a dot-separated name.
func appendName(b []byte, name string) []byte {
	for i := 0; ; i++ {
		seg, rest, more := strings.Cut(name, ".")
		if i > 0 {
			b = append(b, '.')
		}
		b = appendSegment(b, seg)
		if !more {
			return b
		}
		name = rest
	}
}

// vhostToken is the virtual host name escaped as one token ("/" is "~2f").
func vhostToken(vhost string) string {
	return string(appendSegment(nil, vhost))
}

// classBase is "<prefix>.<class>.<vhost token>".
func classBase(prefix, class, vhost string) []byte {
	b := make([]byte, 0, len(prefix)+len(vhost)*2+32)
	b = append(b, prefix...)
	b = append(b, '.')
	b = append(b, class...)
	b = append(b, '.')
	return appendSegment(b, vhost)
}

// topicSubject is the subject of topic (a name without /topic/) in vhost.
func topicSubject(prefix, vhost, topic string) string {
	b := classBase(prefix, topicClass, vhost)
	b = append(b, '.')
	return string(appendName(b, topic))
}

// topicOfSubject recovers the topic name from a subject under base
// (topicBase of its vhost, with the trailing dot).
func topicOfSubject(base, subject string) (string, bool) {
	rest, ok := strings.CutPrefix(subject, base)
	if !ok || rest == "" {
		return "", false
	}
	var sb strings.Builder
	sb.Grow(len(rest))
	for i := 0; ; i++ {
		tok, tail, more := strings.Cut(rest, ".")
		seg, ok := unescapeSegment(tok)
		if !ok {
			return "", false
		}
		if i > 0 {
			sb.WriteByte('.')
		}
		sb.WriteString(seg)
		if !more {
			return sb.String(), true
		}
		rest = tail
	}
}

// topicBase is "<prefix>.t.<vhost token>." — what every topic subject of
// vhost starts with.
func topicBase(prefix, vhost string) string {
	return string(append(classBase(prefix, topicClass, vhost), '.'))
}

// queueSubject is the subject of a queue destination (e.g. /queue/orders)
// in vhost. Destinations outside /queue/ (none today) become one marked
// token, so they cannot collide with a queue's.
func queueSubject(prefix, vhost, queue string) string {
	b := queueStreamSubjectBase(prefix, vhost)
	b = append(b, '.')
	if name, ok := strings.CutPrefix(queue, queuePrefix); ok {
		return string(appendName(b, name))
	}
	b = append(b, nonQueueMarker...)
	return string(hex.AppendEncode(b, []byte(queue)))
}

func queueStreamSubjectBase(prefix, vhost string) []byte {
	return classBase(prefix, queueClass, vhost)
}

// queueStreamSubjects is the subject filter of vhost's queue stream.
func queueStreamSubjects(prefix, vhost string) string {
	return string(queueStreamSubjectBase(prefix, vhost)) + ".>"
}

// sanitizeName keeps what stream and consumer names allow (no dots,
// wildcards, white space or path separators) and replaces the rest by "_".
func sanitizeName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == escapeMark) {
			b[i] = '_'
		}
	}
	return string(b)
}

// queueStreamName is the JetStream stream holding vhost's queues:
// <PREFIX>_Q_<vhost token>. The vhost token is injective and already free
// of dots and wildcards; the prefix is sanitized (and upper-cased, as
// stream names conventionally are).
func queueStreamName(prefix, vhost string) string {
	return sanitizeName(strings.ToUpper(prefix)) + "_Q_" + sanitizeName(vhostToken(vhost))
}

// maxReadableName bounds the readable part of a consumer name; the hash
// keeps long names distinct.
const maxReadableName = 64

// queueConsumerName is the durable consumer every node shares for the queue
// with subject subj: the queue's tokens made readable, then a short hash
// of the whole subject so that truncation and sanitizing cannot merge two
// queues.
func queueConsumerName(prefix, vhost, subj string) string {
	rest := strings.TrimPrefix(subj, string(queueStreamSubjectBase(prefix, vhost))+".")
	readable := sanitizeName(rest)
	if len(readable) > maxReadableName {
		readable = readable[:maxReadableName]
	}
	sum := sha256.Sum256([]byte(subj))
	return readable + "_" + hex.EncodeToString(sum[:5])
}

// patternSubjects returns the subjects a node subscribes to for a topic
// pattern in vhost. Segments before the first "#" map one to one ("*" to
// "*"). With no "#" that is the one subject. If only "#"s follow, the
// pattern matches the prefix itself and anything below it: subjects
// {prefix, prefix.>} (just prefix.> — every name — when the prefix is
// empty, as a name always has at least one segment). Otherwise the
// pattern needs more segments after the "#": the superset prefix.> and the
// broker's own matcher picks the names that really match. In every case a
// name the pattern matches is covered by exactly one returned subject.
func patternSubjects(prefix, vhost, pattern string) []string {
	base := classBase(prefix, topicClass, vhost)
	segs := strings.Split(pattern, ".")
	hash := -1
	for i, s := range segs {
		if s == "#" {
			hash = i
			break
		}
	}
	lit := segs
	if hash >= 0 {
		lit = segs[:hash]
	}
	b := base
	for _, s := range lit {
		b = append(b, '.')
		if s == "*" {
			b = append(b, '*')
		} else {
			b = appendSegment(b, s)
		}
	}
	if hash < 0 {
		return []string{string(b)}
	}
	onlyHashes := true
	for _, s := range segs[hash:] {
		if s != "#" {
			onlyHashes = false
			break
		}
	}
	all := string(b) + ".>"
	if onlyHashes && len(lit) > 0 {
		return []string{string(b), all}
	}
	return []string{all}
}

// historyRuleID names a topic history rule by its pattern: every node with
// the rule finds the same stream, and two rules never share one. 12 hex
// digits of SHA-256 make a collision between the few rules of a
// deployment negligible.
func historyRuleID(pattern string) string {
	sum := sha256.Sum256([]byte(pattern))
	return hex.EncodeToString(sum[:6])
}

// historyBase is "<prefix>.h.<vhost token>.<rule id>." — what every
// subject of the rule's history stream starts with.
func historyBase(prefix, vhost, ruleID string) string {
	b := classBase(prefix, historyClass, vhost)
	b = append(b, '.')
	b = append(b, ruleID...)
	return string(append(b, '.'))
}

// historySubject is the subject topic (a name without /topic/) is stored
// on in its rule's history stream; topicOfSubject(historyBase(...), s)
// inverts it.
func historySubject(prefix, vhost, ruleID, topic string) string {
	return string(appendName([]byte(historyBase(prefix, vhost, ruleID)), topic))
}

// historyStreamSubjects is the subject filter of a rule's history stream.
func historyStreamSubjects(prefix, vhost, ruleID string) string {
	return historyBase(prefix, vhost, ruleID) + ">"
}

// historyStreamName is the JetStream stream holding one rule's history in
// vhost: <PREFIX>_H_<vhost token>_<rule id>, sanitized as queue streams.
func historyStreamName(prefix, vhost, ruleID string) string {
	return sanitizeName(strings.ToUpper(prefix)) + "_H_" + sanitizeName(vhostToken(vhost)) + "_" + ruleID
}
