package broker

import (
	"strconv"
	"time"

	"context"
	"github.com/prometheus/client_golang/prometheus"
	"strings"
	"testing"

	"github.com/stompbox/stompbox/frames"
)

// rolesByPasscode authenticates anyone as its login, with role "chat"
// when the passcode says so.
type rolesByPasscode struct{}

func (rolesByPasscode) Authenticate(_ context.Context, c Credentials) (*Principal, error) {
	p := &Principal{Name: c.Login}
	if c.Passcode == "chat" {
		p.Roles = []string{"chat"}
	}
	return p, nil
}

// TestResumeNeedsTheRightsOfItsSubscriptions: a resume is refused
// (resumed:false, the parked session released) when the resuming
// connection's principal may not subscribe to one of the parked
// session's subscriptions any more (here: a token with fewer roles), so a
// resume never delivers what a fresh SUBSCRIBE would be refused; the same
// user with its rights intact resumes.
func TestResumeNeedsTheRightsOfItsSubscriptions(t *testing.T) {
	z := &roleAuthorizer{deniedHosts: map[string]bool{}, denied: map[string]bool{}}
	b := New(Config{Authenticator: rolesByPasscode{}, Authorizer: z})
	pub := newClient(t, b)
	pub.connect("login:ops", "passcode:chat")

	a := newClient(t, b)
	tok := hdr(a.connect("login:alice", "passcode:chat"), "resume-token")
	a.mustSend(frames.CmdSubscribe, "", "destination:/topic/chat.x", "id:s")
	a.drop()
	pub.mustSend(frames.CmdSend, "while away", "destination:/topic/chat.x")
	r := newClient(t, b)
	f, fs := r.resumeOn(tok, "login:alice", "passcode:none") // no role now
	if hdr(f, "resumed") != "false" {
		t.Fatalf("resumed %q without the right to its subscription, want false", hdr(f, "resumed"))
	}
	pub.mustSend(frames.CmdSend, "live", "destination:/topic/chat.x")
	if got := append(bodies(fs), bodies(r.poll())...); len(got) != 0 {
		t.Fatalf("a connection without the right got %v", got)
	}
	if n := b.ParkedSessions(); n != 0 {
		t.Fatalf("%d parked sessions, want the refused one released", n)
	}

	a2 := newClient(t, b)
	tok = hdr(a2.connect("login:alice", "passcode:chat"), "resume-token")
	a2.mustSend(frames.CmdSubscribe, "", "destination:/topic/chat.x", "id:s")
	a2.drop()
	pub.mustSend(frames.CmdSend, "kept", "destination:/topic/chat.x")
	r2 := newClient(t, b)
	f, fs = r2.resumeOn(tok, "login:alice", "passcode:chat")
	if hdr(f, "resumed") != "true" || !slicesEqual(bodies(fs), "kept") {
		t.Fatalf("resumed %q with %v, want true with the kept message", hdr(f, "resumed"), bodies(fs))
	}
}

// TestResumeResendReservedWhileParked: the unacknowledged messages a
// resume sends again are reserved in the parked session's budget, so a
// session whose re-send would not fit is not resumable (decided while
// parked), and one that is resumed has room for what comes next instead
// of becoming a slow consumer on the next live message.
func TestResumeResendReservedWhileParked(t *testing.T) {
	body := strings.Repeat("x", 512)
	for _, tc := range []struct {
		unacked int
		resumed bool
	}{{unacked: 4, resumed: true}, {unacked: 7, resumed: false}} {
		b := New(Config{MaxConnectionBytes: 8 << 10, MaxOutboxBytes: 64 << 10})
		a := newClient(t, b)
		tok := hdr(a.connect(), "resume-token")
		a.mustSend(frames.CmdSubscribe, "", "destination:/topic/t", "id:s", "ack:client")
		pub := newClient(t, b)
		pub.connect()
		for range tc.unacked {
			pub.mustSend(frames.CmdSend, body, "destination:/topic/t")
			if fs := a.poll(); len(fs) != 1 || fs[0].Command != frames.CmdMessage {
				t.Fatalf("%d unacked: %v", tc.unacked, commands(fs))
			}
		}
		a.drop()
		r := newClient(t, b)
		r.mustSend(frames.CmdConnect, "", "accept-version:1.2", "resume-token:"+tok)
		pub.mustSend(frames.CmdSend, body, "destination:/topic/t") // live, before the writer ran
		fs := r.poll()
		if len(fs) == 0 || fs[0].Command != frames.CmdConnected {
			t.Fatalf("%d unacked: got %v, want CONNECTED first", tc.unacked, commands(fs))
		}
		if got := hdr(fs[0], "resumed") == "true"; got != tc.resumed {
			t.Fatalf("%d unacked: resumed %v, want %v", tc.unacked, got, tc.resumed)
		}
		for _, f := range fs {
			if f.Command == frames.CmdError {
				t.Fatalf("%d unacked: the session was closed: %s", tc.unacked, hdr(f, "message"))
			}
		}
		if tc.resumed {
			if n := len(fs) - 1; n != tc.unacked+1 {
				t.Fatalf("%d unacked: %d MESSAGEs after the resume, want them all again and the live one", tc.unacked, n)
			}
			if held, limit := r.s.budget.held(), r.s.budget.limit; held > limit {
				t.Fatalf("held %d over the budget %d after the resume", held, limit)
			}
		}
	}
}

