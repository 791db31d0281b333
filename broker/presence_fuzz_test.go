package broker

import (
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stompbox/stompbox/frames"
)

// validUTF8 is s as presence events show it: each byte that is not part of
// valid UTF-8 replaced with U+FFFD.
func validUTF8(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// Whatever a user name, presence-id or presence-info holds (quotes,
// backslashes, control bytes, invalid UTF-8), a member's JSON and a
// snapshot are valid JSON and valid UTF-8 (a text WebSocket message), and
// decode to the strings given, bad bytes as U+FFFD.
func FuzzPresenceJSON(f *testing.F) {
	f.Add("alice", "tab1", "Alice")
	f.Add(`"quoted"`, `back\slash`, "line\nbreak\x00nul")
	f.Add("\xff\xfe", "\u2028\u2029", "<script>&amp;</script>")
	f.Add("", "", "")
	f.Fuzz(func(t *testing.T, user, id, info string) {
		body := appendPresenceJSON(nil, user, id, info)
		if !json.Valid(body) || !utf8.Valid(body) {
			t.Fatalf("member JSON %q is not valid JSON in UTF-8", body)
		}
		var m memberJSON
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatal(err)
		}
		if m.User != validUTF8(user) || m.ID != validUTF8(id) || m.Info != validUTF8(info) {
			t.Fatalf("decoded %+v from %q, %q, %q", m, user, id, info)
		}
		ps := &presenceSpace{}
		b := New(Config{})
		set, _ := ps.setLocked(b, "t")
		set.members[presenceKey{user, id}] = &presenceMember{key: presenceKey{user, id}, info: info}
		set.members[presenceKey{id, user}] = &presenceMember{key: presenceKey{id, user}, info: user}
		snap := ps.snapshotLocked(b, set)
		var s struct{ Members []memberJSON }
		if !utf8.Valid(snap.Body) || json.Unmarshal(snap.Body, &s) != nil || len(s.Members) != len(set.members) {
			t.Fatalf("snapshot %q does not decode to %d members", snap.Body, len(set.members))
		}
	})
}

// Members joining and leaving from many connections at once while watchers
// subscribe: every watcher, replaying its snapshot and then its events,
// sees only valid transitions (a join of an absent member or a changed
// info, a leave of a present one) and ends with the broker's final set.
// Run with -race.
func TestPresenceConcurrentWatchersConsistent(t *testing.T) {
	b := New(Config{PresenceGrace: -1, MaxOutboxBytes: 64 << 20, MaxConnectionBytes: 64 << 20})
	const members, maxRounds, watchers = 6, 20_000, 4
	stable := connectAs(t, b, "stable")
	member(t, stable, "s", "room", "presence-info:here")

	// Members join and leave until every watcher has subscribed: the
	// snapshots are taken while the set changes. Half of them share a
	// member (same user, no presence-id), half have a presence-id each.
	var churn, watching sync.WaitGroup
	stop := make(chan struct{})
	for i := range members {
		headers := []string{"destination:/topic/room", "presence:true"}
		if i%2 == 1 {
			headers = append(headers, "presence-id:tab"+strconv.Itoa(i))
		}
		c := connectAs(t, b, "u"+strconv.Itoa(i%3))
		churn.Go(func() {
			for r := range maxRounds {
				select {
				case <-stop:
					return
				default:
				}
				sub := "id:s" + strconv.Itoa(r)
				if err := c.send(frames.CmdSubscribe, "", append(headers, sub, "presence-info:i"+strconv.Itoa(r%3))...); err != nil {
					t.Error(err)
					return
				}
				if err := c.send(frames.CmdUnsubscribe, "", sub); err != nil {
					t.Error(err)
					return
				}
				c.poll()
			}
		})
	}
	clients := make([]*client, watchers)
	for i := range clients {
		clients[i] = connectAs(t, b, "w")
	}
	for i, c := range clients {
		watching.Go(func() {
			for range 1 + rand.IntN(200) { // subscribe at some point while members come and go
				if err := c.send(frames.CmdSend, "x", "destination:/topic/elsewhere"); err != nil {
					t.Error(err)
					return
				}
			}
			if err := c.send(frames.CmdSubscribe, "", "id:p"+strconv.Itoa(i), "destination:/presence/room"); err != nil {
				t.Error(err)
			}
		})
	}
	watching.Wait()
	close(stop)
	churn.Wait()
	for _, c := range clients {
		set := map[string]string{} // user/id -> info
		fs := c.poll()
		if len(fs) == 0 || hdr(fs[0], "presence-event") != "snapshot" {
			t.Fatalf("watcher got %v first, want the snapshot", commands(fs))
		}
		var snap struct{ Members []memberJSON }
		if err := json.Unmarshal(fs[0].Body, &snap); err != nil {
			t.Fatal(err)
		}
		for _, m := range snap.Members {
			set[m.User+"/"+m.ID] = m.Info
		}
		for _, f := range fs[1:] {
			var m memberJSON
			if err := json.Unmarshal(f.Body, &m); err != nil {
				t.Fatal(err)
			}
			key := m.User + "/" + m.ID
			info, present := set[key]
			switch hdr(f, "presence-event") {
			case "join":
				if present && info == m.Info {
					t.Fatalf("join of %s already present with the same info", key)
				}
				set[key] = m.Info
			case "leave":
				if !present {
					t.Fatalf("leave of %s, not present", key)
				}
				delete(set, key)
			default:
				t.Fatalf("event %q", hdr(f, "presence-event"))
			}
		}
		if len(set) != 1 || set["stable/"] != "here" {
			t.Fatalf("watcher ends with %v, want only stable", set)
		}
	}
}

