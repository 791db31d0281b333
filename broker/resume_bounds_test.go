package broker

import (
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stompbox/stompbox/frames"
)

// Session recovery's bounds and its meeting points with presence and
// takeover (resume_test.go has the helpers).

// TestMaxParkedSessions: past MaxParkedSessions a dropped session is
// released at once (its queue message goes back), not parked.
func TestMaxParkedSessions(t *testing.T) {
	reg := prometheus.NewRegistry()
	b := New(Config{MaxParkedSessions: 2, Registerer: reg})
	var tokens []string
	for i := range 3 {
		c := newClient(t, b)
		tokens = append(tokens, hdr(c.connect(), "resume-token"))
		c.mustSend(frames.CmdSubscribe, "", "destination:/queue/q"+strconv.Itoa(i), "id:q", "ack:client")
		c.drop()
	}
	if n := b.ParkedSessions(); n != 2 {
		t.Fatalf("%d parked, want 2", n)
	}
	if got := counterValue(t, reg, "stompbox_sessions_parked_released_total", "full"); got != 1 {
		t.Fatalf("released{full} = %v, want 1", got)
	}
	for i, tok := range tokens {
		r := newClient(t, b)
		f, _ := r.resumeOn(tok)
		if want := strconv.FormatBool(i < 2); hdr(f, "resumed") != want {
			t.Fatalf("session %d: resumed:%s, want %s", i, hdr(f, "resumed"), want)
		}
	}
}

// TestResumeKeepsPresence: presence counts a parked session's members as
// gone from the drop: a resume inside presence.grace makes no leave and
// no join; a drop longer than the grace is exactly one leave, and the
// resume after it one join; the member of a session released from the
// parked table leaves once, when its grace has passed.
func TestResumeKeepsPresence(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_000)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) time.Time { mu.Lock(); defer mu.Unlock(); now = now.Add(d); return now }
	b := New(Config{Now: clock, PresenceGrace: 5 * time.Second})
	w := newClient(t, b)
	w.connect()
	w.mustSend(frames.CmdSubscribe, "", "destination:/presence/chat", "id:w")
	w.poll() // the snapshot
	events := func() []string {
		var got []string
		for _, f := range w.poll() {
			got = append(got, hdr(f, "presence-event"))
		}
		return got
	}
	a := newClient(t, b)
	tok := hdr(a.connect("login:alice"), "resume-token")
	a.mustSend(frames.CmdSubscribe, "", "destination:/topic/chat", "id:c", "presence:true")
	if got := events(); !slicesEqual(got, "join") {
		t.Fatalf("watcher got %v, want one join", got)
	}

	// A short drop: resumed inside the grace, nothing happens.
	a.drop()
	b.SweepPresence(advance(3 * time.Second))
	r := newClient(t, b)
	f, _ := r.resumeOn(tok, "login:alice")
	if hdr(f, "resumed") != "true" {
		t.Fatalf("CONNECTED %v", headerLines(f))
	}
	r.mustSend(frames.CmdSubscribe, "", "destination:/topic/chat", "id:c", "presence:true")
	b.SweepPresence(advance(10 * time.Second))
	if got := events(); len(got) != 0 {
		t.Fatalf("watcher got %v after a drop shorter than the grace, want nothing", got)
	}

	// A long drop: one leave at the end of the grace, one join at the resume.
	tok = hdr(f, "resume-token")
	r.drop()
	b.SweepPresence(advance(6 * time.Second))
	if got := events(); !slicesEqual(got, "leave") {
		t.Fatalf("watcher got %v while parked past the grace, want one leave", got)
	}
	b.SweepPresence(advance(10 * time.Second))
	if got := events(); len(got) != 0 {
		t.Fatalf("watcher got %v, want no second leave", got)
	}
	r2 := newClient(t, b)
	f, _ = r2.resumeOn(tok, "login:alice")
	if hdr(f, "resumed") != "true" {
		t.Fatalf("CONNECTED %v", headerLines(f))
	}
	if got := events(); !slicesEqual(got, "join") {
		t.Fatalf("watcher got %v after the late resume, want one join", got)
	}

	// Released from the parked table: one leave, after the grace.
	r2.drop()
	b.ReleaseParked()
	if got := events(); len(got) != 0 {
		t.Fatalf("watcher got %v before the grace passed, want nothing", got)
	}
	b.SweepPresence(advance(6 * time.Second))
	if got := events(); !slicesEqual(got, "leave") {
		t.Fatalf("watcher got %v after the release, want one leave", got)
	}
}

