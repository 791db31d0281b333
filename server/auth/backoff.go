package auth

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/stompbox/stompbox/broker"
)

// Defaults of BackoffConfig.
const (
	DefaultBackoffAfter = 5
	DefaultBackoffMax   = time.Minute
	// DefaultBackoffAddresses bounds the table of addresses with recent
	// failures.
	DefaultBackoffAddresses = 100_000
	// backoffFirst is the first wait; each further failure doubles it. It
	// is longer than the default auth.failure_delay (1s), which the
	// client waits for its answer after the check: a first wait no longer
	// than that would be over before the client heard of its failure.
	backoffFirst = 2 * time.Second
)

// BackoffConfig configures a Backoff.
type BackoffConfig struct {
	// After is how many consecutive failures from one address start the
	// backoff. 0: DefaultBackoffAfter; negative: no backoff at all.
	After int
	// Max caps the wait, which starts at 2s and doubles with each further
	// failure; an address without a failure for Max is forgotten. 0:
	// DefaultBackoffMax.
	Max time.Duration
	// MaxAddresses bounds the addresses tracked. When the table is full
	// and none can be forgotten, a new address is not tracked (its checks
	// run, bounded by Users' per-core limit): the table must not grow with
	// the number of addresses an attacker controls. 0:
	// DefaultBackoffAddresses.
	MaxAddresses int

	// now replaces the clock in tests; nil: time.Now.
	now func() time.Time
}

// Backoff wraps an Authenticator so that one address cannot keep the
// credential checks (bcrypt, limited to one per core) busy for everyone:
// after After consecutive failures from an address, further attempts from
// it are answered at once, without running the check, with an error
// wrapping ErrTooManyFailures and broker.ErrAuthUnavailable (retryable)
// that says when to retry; the wait starts at 2s and doubles with each
// failure after that, up to Max. One address runs at most After checks at
// once; more are answered like a backing-off address. A
// success takes one failure back (an anonymous one none: it checked
// nothing), so failures mixed with the attacker's own good logins still
// add up. Addresses are Credentials.RemoteAddr's IP, IPv6 grouped by /64
// (one host is normally given a whole /64). Errors that are not the
// client's fault (broker.ErrAuthUnavailable) and ErrAnonymousOnly (no
// check ran) count neither way. Safe for concurrent use.
type Backoff struct {
	inner broker.Authenticator // immutable
	cfg   BackoffConfig        // immutable, defaults applied

	mu        sync.Mutex
	addrs     map[netip.Addr]*failures // guarded by mu
	nextSweep time.Time                // guarded by mu: spaces out sweeps of a full table
}

// failures is one address's recent record.
type failures struct {
	count    int       // recent failures, less one per success
	inflight int       // checks begun and not yet ended
	last     time.Time // of the last failure
	until    time.Time // attempts before it are refused unchecked
}

var (
	_ broker.Authenticator    = (*Backoff)(nil)
	_ broker.PrincipalChecker = (*Backoff)(nil)
)

// NewBackoff wraps inner. With cfg.After negative it returns inner itself.
func NewBackoff(inner broker.Authenticator, cfg BackoffConfig) broker.Authenticator {
	if cfg.After < 0 {
		return inner
	}
	if cfg.After == 0 {
		cfg.After = DefaultBackoffAfter
	}
	if cfg.Max <= 0 {
		cfg.Max = DefaultBackoffMax
	}
	if cfg.MaxAddresses <= 0 {
		cfg.MaxAddresses = DefaultBackoffAddresses
	}
	if cfg.now == nil {
		cfg.now = time.Now
	}
	return &Backoff{inner: inner, cfg: cfg, addrs: make(map[netip.Addr]*failures)}
}

// Authenticate answers at once while c's address is backing off, and
// otherwise asks the wrapped Authenticator and records the outcome.
func (b *Backoff) Authenticate(ctx context.Context, c broker.Credentials) (*broker.Principal, error) {
	key := broker.AddressKey(c.RemoteAddr)
	if !key.IsValid() {
		return b.inner.Authenticate(ctx, c)
	}
	if wait := b.begin(key); wait > 0 {
		return nil, backoffError{wait}
	}
	p, err := b.inner.Authenticate(ctx, c)
	switch {
	case err == nil && p != nil && !p.Anonymous:
		b.end(key, -1)
	case err == nil, errors.Is(err, broker.ErrAuthUnavailable), errors.Is(err, ErrAnonymousOnly):
		b.end(key, 0)
	default:
		b.end(key, 1)
	}
	return p, err
}

