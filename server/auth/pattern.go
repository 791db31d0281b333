package auth

import (
	"strings"

	"github.com/stompbox/stompbox/broker"
)

// Destination prefixes patterns may name. A pattern covers destinations of
// its own prefix only.
const (
	topicPrefix = "/topic/"
	queuePrefix = "/queue/"
)

// matchAll is the one pattern without a prefix: it covers every
// destination, of any kind.
const matchAll = "#"

// Covers reports whether the ACL pattern covers destination.
//
// A pattern is "#" (everything), or "/topic/" or "/queue/" followed by
// dot-separated segments where "*" stands for one segment and "#" for zero
// or more: the broker's topic syntax, applied to queue names too. A
// /topic/ pattern covers only topics, a /queue/ pattern only queues.
//
// The destination may itself be a SUBSCRIBE pattern, which is covered only
// as a whole: a "*" in the pattern covers a literal or "*" segment but not
// "#"; a "#" covers any run of segments, wildcards included; a literal
// covers only the same literal. So /topic/chat.# covers /topic/chat.*.x,
// and /topic/chat.* does not cover /topic/chat.#.
//
// A malformed pattern covers nothing, and a /topic/ or /queue/ destination
// with an empty segment or with a wildcard inside a segment ("a#") is
// covered by nothing. Covers allocates nothing; its work is at most
// segments(pattern) × segments(destination) steps, so linear in the
// destination, which is the part a client controls.
func Covers(pattern, destination string) bool {
	var name, prefix string
	switch {
	case strings.HasPrefix(destination, topicPrefix):
		prefix, name = topicPrefix, destination[len(topicPrefix):]
	case strings.HasPrefix(destination, queuePrefix):
		prefix, name = queuePrefix, destination[len(queuePrefix):]
	}
	if prefix != "" && !wellFormed(name) {
		return false
	}
	if pattern == matchAll {
		return destination != ""
	}
	rule, ok := strings.CutPrefix(pattern, prefix)
	return prefix != "" && ok && wellFormed(rule) && coversName(rule, name)
}

// Grant reports whether the principal's own patterns (p.Publish for
// ActionPublish, p.Subscribe for ActionSubscribe: a token's grants) cover
// destination. It ignores virtual hosts and ACL rules; ACL.Allow combines
// all three.
func Grant(p *broker.Principal, a broker.Action, destination string) bool {
	if p == nil {
		return false
	}
	return anyCovers(patternsFor(p.Publish, p.Subscribe, a), destination)
}

// patternsFor picks the pattern list for an action; nil for unknown ones.
func patternsFor(publish, subscribe []string, a broker.Action) []string {
	switch a {
	case broker.ActionPublish:
		return publish
	case broker.ActionSubscribe:
		return subscribe
	}
	return nil
}

func anyCovers(patterns []string, destination string) bool {
	for _, pat := range patterns {
		if Covers(pat, destination) {
			return true
		}
	}
	return false
}

// validPattern reports whether an ACL pattern is well-formed: "#", or a
// known prefix followed by well-formed segments.
func validPattern(pattern string) bool {
	if pattern == matchAll {
		return true
	}
	if rest, ok := strings.CutPrefix(pattern, topicPrefix); ok {
		return wellFormed(rest)
	}
	if rest, ok := strings.CutPrefix(pattern, queuePrefix); ok {
		return wellFormed(rest)
	}
	return false
}

// wellFormed accepts non-empty dot-separated segments in which "*" and "#"
// appear only as whole segments, as the broker requires of SUBSCRIBE
// patterns.
func wellFormed(s string) bool {
	if s == "" {
		return false
	}
	start := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] != '.' {
			continue
		}
		seg := s[start:i]
		if seg == "" || (len(seg) > 1 && strings.ContainsAny(seg, "*#")) {
			return false
		}
		start = i + 1
	}
	return true
}

// coversName reports whether the segment pattern rule covers req, a name or
// itself a pattern, with the rules of Covers and without validating either.
//
// It is glob matching over segments, in which rule's "#" is the star and
// every other rule segment matches one req segment ("*": any but "#";
// a literal: itself). As for any glob, trying each "#" as short as
// possible and, on a mismatch, growing only the most recent "#" by one
// segment is complete: a later "#" can absorb whatever an earlier one
// would have. That leaves one backtrack point, hence no exponential blow-up
// on patterns such as "#.#.#.#.x". For names without wildcard segments it
// answers exactly as broker.MatchTopic (a test checks); an empty string is
// one empty segment, as there.
func coversName(rule, req string) bool {
	r, q := 0, 0          // offsets of the current rule and req segments
	backR, backQ := -1, 0 // after the last "#": where rule resumes, and where in req it has reached
	for q <= len(req) {
		if r <= len(rule) {
			rs, rnext := segment(rule, r)
			if rs == "#" {
				backR, backQ, r = rnext, q, rnext // zero segments first
				continue
			}
			qs, qnext := segment(req, q)
			if rs == "*" && qs != "#" || rs != "*" && rs == qs {
				r, q = rnext, qnext
				continue
			}
		}
		if backR < 0 {
			return false
		}
		_, backQ = segment(req, backQ) // the last "#" takes one more segment
		r, q = backR, backQ
	}
	for r <= len(rule) { // req is used up: the rest of rule must be all "#"
		rs, rnext := segment(rule, r)
		if rs != "#" {
			return false
		}
		r = rnext
	}
	return true
}

// segment returns the dot-separated segment of s at offset i and the offset
// of the next one (len(s)+1 after the last).
func segment(s string, i int) (string, int) {
	if j := strings.IndexByte(s[i:], '.'); j >= 0 {
		return s[i : i+j], i + j + 1
	}
	return s[i:], len(s) + 1
}

// TokenGrants is the broker.Authorizer of a broker with authentication and
// no rules file: a client may do only what its own credentials grant (a
// JWT's publish and subscribe claims), in the virtual hosts they allow.
type TokenGrants struct{}

// AllowHost allows the hosts p's vhosts claim lists (any, without one).
func (TokenGrants) AllowHost(p *broker.Principal, vhost string) bool {
	return p != nil && principalAllowsHost(p, vhost)
}

// Allow allows what p's own patterns cover, in a host p may use.
func (TokenGrants) Allow(p *broker.Principal, vhost string, a broker.Action, destination string) bool {
	return p != nil && principalAllowsHost(p, vhost) && Grant(p, a, destination)
}
