package auth

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stompbox/stompbox/broker"
)

func TestCovers(t *testing.T) {
	tests := []struct {
		pattern, dest string
		want          bool
	}{
		// Literal destinations.
		{"/topic/chat.room1", "/topic/chat.room1", true},
		{"/topic/chat.room1", "/topic/chat.room2", false},
		{"/topic/chat.*", "/topic/chat.room1", true},
		{"/topic/chat.*", "/topic/chat", false},
		{"/topic/chat.*", "/topic/chat.a.b", false},
		{"/topic/chat.#", "/topic/chat", true},
		{"/topic/chat.#", "/topic/chat.a.b.c", true},
		{"/topic/chat.#", "/topic/chatter", false},
		{"/topic/#", "/topic/anything.at.all", true},
		{"/topic/#.x", "/topic/a.b.x", true},
		{"/topic/#.x", "/topic/a.x.b", false},
		{"/topic/*.*", "/topic/a.b", true},
		// Kinds never cross.
		{"/topic/#", "/queue/orders", false},
		{"/queue/#", "/topic/orders", false},
		{"/queue/orders", "/queue/orders", true},
		{"/queue/orders", "/queue/orders.eu", false},
		{"/queue/orders.*", "/queue/orders.eu", true},
		{"/queue/orders.#", "/queue/orders", true},
		{"/queue/orders.*", "/temp-queue/orders.eu", false},
		// "#" alone covers every destination.
		{"#", "/topic/a.b", true},
		{"#", "/queue/q", true},
		{"#", "/topic/chat.#", true},
		{"#", "/presence/room1", true},
		{"#", "", false},
		// Other destination kinds are covered by nothing else.
		{"/topic/#", "/presence/room1", false},
		{"/presence/#", "/presence/room1", false},
		// SUBSCRIBE patterns are covered only as a whole.
		{"/topic/chat.#", "/topic/chat.#", true},
		{"/topic/chat.#", "/topic/chat.*", true},
		{"/topic/chat.#", "/topic/chat.*.x.#", true},
		{"/topic/#", "/topic/#", true},
		{"/topic/#", "/topic/*.#.*", true},
		{"/topic/chat.*", "/topic/chat.*", true},
		{"/topic/chat.*", "/topic/chat.#", false},
		{"/topic/chat.room1", "/topic/chat.*", false},
		{"/topic/chat.room1", "/topic/chat.#", false},
		{"/topic/*.room1", "/topic/*.room1", true},
		{"/topic/*.room1", "/topic/#.room1", false},
		{"/topic/#.room1", "/topic/*.room1", true},
		{"/topic/#.room1", "/topic/#.room1", true},
		{"/topic/#.room1", "/topic/#", false},
		{"/topic/a.#.z", "/topic/a.*.#.z", true},
		{"/topic/a.#.z", "/topic/a.#.y", false},
		{"/topic/*.#", "/topic/#.*", false}, // the same language, but not covered segment by segment: denied is safe
		// Malformed on either side covers nothing.
		{"/topic/chat.#", "/topic/chat..x", false},
		{"/topic/chat.#", "/topic/chat.a#", false},
		{"/topic/#", "/topic/", false},
		{"/topic/ch#t", "/topic/ch#t", false},
		{"/topic/a..b", "/topic/a..b", false},
		{"/topic/", "/topic/", false},
		{"topic/#", "/topic/a", false},
		{"", "/topic/a", false},
		{"*", "/topic/a", false},
	}
	for _, tt := range tests {
		if got := Covers(tt.pattern, tt.dest); got != tt.want {
			t.Errorf("Covers(%q, %q) = %v, want %v", tt.pattern, tt.dest, got, tt.want)
		}
	}
}

func TestGrant(t *testing.T) {
	p := &broker.Principal{Name: "t", Publish: []string{"/topic/chat.*", "bogus"}, Subscribe: []string{"/queue/results.#"}}
	tests := []struct {
		a    broker.Action
		dest string
		want bool
	}{
		{broker.ActionPublish, "/topic/chat.x", true},
		{broker.ActionPublish, "/queue/results.x", false},
		{broker.ActionSubscribe, "/queue/results.x", true},
		{broker.ActionSubscribe, "/topic/chat.x", false},
		{broker.Action(0), "/topic/chat.x", false},
	}
	for _, tt := range tests {
		if got := Grant(p, tt.a, tt.dest); got != tt.want {
			t.Errorf("Grant(%v, %q) = %v, want %v", tt.a, tt.dest, got, tt.want)
		}
	}
	if Grant(nil, broker.ActionPublish, "/topic/chat.x") || Grant(&broker.Principal{}, broker.ActionPublish, "/topic/x") {
		t.Error("nothing granted, yet allowed")
	}
}