// CheckPrincipal passes the question on to the wrapped Authenticator, if
// it can answer it; otherwise p stands.
func (b *Backoff) CheckPrincipal(p *broker.Principal) (*broker.Principal, error) {
	if pc, ok := b.inner.(broker.PrincipalChecker); ok {
		return pc.CheckPrincipal(p)
	}
	return p, nil
}

// Tracked returns how many addresses have recent failures.
func (b *Backoff) Tracked() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.addrs)
}

// begin is how long key must still wait (0: it may try, and the attempt
// is counted in flight until end): while it backs off, or while After
// checks of it are running.
func (b *Backoff) begin(key netip.Addr) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.cfg.now()
	f := b.entryLocked(key, now)
	if f == nil {
		return 0 // the table is full: untracked
	}
	if wait := f.until.Sub(now); wait > 0 {
		return wait
	}
	if now.Sub(f.last) > b.cfg.Max {
		f.count = 0 // a quiet spell as long as the longest wait: start over
	}
	if f.inflight >= b.cfg.After {
		return backoffFirst // After checks of this address are running already
	}
	f.inflight++
	return 0
}

// end records how an attempt begun went: failed +1 (from the After-th
// failure on, the wait starts: 2s, then doubling, up to Max), a real
// success -1, anything else 0.
func (b *Backoff) end(key netip.Addr, failed int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f := b.addrs[key]
	if f == nil || f.inflight == 0 {
		return // untracked when it began
	}
	f.inflight--
	switch {
	case failed > 0:
		b.failedLocked(f, b.cfg.now())
	case failed < 0:
		f.count = max(0, f.count-1)
	}
	if f.count == 0 && f.inflight == 0 && !f.until.After(b.cfg.now()) {
		delete(b.addrs, key)
	}
}

// entryLocked returns key's record, creating it when the table has room
// (nil when it has none).
func (b *Backoff) entryLocked(key netip.Addr, now time.Time) *failures {
	f := b.addrs[key]
	if f == nil {
		b.sweep(now, 2)
		if len(b.addrs) >= b.cfg.MaxAddresses && !now.Before(b.nextSweep) {
			b.sweep(now, len(b.addrs))
			b.nextSweep = now.Add(backoffFirst)
		}
		if len(b.addrs) >= b.cfg.MaxAddresses {
			return nil
		}
		f = &failures{}
		b.addrs[key] = f
	}
	return f
}

// failedLocked records a failure of f at now.
func (b *Backoff) failedLocked(f *failures, now time.Time) {
	f.count++
	f.last = now
	if n := f.count - b.cfg.After; n >= 0 {
		wait := b.cfg.Max
		if n < 30 && backoffFirst<<n < wait {
			wait = backoffFirst << n
		}
		f.until = now.Add(wait)
	}
}

// sweep forgets up to n entries' worth of addresses quiet for longer than
// Max, starting at a random point of the table (Go's map order).
func (b *Backoff) sweep(now time.Time, n int) {
	for key, f := range b.addrs {
		if n == 0 {
			return
		}
		n--
		if f.inflight == 0 && now.Sub(f.last) > b.cfg.Max {
			delete(b.addrs, key)
		}
	}
}

// backoffError is the answer to an address that is backing off.
type backoffError struct{ wait time.Duration }

func (e backoffError) Error() string {
	secs := int64((e.wait + time.Second - 1) / time.Second)
	return ErrTooManyFailures.Error() + "; retry in " + strconv.FormatInt(secs, 10) + "s"
}

// RetryAfter is how long the client must wait (an HTTP Retry-After).
func (e backoffError) RetryAfter() time.Duration { return e.wait }

// Is makes the error both ErrTooManyFailures and broker.ErrAuthUnavailable:
// the check did not run, and the client may retry once the wait is over.
func (e backoffError) Is(target error) bool {
	return target == ErrTooManyFailures || target == broker.ErrAuthUnavailable
}