func newClientFrom(t *testing.T, b *Broker, remote string) *client {
	c := newClient(t, b)
	c.s = b.NewSession(c.tr, remote)
	return c
}

// TestMaxParkedPerIP: one address past MaxParkedPerIP has its oldest
// parked session released (counted per-ip), so it cannot fill the
// broker-wide bound; another address's sessions stay resumable.
func TestMaxParkedPerIP(t *testing.T) {
	reg := prometheus.NewRegistry()
	b := New(Config{MaxParkedPerIP: 2, Registerer: reg})
	var tokens []string
	for i := range 3 {
		c := newClientFrom(t, b, "203.0.113.7:"+strconv.Itoa(40000+i))
		tokens = append(tokens, hdr(c.connect(), "resume-token"))
		c.mustSend(frames.CmdSubscribe, "", "destination:/topic/t", "id:t")
		c.drop()
	}
	other := newClientFrom(t, b, "[2001:db8::1]:5000")
	otherToken := hdr(other.connect(), "resume-token")
	other.drop()
	waitFor(t, func() bool { return counterValue(t, reg, "stompbox_sessions_parked_released_total", "per-ip") == 1 },
		"one release per-ip")
	if n := b.ParkedSessions(); n != 3 {
		t.Fatalf("%d parked, want 3: two of the busy address, one other", n)
	}
	for i, tok := range append(tokens, otherToken) {
		r := newClient(t, b)
		f, _ := r.resumeOn(tok)
		if want := strconv.FormatBool(i != 0); hdr(f, "resumed") != want {
			t.Fatalf("session %d: resumed:%s, want %s (the busy address's oldest goes)", i, hdr(f, "resumed"), want)
		}
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for range 500 {
		if cond() {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestRemoteHost(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.7:4000": "203.0.113.7", "[2001:db8::1]:5000": "2001:db8::1",
		"2001:db8::1": "2001:db8::1", "test": "test", "": "",
	} {
		if got := remoteHost(in); got != want {
			t.Errorf("remoteHost(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestResumedUnsubscribeUnknownIsNoError: on a resumed session an
// UNSUBSCRIBE of an id the session does not hold (sent before a drop that
// may have delivered it, or again) gets its RECEIPT, not ERROR
// unknown-subscription (which a client would take as fatal); on a fresh
// session it is still the error.
func TestResumedUnsubscribeUnknownIsNoError(t *testing.T) {
	b := New(Config{})
	tok := parkedSubscriber(t, b, "destination:/topic/t", "id:old")
	r, _ := mustResume(t, b, tok)
	r.mustSend(frames.CmdUnsubscribe, "", "id:old", "receipt:u1")
	r.mustSend(frames.CmdUnsubscribe, "", "id:old", "receipt:u2") // again: already gone
	r.mustSend(frames.CmdUnsubscribe, "", "id:never", "receipt:u3")
	if got := receiptIDs(r.poll()); !slicesEqual(got, "u1", "u2", "u3") {
		t.Fatalf("receipts %v, want u1 u2 u3", got)
	}
	fresh := newClient(t, b)
	fresh.connect()
	_ = fresh.send(frames.CmdUnsubscribe, "", "id:never")
	if fs := fresh.poll(); len(fs) != 1 || hdr(fs[0], "error-code") != CodeUnknownSubscription {
		t.Fatalf("fresh session got %v, want ERROR unknown-subscription", commands(fs))
	}
}

// TestResumedTransactionAbortedByTheDrop: a transaction open when the
// connection dropped was aborted; on the resumed session its ABORT is a
// no-op (RECEIPT) and its COMMIT an ERROR that says so and may be retried
// (begin it again), not a fatal protocol error.
func TestResumedTransactionAbortedByTheDrop(t *testing.T) {
	for _, cmd := range []frames.Command{frames.CmdAbort, frames.CmdCommit} {
		b := New(Config{})
		a := newClient(t, b)
		tok := hdr(a.connect(), "resume-token")
		a.mustSend(frames.CmdBegin, "", "transaction:tx1")
		a.mustSend(frames.CmdSend, "in tx", "destination:/queue/q", "transaction:tx1")
		a.drop()
		r, _ := mustResume(t, b, tok)
		_ = r.send(cmd, "", "transaction:tx1", "receipt:x")
		fs := r.poll()
		if len(fs) != 1 {
			t.Fatalf("%s: got %v", cmd, commands(fs))
		}
		switch cmd {
		case frames.CmdAbort:
			if fs[0].Command != frames.CmdReceipt {
				t.Fatalf("ABORT after the drop: got %s %s, want its RECEIPT", fs[0].Command, hdr(fs[0], "error-code"))
			}
		default:
			if fs[0].Command != frames.CmdError || hdr(fs[0], "error-code") != CodeUnknownTransaction || hdr(fs[0], "retryable") != "true" {
				t.Fatalf("COMMIT after the drop: got %s %v, want ERROR unknown-transaction retryable:true", fs[0].Command, headerLines(fs[0]))
			}
		}
	}
}
