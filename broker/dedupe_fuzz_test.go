package broker

import (
	"strconv"
	"testing"
	"time"
)

// FuzzDedupeStore runs claims, releases, clock steps and sweeps, decoded
// from the input, against a dedupeStore and a plain model of it (each
// user's live claims, oldest first), and checks after every step that
// both agree on what is a duplicate and on what is held, and that no user
// ever holds more than the bound.
func FuzzDedupeStore(f *testing.F) {
	f.Add([]byte{0, 1, 0, 1, 0, 2, 0, 3, 0, 4, 0, 1, 1, 0, 2, 200, 0, 1, 3, 0})
	f.Add([]byte{0, 0, 0, 0, 1, 0, 0, 0, 0, 9, 0, 17, 0, 25, 0, 0, 2, 61, 0, 0})
	f.Fuzz(func(t *testing.T, program []byte) {
		const window, max = 60 * time.Second, 3
		type claim struct {
			key  string
			seq  uint64
			at   time.Time
			live bool
		}
		var d dedupeStore
		model := map[string][]claim{}
		now := time.Unix(1_000_000, 0)
		var last struct {
			user, key string
			seq       uint64
			ok        bool
		}
		liveCount := func(cs []claim) int {
			n := 0
			for _, c := range cs {
				if c.live {
					n++
				}
			}
			return n
		}
		for i := 0; i+1 < len(program); i += 2 {
			op, arg := program[i]%4, program[i+1]
			switch op {
			case 0: // claim key arg%8 for user arg/8%2
				user, key := "u"+strconv.Itoa(int(arg/8%2)), "k"+strconv.Itoa(int(arg%8))
				cs := model[user]
				for j := range cs {
					if cs[j].live && cs[j].at.Before(now.Add(-window)) {
						cs[j].live = false
					}
				}
				wantDup := false
				for _, c := range cs {
					if c.live && c.key == key {
						wantDup = true
					}
				}
				seq, outcome := d.claim(user, key, nil, now, window, max)
				dup := outcome == claimDuplicate
				if dup != wantDup {
					t.Fatalf("step %d: claim %s/%s dup=%v, model says %v", i, user, key, dup, wantDup)
				}
				last.ok = false
				if !dup {
					for liveCount(cs) >= max {
						for j := range cs {
							if cs[j].live {
								cs[j].live = false
								break
							}
						}
					}
					cs = append(cs, claim{key: key, seq: seq, at: now, live: true})
					last.user, last.key, last.seq, last.ok = user, key, seq, true
				}
				model[user] = cs
			case 1: // release the last fresh claim
				if !last.ok {
					continue
				}
				d.release(last.user, last.key, last.seq)
				for j, c := range model[last.user] {
					if c.seq == last.seq {
						model[last.user][j].live = false
					}
				}
				last.ok = false
			case 2: // the clock moves arg seconds
				now = now.Add(time.Duration(arg) * time.Second)
			case 3: // sweep
				d.sweep(now.Add(-window))
				for user, cs := range model {
					for j := range cs {
						if cs[j].live && cs[j].at.Before(now.Add(-window)) {
							cs[j].live = false
						}
					}
					model[user] = cs
				}
			}
			for user, cs := range model {
				u := d.users[user]
				held := 0
				if u != nil {
					held = len(u.keys)
				}
				if held > max {
					t.Fatalf("step %d: user %s holds %d keys, bound %d", i, user, held, max)
				}
				if want := liveCount(cs); op == 3 && held != want {
					t.Fatalf("step %d: after a sweep user %s holds %d keys, model %d", i, user, held, want)
				}
			}
		}
	})
}
