package auth

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stompbox/stompbox/broker"
)

// counting accepts passcode "good" and counts the checks it ran.
type counting struct {
	checks      atomic.Int64
	unavailable bool
}

func (c *counting) Authenticate(_ context.Context, cr broker.Credentials) (*broker.Principal, error) {
	c.checks.Add(1)
	switch {
	case c.unavailable:
		return nil, errors.Join(broker.ErrAuthUnavailable, errors.New("down"))
	case cr.Passcode == "good":
		return &broker.Principal{Name: cr.Login}, nil
	case cr.Login == "" && cr.Passcode == "":
		return &broker.Principal{Name: "anonymous", Anonymous: true}, nil
	}
	return nil, ErrInvalidCredentials
}

// clock is a settable time for the backoff.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock                   { return &clock{t: time.Unix(1_800_000_000, 0)} }
func bad(addr string) broker.Credentials {
	return broker.Credentials{Login: "u", Passcode: "bad", RemoteAddr: addr}
}
func anon(addr string) broker.Credentials { return broker.Credentials{RemoteAddr: addr} }
func good(addr string) broker.Credentials {
	return broker.Credentials{Login: "u", Passcode: "good", RemoteAddr: addr}
}
func newTestBackoff(inner broker.Authenticator, clk *clock, max int) *Backoff {
	return NewBackoff(inner, BackoffConfig{After: 3, Max: 8 * time.Second, MaxAddresses: max, now: clk.now}).(*Backoff)
}

func TestBackoff(t *testing.T) {
	type step struct {
		advance  time.Duration
		creds    broker.Credentials
		wantErr  error  // nil: accepted
		checked  bool   // whether the inner check must run
		wantText string // in the error, when set
	}
	const a, a2, other = "192.0.2.1:1000", "192.0.2.1:2000", "192.0.2.2:1000"
	tests := []struct {
		name  string
		steps []step
	}{
		{"three failures, then a 2s wait without a check", []step{
			{0, bad(a), ErrInvalidCredentials, true, ""},
			{0, bad(a), ErrInvalidCredentials, true, ""},
			{0, bad(a), ErrInvalidCredentials, true, ""},
			{0, good(a), ErrTooManyFailures, false, "retry in 2s"},
			{0, bad(a2), broker.ErrAuthUnavailable, false, ""}, // the port does not matter
			{0, good(other), nil, true, ""},                    // another address is not affected
			{2 * time.Second, good(a), nil, true, ""},          // the wait is over; a success takes one failure back
			{0, bad(a), ErrInvalidCredentials, true, ""},       // three again: the wait starts over
			{0, good(a), ErrTooManyFailures, false, "retry in 2s"},
		}},
		{"successes do not wash out failures", []step{
			{0, bad(a), ErrInvalidCredentials, true, ""},
			{0, bad(a), ErrInvalidCredentials, true, ""},
			{0, good(a), nil, true, ""},
			{0, bad(a), ErrInvalidCredentials, true, ""},
			{0, bad(a), ErrInvalidCredentials, true, ""},
			{0, bad(a), ErrTooManyFailures, false, ""},
		}},
		{"an anonymous success takes nothing back", []step{
			{0, bad(a), ErrInvalidCredentials, true, ""},
			{0, bad(a), ErrInvalidCredentials, true, ""},
			{0, anon(a), nil, true, ""},
			{0, bad(a), ErrInvalidCredentials, true, ""},
			{0, bad(a), ErrTooManyFailures, false, ""},
		}},
		{"the wait doubles up to the cap", []step{
			{0, bad(a), ErrInvalidCredentials, true, ""},
			{0, bad(a), ErrInvalidCredentials, true, ""},
			{0, bad(a), ErrInvalidCredentials, true, ""}, // 2s
			{time.Second, bad(a), ErrTooManyFailures, false, "retry in 1s"},
			{time.Second, bad(a), ErrInvalidCredentials, true, ""},
			{0, bad(a), ErrTooManyFailures, false, "retry in 4s"},
			{4 * time.Second, bad(a), ErrInvalidCredentials, true, ""},
			{0, bad(a), ErrTooManyFailures, false, "retry in 8s"},
			{8 * time.Second, bad(a), ErrInvalidCredentials, true, ""},
			{0, bad(a), ErrTooManyFailures, false, "retry in 8s"}, // capped at Max
			{7*time.Second + time.Millisecond, bad(a), ErrTooManyFailures, false, "retry in 1s"},
		}},
		{"a quiet spell longer than Max forgets", []step{
			{0, bad(a), ErrInvalidCredentials, true, ""},
			{0, bad(a), ErrInvalidCredentials, true, ""},
			{9 * time.Second, bad(a), ErrInvalidCredentials, true, ""},
			{0, bad(a), ErrInvalidCredentials, true, ""},
			{0, good(a), nil, true, ""},
		}},
		{"IPv6 counts by /64", []step{
			{0, bad("[2001:db8:1:2::1]:1"), ErrInvalidCredentials, true, ""},
			{0, bad("[2001:db8:1:2::2]:1"), ErrInvalidCredentials, true, ""},
			{0, bad("[2001:db8:1:2:ffff::3]:1"), ErrInvalidCredentials, true, ""},
			{0, good("[2001:db8:1:2::99]:1"), ErrTooManyFailures, false, ""},
			{0, good("[2001:db8:1:3::1]:1"), nil, true, ""},
		}},
		{"IPv4-mapped IPv6 is the IPv4 address", []step{
			{0, bad("[::ffff:192.0.2.1]:1"), ErrInvalidCredentials, true, ""},
			{0, bad(a), ErrInvalidCredentials, true, ""},
			{0, bad("[::ffff:192.0.2.1]:2"), ErrInvalidCredentials, true, ""},
			{0, good(a), ErrTooManyFailures, false, ""},
		}},
		{"no IP address: never tracked", []step{
			{0, bad("@unix"), ErrInvalidCredentials, true, ""},
			{0, bad("@unix"), ErrInvalidCredentials, true, ""},
			{0, bad("@unix"), ErrInvalidCredentials, true, ""},
			{0, bad("@unix"), ErrInvalidCredentials, true, ""},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk, inner := newClock(), &counting{}
			b := newTestBackoff(inner, clk, 100)
			for i, st := range tt.steps {
				clk.advance(st.advance)
				before := inner.checks.Load()
				p, err := b.Authenticate(context.Background(), st.creds)
				if !errors.Is(err, st.wantErr) || (err == nil) != (p != nil) {
					t.Fatalf("step %d (%s %s): %v, %v; want %v", i, st.creds.RemoteAddr, st.creds.Passcode, p, err, st.wantErr)
				}
				if ran := inner.checks.Load() > before; ran != st.checked {
					t.Errorf("step %d: inner check ran %v, want %v", i, ran, st.checked)
				}
				if errors.Is(err, ErrTooManyFailures) && !errors.Is(err, broker.ErrAuthUnavailable) {
					t.Errorf("step %d: backoff answer %v is not retryable (ErrAuthUnavailable)", i, err)
				}
				if st.wantText != "" && (err == nil || !strings.Contains(err.Error(), st.wantText)) {
					t.Errorf("step %d: err %v, want it to say %q", i, err, st.wantText)
				}
			}
		})
	}
}