// A SUBSCRIBE with arbitrary presence, presence-id, presence-info and
// destination values: never a panic; either accepted (RECEIPT) or refused
// with a clear ERROR; presence-info over 1 KiB always refused with
// invalid-header; an accepted member shows in a snapshot with its id and
// info (as JSON strings), and once it is gone and swept the set is empty
// and no member is counted.
func FuzzPresenceSubscribe(f *testing.F) {
	f.Add("true", "tab1", "Alice", "/topic/room")
	f.Add("true", "", strings.Repeat("x", MaxPresenceInfo+1), "/topic/room")
	f.Add("yes", "a", "b", "/topic/room")
	f.Add("true", "a", "b", "/topic/room.*")
	f.Add("true", "a", "b", "/presence/room")
	f.Add("false", "", "", "/queue/q")
	f.Add("true", "\\c", "é\xff", "/topic/\u00e9")
	f.Fuzz(func(t *testing.T, presence, id, info, dest string) {
		b, clock := presenceBroker(t, Config{})
		c := connectAs(t, b, "alice")
		err := c.send(frames.CmdSubscribe, "", "id:s", "destination:"+dest, "presence:"+presence,
			"presence-id:"+id, "presence-info:"+info, "receipt:r")
		fs := c.poll()
		if len(fs) == 0 {
			t.Fatalf("no answer to SUBSCRIBE (Feed %v)", err)
		}
		last := fs[len(fs)-1]
		switch last.Command {
		case frames.CmdError:
			if !isClosed(err) || hdr(last, "error-code") == "" || hdr(last, "retryable") == "" {
				t.Fatalf("ERROR %q, Feed %v", headerLines(last), err)
			}
		case frames.CmdReceipt, frames.CmdMessage:
			if err != nil {
				t.Fatalf("accepted, but Feed = %v", err)
			}
		default:
			t.Fatalf("got %v", commands(fs))
		}
		accepted := last.Command != frames.CmdError
		topic, isTopic := strings.CutPrefix(dest, "/topic/")
		if accepted && presence == "true" && isTopic {
			if len(info) > MaxPresenceInfo {
				t.Fatalf("presence-info of %d bytes accepted", len(info))
			}
			w := connectAs(t, b, "w")
			var snap struct{ Members []memberJSON }
			w.mustSend(frames.CmdSubscribe, "", "id:p", "destination:/presence/"+topic)
			wf := w.poll()
			if len(wf) != 1 || json.Unmarshal(wf[0].Body, &snap) != nil || len(snap.Members) != 1 {
				t.Fatalf("snapshot after an accepted member: %v %+v", commands(wf), snap)
			}
			if m := snap.Members[0]; m.User != "alice" || m.ID != validUTF8(id) || m.Info != validUTF8(info) {
				t.Fatalf("member %+v, want alice, %q, %q", m, id, info)
			}
			w.s.Release()
		}
		c.s.Release()
		b.SweepPresence(clock.advance(time.Hour))
		var members int64
		for _, sp := range b.spaces {
			members += sp.presence.members.Load()
			if len(sp.presence.sets) != 0 {
				t.Fatalf("%d presence sets left", len(sp.presence.sets))
			}
		}
		if members != 0 {
			t.Fatalf("%d members counted after everyone left", members)
		}
	})
}
