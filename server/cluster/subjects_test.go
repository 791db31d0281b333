package cluster

import (
	"reflect"
	"strings"
	"testing"

	"github.com/stompbox/stompbox/broker"
)

func TestSubjectsEscape(t *testing.T) {
	for _, c := range []struct{ vhost, topic, want string }{
		{"/", "chat.room1", "sb.t.~2f.chat.room1"},
		{"/", "a-b_c.D9", "sb.t.~2f.a-b_c.D9"},
		{"tenant1", "a..b", "sb.t.tenant1.a.~.b"},
		{"/", "", "sb.t.~2f.~"},
		{"/", "*.#.>", "sb.t.~2f.~2a.~23.~3e"},
		{"a.b", "x y", "sb.t.~612e62.~782079"},
		{"/", "~", "sb.t.~2f.~7e"},
	} {
		if got := topicSubject("sb", c.vhost, c.topic); got != c.want {
			t.Errorf("topicSubject(%q, %q) = %q, want %q", c.vhost, c.topic, got, c.want)
		}
		back, ok := topicOfSubject(topicBase("sb", c.vhost), c.want)
		if !ok || back != c.topic {
			t.Errorf("topicOfSubject(%q) = %q, %v; want %q", c.want, back, ok, c.topic)
		}
	}
	for _, c := range []struct{ queue, want string }{
		{"/queue/orders", "sb.q.~2f.orders"},
		{"/queue/orders.eu", "sb.q.~2f.orders.eu"},
		{"/queue/a/b", "sb.q.~2f.~612f62"},
		{"/temp-queue/x", "sb.q.~2f.~-2f74656d702d71756575652f78"},
	} {
		if got := queueSubject("sb", "/", c.queue); got != c.want {
			t.Errorf("queueSubject(%q) = %q, want %q", c.queue, got, c.want)
		}
	}
	if got := queueStreamName("sb", "/"); got != "SB_Q_~2f" {
		t.Errorf("queueStreamName = %q", got)
	}
	if got := queueStreamSubjects("sb", "/"); got != "sb.q.~2f.>" {
		t.Errorf("queueStreamSubjects = %q", got)
	}
	a := queueConsumerName("sb", "/", queueSubject("sb", "/", "/queue/orders.eu"))
	if !strings.HasPrefix(a, "orders_eu_") || len(a) != len("orders_eu_")+10 {
		t.Errorf("queueConsumerName = %q", a)
	}
	long := "/queue/" + strings.Repeat("x", 200)
	b1 := queueConsumerName("sb", "/", queueSubject("sb", "/", long))
	b2 := queueConsumerName("sb", "/", queueSubject("sb", "/", long+"y"))
	if b1 == b2 || len(b1) > maxReadableName+11 {
		t.Errorf("long consumer names %q %q", b1, b2)
	}
	for _, bad := range []string{"", "~", "~zz", "~41", "~6", "~2A", "a*", "~6162"} {
		if s, ok := unescapeSegment(bad); ok && bad != "~" {
			t.Errorf("unescapeSegment(%q) = %q, true", bad, s)
		}
	}
}

func TestPatternSubjects(t *testing.T) {
	for _, c := range []struct {
		pattern string
		want    []string
	}{
		{"a.b", []string{"p.t.v.a.b"}},
		{"a.*", []string{"p.t.v.a.*"}},
		{"*", []string{"p.t.v.*"}},
		{"a.#", []string{"p.t.v.a", "p.t.v.a.>"}},
		{"a.#.#", []string{"p.t.v.a", "p.t.v.a.>"}},
		{"#", []string{"p.t.v.>"}},
		{"#.b", []string{"p.t.v.>"}},
		{"a.*.#.c", []string{"p.t.v.a.*.>"}},
		{"a b.*", []string{"p.t.v.~612062.*"}},
		{"a*.b", []string{"p.t.v.~612a.b"}},
	} {
		if got := patternSubjects("p", "v", c.pattern); !reflect.DeepEqual(got, c.want) {
			t.Errorf("patternSubjects(%q) = %q, want %q", c.pattern, got, c.want)
		}
	}
}

// natsMatch is NATS's subject matching: "*" one token, ">" one or more
// trailing tokens.
func natsMatch(filter, subject string) bool {
	f, s := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, tok := range f {
		if tok == ">" {
			return len(s) > i
		}
		if i >= len(s) || tok != "*" && tok != s[i] {
			return false
		}
	}
	return len(f) == len(s)
}

// validToken: what NATS accepts as a literal subject token.
func validToken(tok string) bool {
	return tok != "" && tok != "*" && tok != ">" && !strings.ContainsAny(tok, " \t\r\n.")
}

func FuzzSubjects(f *testing.F) {
	for _, s := range [][3]string{
		{"/", "a.b", "a.*"}, {"v", "a", "a.#"}, {"/", "a.b.c", "#.c"}, {"x.y", "", "#"},
		{"/", "a..b", "a.*.b"}, {"/", "*.>", "*.#"}, {"/", "a.b", "a.#.b"}, {"", "~7e", "~7e.#"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, vhost, name, pattern string) {
		subj := topicSubject("sb", vhost, name)
		for _, tok := range strings.Split(subj, ".") {
			if !validToken(tok) {
				t.Fatalf("topicSubject(%q, %q) = %q: bad token %q", vhost, name, subj, tok)
			}
		}
		back, ok := topicOfSubject(topicBase("sb", vhost), subj)
		if !ok || back != name {
			t.Fatalf("topicOfSubject(%q) = %q, %v; want %q (escaping not injective)", subj, back, ok, name)
		}
		// A subject of another vhost never decodes as this one's.
		if other := vhost + "x"; strings.HasPrefix(subj, topicBase("sb", other)) {
			t.Fatalf("vhost %q subject %q under vhost %q", vhost, subj, other)
		}
		covered := 0
		for _, ps := range patternSubjects("sb", vhost, pattern) {
			if natsMatch(ps, subj) {
				covered++
			}
		}
		match := broker.MatchTopic(pattern, name)
		if match && covered != 1 {
			t.Fatalf("name %q matches pattern %q but %d of its subjects %q cover %q",
				name, pattern, covered, patternSubjects("sb", vhost, pattern), subj)
		}
		if covered > 1 {
			t.Fatalf("pattern %q: %d subjects cover %q", pattern, covered, subj)
		}
		if covered == 1 && !match && !strings.Contains(pattern, "#") {
			t.Fatalf("pattern %q without # covers %q, which it does not match", pattern, name)
		}
	})
}

func TestValidPrefix(t *testing.T) {
	for p, want := range map[string]bool{
		"stompbox": true, "prod.eu-1": true, "a_b": true,
		"": false, "a..b": false, "a.*": false, ">": false, "a b": false, ".a": false,
	} {
		if got := validPrefix(p); got != want {
			t.Errorf("validPrefix(%q) = %v", p, got)
		}
	}
}