// A check that could not run (the caller's deadline, a directory down) is
// not the client's failure and does not count.
func TestBackoffIgnoresUnavailable(t *testing.T) {
	clk, inner := newClock(), &counting{unavailable: true}
	b := newTestBackoff(inner, clk, 100)
	for i := range 10 {
		if _, err := b.Authenticate(context.Background(), bad("192.0.2.1:1")); errors.Is(err, ErrTooManyFailures) {
			t.Fatalf("attempt %d backed off after unavailable checks", i)
		}
	}
	if n := inner.checks.Load(); n != 10 {
		t.Errorf("checks = %d, want 10", n)
	}
}

// The table holds at most MaxAddresses: past it, addresses quiet for
// longer than Max are forgotten to make room, and when none can be, a new
// address is not tracked (its checks still run).
func TestBackoffTableBound(t *testing.T) {
	clk, inner := newClock(), &counting{}
	b := newTestBackoff(inner, clk, 4)
	addr := func(i int) string { return "198.51.100." + string(rune('0'+i)) + ":1" }
	for i := range 8 {
		for range 3 {
			_, _ = b.Authenticate(context.Background(), bad(addr(i)))
		}
		if n := b.Tracked(); n > 4 {
			t.Fatalf("after address %d: %d tracked, want at most 4", i, n)
		}
	}
	if _, err := b.Authenticate(context.Background(), bad(addr(7))); errors.Is(err, ErrTooManyFailures) {
		t.Errorf("an address the full table could not hold backed off: %v", err)
	}
	if _, err := b.Authenticate(context.Background(), bad(addr(0))); !errors.Is(err, ErrTooManyFailures) {
		t.Errorf("a tracked address: err = %v, want ErrTooManyFailures", err)
	}
	clk.advance(9 * time.Second) // longer than Max: everyone may go
	for range 3 {
		_, _ = b.Authenticate(context.Background(), bad(addr(7)))
	}
	if _, err := b.Authenticate(context.Background(), bad(addr(7))); !errors.Is(err, ErrTooManyFailures) {
		t.Errorf("after the sweep, a new address: err = %v, want ErrTooManyFailures", err)
	}
}

func TestNewBackoffDisabled(t *testing.T) {
	inner := &counting{}
	if got := NewBackoff(inner, BackoffConfig{After: -1}); got != broker.Authenticator(inner) {
		t.Errorf("NewBackoff(After: -1) = %T, want the inner authenticator", got)
	}
	b := NewBackoff(inner, BackoffConfig{}).(*Backoff)
	if b.cfg.After != DefaultBackoffAfter || b.cfg.Max != DefaultBackoffMax || b.cfg.MaxAddresses != DefaultBackoffAddresses {
		t.Errorf("defaults: %+v", b.cfg)
	}
}

// gate is an Authenticator whose checks all wait until release is closed,
// counting how many started.
type gate struct {
	started atomic.Int64
	release chan struct{}
}

func (g *gate) Authenticate(context.Context, broker.Credentials) (*broker.Principal, error) {
	g.started.Add(1)
	<-g.release
	return nil, ErrInvalidCredentials
}

// One address runs at most After checks at once: attempts in flight are
// not free just because their failures are not recorded yet.
func TestBackoffBoundsChecksInFlight(t *testing.T) {
	g := &gate{release: make(chan struct{})}
	b := NewBackoff(g, BackoffConfig{After: 3, Max: 8 * time.Second})
	const attempts = 50
	errs := make(chan error, attempts)
	for range attempts {
		go func() {
			_, err := b.Authenticate(context.Background(), bad("192.0.2.9:1"))
			errs <- err
		}()
	}
	refused := 0
	for range attempts - 3 { // all but the three admitted answer at once
		if err := <-errs; errors.Is(err, ErrTooManyFailures) {
			refused++
		}
	}
	if got := g.started.Load(); got != 3 || refused != attempts-3 {
		t.Fatalf("%d checks started and %d refused at once, want 3 and %d", got, refused, attempts-3)
	}
	close(g.release)
	for range 3 {
		if err := <-errs; !errors.Is(err, ErrInvalidCredentials) {
			t.Fatalf("an admitted check ended with %v", err)
		}
	}
}
