package broker

import (
	"slices"
	"strings"
	"testing"
)

// fuzzSegments are what patterns and names are built from: few enough
// that random patterns often match random names.
var fuzzSegments = []string{"a", "b", "c", "*", "#", "a", "b", ""}

// FuzzSublist runs random subscribe, unsubscribe and publish sequences
// against the sublist and checks every publish against topicMatch over all
// live subscriptions. Each op byte: low two bits the operation, the rest
// the pattern's or name's shape.
func FuzzSublist(f *testing.F) {
	f.Add([]byte{0x10, 0x22, 0x31, 0x06, 0x43, 0x01, 0x13})
	f.Add([]byte{0x00, 0x04, 0x08, 0x0c, 0x41, 0x83, 0xc3, 0x02, 0x03})
	f.Fuzz(func(t *testing.T, ops []byte) {
		sl := newSublist()
		var live []*subscription
		build := func(shape byte, rest []byte, wildcards bool) string {
			n := 1 + int(shape>>5)%4
			segs := make([]string, 0, n)
			for j := range n {
				v := byte(j)
				if j < len(rest) {
					v = rest[j]
				}
				seg := fuzzSegments[int(v)%len(fuzzSegments)]
				if !wildcards && (seg == "*" || seg == "#") {
					seg = "x"
				}
				if wildcards && seg == "" {
					seg = "#"
				}
				segs = append(segs, seg)
			}
			return strings.Join(segs, ".")
		}
		for i := 0; i < len(ops) && i < 400; i++ {
			op, rest := ops[i], ops[i+1:]
			switch op & 3 {
			case 0, 1: // subscribe a wildcard pattern, or an exact name
				sub := &subscription{pattern: build(op, rest, op&3 == 0)}
				if err := sl.insert(sub, nil); err != nil {
					t.Fatal(err)
				}
				live = append(live, sub)
			case 2: // unsubscribe one
				if len(live) > 0 {
					j := int(op>>2) % len(live)
					sl.remove(live[j])
					live = slices.Delete(live, j, j+1)
				}
			case 3: // publish
				name := build(op, rest, false)
				if got, want := routed(sl, name), bruteForce(live, name); !sameSubs(got, want) {
					t.Fatalf("%q reaches %q, want %q", name, patternsOf(got), patternsOf(want))
				}
			}
		}
		wild := 0
		for _, sub := range live {
			if isWildcard(sub.pattern) {
				wild++
			}
		}
		if n := int(sl.wildcardSubs.Load()); n != wild {
			t.Fatalf("%d wildcard subscriptions counted, %d live", n, wild)
		}
		for _, sub := range live {
			sl.remove(sub)
		}
		if sl.wildcardSubs.Load() != 0 || sl.patterns.Load() != 0 || len(sl.exact) != 0 || !sl.root.empty() {
			t.Fatalf("not empty after removing everything: %d wildcard subscriptions, %d patterns, %d names",
				sl.wildcardSubs.Load(), sl.patterns.Load(), len(sl.exact))
		}
	})
}