// randomSegments builds a dot-joined string of n segments drawn from alpha
// (which may hold wildcards and the empty segment).
func randomSegments(r *rand.Rand, n int, alpha []string) string {
	segs := make([]string, n)
	for i := range segs {
		segs[i] = alpha[r.IntN(len(alpha))]
	}
	return strings.Join(segs, ".")
}

// TestCoversMatchesBroker is the differential test: on literal names the
// coverage check must agree with the broker's own routing rule, for
// patterns and names of every shape (malformed ones included, at the
// segment level; through Covers for well-formed ones).
func TestCoversMatchesBroker(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	patAlpha := []string{"a", "b", "c", "*", "#", "", "a#"}
	nameAlpha := []string{"a", "b", "c", "", "a#", "*x"}
	for i := range 200_000 {
		pat := randomSegments(r, r.IntN(7), patAlpha)
		name := randomSegments(r, r.IntN(8), nameAlpha)
		want := broker.MatchTopic(pat, name)
		if got := coversName(pat, name); got != want {
			t.Fatalf("#%d: coversName(%q, %q) = %v, broker.MatchTopic = %v", i, pat, name, got, want)
		}
		if wellFormed(pat) && wellFormed(name) {
			if got := Covers("/topic/"+pat, "/topic/"+name); got != want {
				t.Fatalf("#%d: Covers(/topic/%s, /topic/%s) = %v, broker.MatchTopic = %v", i, pat, name, got, want)
			}
		}
	}
}

// TestCoversSound checks the pattern-in-pattern answer against its
// meaning: if rule covers req, every name req matches, rule matches too.
// Names are enumerated over a small alphabet up to a length, so this is
// exhaustive for short patterns.
func TestCoversSound(t *testing.T) {
	alpha := []string{"a", "b", "*", "#"}
	var pats []string
	var build func(prefix []string, n int)
	build = func(prefix []string, n int) {
		if len(prefix) > 0 {
			pats = append(pats, strings.Join(prefix, "."))
		}
		if n == 0 {
			return
		}
		for _, s := range alpha {
			build(append(prefix, s), n-1)
		}
	}
	build(nil, 4)
	var names []string
	var buildNames func(prefix []string, n int)
	buildNames = func(prefix []string, n int) {
		if len(prefix) > 0 {
			names = append(names, strings.Join(prefix, "."))
		}
		if n == 0 {
			return
		}
		for _, s := range []string{"a", "b", "c"} {
			buildNames(append(prefix, s), n-1)
		}
	}
	buildNames(nil, 6)
	covered := 0
	for _, rule := range pats {
		for _, req := range pats {
			if !coversName(rule, req) {
				continue
			}
			covered++
			for _, n := range names {
				if broker.MatchTopic(req, n) && !broker.MatchTopic(rule, n) {
					t.Fatalf("%q covers %q, yet %q matches only the latter", rule, req, n)
				}
			}
		}
	}
	if covered < 1000 {
		t.Fatalf("only %d covered pairs: the check is nearly vacuous", covered)
	}
}

// adversarial returns the inputs that make a backtracking matcher blow up:
// many "#" separated by literals that almost match, and a name that fails
// at its very end.
func adversarial(n int) (rule, req string) {
	rule = strings.Repeat("#.a.", n) + "x"
	req = strings.Repeat("a.", 4*n) + "y"
	return rule, req
}

func TestCoversAdversarialIsFast(t *testing.T) {
	rule, req := adversarial(200)
	start := time.Now()
	if coversName(rule, req) {
		t.Fatal("covered")
	}
	reqPattern := strings.Repeat("#.", 800) + "y"
	if Covers("/topic/"+rule, "/topic/"+reqPattern) {
		t.Fatal("covered")
	}
	if Covers("/topic/#.a.#.a.a.a.x", "/topic/"+strings.Repeat("a.", 100_000)+"y") {
		t.Fatal("covered")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v", d)
	}
}

func BenchmarkCovers(b *testing.B) {
	cases := []struct{ name, pattern, dest string }{
		{"literal", "/topic/chat.room1", "/topic/chat.room1"},
		{"wildcard", "/topic/chat.*.#", "/topic/chat.room1.messages.today"},
		{"pattern-in-pattern", "/topic/chat.#", "/topic/chat.*.x.#"},
	}
	rule, req := adversarial(20)
	cases = append(cases, struct{ name, pattern, dest string }{"adversarial", "/topic/" + rule, "/topic/" + req})
	// A fixed rule against ever longer client input: time grows linearly
	// with the destination's length.
	for _, n := range []int{100, 1000, 10000} {
		cases = append(cases, struct{ name, pattern, dest string }{
			fmt.Sprintf("fixed-rule-%d-segments", n), "/topic/#.a.#.a.a.a.x", "/topic/" + strings.Repeat("a.", n) + "y"})
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Covers(c.pattern, c.dest)
			}
		})
	}
}