// TestResumeTakeoverWaitsForTheOldReadLoop: a CONNECT presenting the
// token of a session still connected closes it (ERROR
// session-taken-over) and waits for its read loop to end; it gets the
// session when that read loop releases it in time, and a fresh one
// (resumed:false, the old session released, not parked) when not.
func TestResumeTakeoverWaitsForTheOldReadLoop(t *testing.T) {
	for _, tc := range []struct {
		name    string
		inTime  bool
		resumed string
	}{{"in time", true, "true"}, {"too late", false, "false"}} {
		t.Run(tc.name, func(t *testing.T) {
			b := New(Config{ConnectTimeout: 200 * time.Millisecond})
			a := newClient(t, b)
			tok := hdr(a.connect(), "resume-token")
			a.mustSend(frames.CmdSubscribe, "", "destination:/queue/q", "id:q", "ack:client")
			pub := newClient(t, b)
			pub.connect()
			pub.mustSend(frames.CmdSend, "held", "destination:/queue/q")
			a.poll()
			released := make(chan struct{})
			go func() { // the old connection's read loop, interrupted by the takeover's Poke
				defer close(released)
				for i := 0; a.tr.pokes.Load() == 0 && i < 1000; i++ {
					time.Sleep(time.Millisecond)
				}
				if !tc.inTime {
					time.Sleep(400 * time.Millisecond)
				}
				if _, closing := a.s.CloseReason(); !closing {
					t.Error("the taken-over session is still open")
				}
				a.s.Release()
			}()
			r := newClient(t, b)
			f, backlog := r.resumeOn(tok)
			<-released
			if hdr(f, "resumed") != tc.resumed {
				t.Fatalf("CONNECTED %v, want resumed:%s", headerLines(f), tc.resumed)
			}
			if fs := a.poll(); len(fs) != 1 || hdr(fs[0], "error-code") != CodeSessionTakenOver {
				t.Fatalf("old connection got %v, want ERROR session-taken-over", commands(fs))
			}
			if n := b.ParkedSessions(); n != 0 {
				t.Fatalf("%d parked, want 0", n)
			}
			if tc.inTime {
				if !slicesEqual(bodies(backlog), "held") || hdr(backlog[0], "redelivered") != "true" {
					t.Fatalf("backlog %v, want held again", bodies(backlog))
				}
				return
			}
			// Released, not parked: its unacked message is back in the queue.
			r.mustSend(frames.CmdSubscribe, "", "destination:/queue/q", "id:q2")
			if got := bodies(r.poll()); !slicesEqual(got, "held") {
				t.Fatalf("after the old session's release %v, want held", got)
			}
		})
	}
}

// TestResumeBudgetOverflowWhileParked: unacknowledged topic messages
// count against the parked session's budget; past it the session is not
// resumable.
func TestResumeBudgetOverflowWhileParked(t *testing.T) {
	b := New(Config{MaxConnectionBytes: 4 << 10, MaxOutboxBytes: 64 << 10})
	tok := parkedSubscriber(t, b, "destination:/topic/t", "id:s", "ack:client")
	pub := newClient(t, b)
	pub.connect()
	body := strings.Repeat("x", 1<<10)
	for range 8 { // 8 KiB unacknowledged for a 4 KiB budget
		pub.mustSend(frames.CmdSend, body, "destination:/topic/t")
	}
	for i := 0; b.ParkedSessions() != 0; i++ { // released by its timer, at once
		if i == 500 {
			t.Fatal("still parked after 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	r := newClient(t, b)
	if f, backlog := r.resumeOn(tok); hdr(f, "resumed") != "false" || len(backlog) != 0 {
		t.Fatalf("CONNECTED %v and %d frames, want resumed:false and nothing", headerLines(f), len(backlog))
	}
}
