package broker

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stompbox/stompbox/frames"
)

// Idempotent SEND (docs/compliance.md, "Idempotent SEND"). A SEND with
// idempotency-key:<k> whose key the same user already sent to the same
// destination, in the same virtual host, within DedupeWindow is a
// duplicate: it gets its RECEIPT but is not enqueued or published again.
// A producer that lost a RECEIPT to a reconnect can so resend safely.
//
// A key is claimed when its SEND is about to be applied and given back if
// the SEND is then refused (full, limit-exceeded, a journal failure), so
// only an accepted SEND burns its key. Each user keeps at most
// DedupeMaxKeysPerUser keys, the oldest forgotten first past it, each for
// DedupeWindow: memory is bounded by users times that. The keys live in
// memory only, even with the journal on: a restart forgets them.
//
// A claim is pending until its SEND is applied (for a persistent SEND:
// on disk). A repeat from another connection while the original is still
// pending is not answered as a duplicate: its RECEIPT would promise what
// the original's journal write may still fail to keep. It is applied as a
// new SEND instead (at least once, never a RECEIPT for nothing). A repeat
// on the original's own connection is a duplicate: its RECEIPT waits
// behind the original's in the pipeline, and a failed write ends that
// connection before it is sent.

// HeaderIdempotencyKey is the SEND header naming a SEND for deduplication.
const HeaderIdempotencyKey = "idempotency-key"

// The defaults of Config's deduplication settings.
const (
	DefaultDedupeWindow         = 2 * time.Minute
	DefaultDedupeMaxKeysPerUser = 10_000
)

// dedupeStore is one virtual host's idempotency keys, per user. Its lock
// is a leaf: nothing else is locked under it, and it may be taken under
// any other lock (docs/locking.md).
type dedupeStore struct {
	mu    sync.Mutex
	users map[string]*userKeys // guarded by mu; a user with no key has no entry
	// seq (guarded by mu) numbers every claim of the store: one counter,
	// not one per user, because a user's entry is deleted when it holds
	// no key and a number used again would let an old claim's settle or
	// release act on a new one.
	seq uint64
}

// userKeys is one user's keys: keys maps destination+"\x00"+key to the
// sequence number of its claim; order holds the claims oldest first (a
// claim given back stays in order until popped, and is skipped then).
type userKeys struct {
	keys map[string]uint64
	// pending maps the keys of claims not yet settled to the session
	// that made them.
	pending map[string]*Session
	order   []keyClaim
	head    int
}

type keyClaim struct {
	key string
	seq uint64
	at  time.Time
}

// dedupeClaim is what a SEND claimed, to give back if it is refused; the
// zero value claims nothing.
type dedupeClaim struct {
	sp   *space
	user string
	key  string
	seq  uint64
}

// dedupeKey returns f's idempotency key (nil: none), refusing one longer
// than MaxIDLength or empty with invalid-header.
func (s *Session) dedupeKey(f *frames.Frame) ([]byte, *stompError) {
	k, ok := f.Header(HeaderIdempotencyKey)
	if !ok {
		return nil, nil
	}
	if len(k) == 0 || len(k) > s.b.cfg.MaxIDLength {
		return nil, protocolErr(CodeInvalidHeader, "invalid idempotency-key header",
			"An idempotency-key must hold 1 to "+strconv.Itoa(s.b.cfg.MaxIDLength)+" bytes; got "+strconv.Itoa(len(k))+".")
	}
	return k, nil
}

// claimKey claims key k for a SEND to dest by this session's user. dup
// reports that the key is held already (the SEND is a duplicate); with
// deduplication off, or no key, it claims nothing.
func (s *Session) claimKey(dest string, k []byte) (c dedupeClaim, dup bool) {
	if k == nil || s.b.cfg.DedupeWindow <= 0 {
		return dedupeClaim{}, false
	}
	c = dedupeClaim{sp: s.space, user: s.principal.Name, key: dest + "\x00" + string(k)}
	seq, outcome := s.space.dedupe.claim(c.user, c.key, s, s.b.cfg.Now(), s.b.cfg.DedupeWindow, s.b.cfg.DedupeMaxKeysPerUser)
	switch outcome {
	case claimDuplicate:
		s.b.stats.Duplicates.Add(1)
		return dedupeClaim{}, true
	case claimPendingElsewhere:
		return dedupeClaim{}, false // applied as new, holding no claim
	}
	c.seq = seq
	return c, false
}

// claimOutcome is what claiming a key found.
type claimOutcome uint8

const (
	claimNew              claimOutcome = iota // the key is now claimed
	claimDuplicate                            // held already: a duplicate
	claimPendingElsewhere                     // held by another session's SEND not yet applied
)

// claim records key for user at now, after forgetting the user's keys
// older than window and, past max, its oldest; dup reports that key is
// held already (nothing is recorded then): a duplicate, or, while the
// claim is pending for a session other than owner, pending elsewhere. seq
// identifies the claim for settle and release.
func (d *dedupeStore) claim(user, key string, owner *Session, now time.Time, window time.Duration, max int) (seq uint64, _ claimOutcome) {
	d.mu.Lock()
	defer d.mu.Unlock()
	u := d.users[user]
	if u == nil {
		if d.users == nil {
			d.users = make(map[string]*userKeys)
		}
		u = &userKeys{keys: make(map[string]uint64)}
		d.users[user] = u
	}
	u.expire(now.Add(-window))
	if _, held := u.keys[key]; held {
		if by, pending := u.pending[key]; pending && by != owner {
			return 0, claimPendingElsewhere
		}
		return 0, claimDuplicate
	}
	for len(u.keys) >= max {
		u.pop() // past the bound: the oldest key is forgotten
	}
	d.seq++
	u.keys[key] = d.seq
	if u.pending == nil {
		u.pending = make(map[string]*Session)
	}
	u.pending[key] = owner
	u.order = append(u.order, keyClaim{key: key, seq: d.seq, at: now})
	return d.seq, claimNew
}

// settle marks a claim's SEND applied: from now on a repeat is a
// duplicate whichever connection sends it. Safe from any goroutine; a
// zero claim does nothing.
func (c dedupeClaim) settle() {
	if c.sp != nil {
		c.sp.dedupe.settle(c.user, c.key, c.seq)
	}
}

func (d *dedupeStore) settle(user, key string, seq uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if u := d.users[user]; u != nil && u.keys[key] == seq {
		delete(u.pending, key)
	}
}

// release gives a claim back: its SEND was refused, so its key is not
// burned. Safe from any goroutine; a zero claim does nothing.
func (c dedupeClaim) release() {
	if c.sp != nil {
		c.sp.dedupe.release(c.user, c.key, c.seq)
	}
}

// release forgets claim seq of key by user, unless it is forgotten already.
func (d *dedupeStore) release(user, key string, seq uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	u := d.users[user]
	if u == nil || u.keys[key] != seq {
		return // forgotten already
	}
	delete(u.keys, key)
	delete(u.pending, key)
	if n := len(u.order); n > u.head && u.order[n-1].seq == seq {
		u.order[n-1] = keyClaim{}
		u.order = u.order[:n-1] // the usual case: the newest claim
	}
	if len(u.keys) == 0 {
		delete(d.users, user)
	}
}

// expire forgets the claims made before cutoff.
func (u *userKeys) expire(cutoff time.Time) {
	for u.head < len(u.order) && u.order[u.head].at.Before(cutoff) {
		u.pop()
	}
}

// pop forgets the oldest claim, and reuses order's array once it is
// mostly popped.
func (u *userKeys) pop() {
	if u.head == len(u.order) {
		return
	}
	c := u.order[u.head]
	u.order[u.head] = keyClaim{}
	u.head++
	if u.keys[c.key] == c.seq {
		delete(u.keys, c.key)
		delete(u.pending, c.key)
	}
	if u.head == len(u.order) {
		u.order, u.head = u.order[:0], 0
	} else if u.head > 1024 && u.head > len(u.order)/2 {
		u.order, u.head = append(u.order[:0], u.order[u.head:]...), 0
	}
}

// sweep forgets the claims made before cutoff, and the users left with
// none.
func (d *dedupeStore) sweep(cutoff time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for name, u := range d.users {
		u.expire(cutoff)
		if len(u.keys) == 0 {
			delete(d.users, name)
		}
	}
}

// count is how many keys and users the store holds (the keys gauge, tests).
func (d *dedupeStore) count() (keys, users int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, u := range d.users {
		keys += len(u.keys)
	}
	return keys, len(d.users)
}

// SweepDedupe forgets the idempotency keys older than DedupeWindow as of
// now, in every virtual host: a user who stops sending does not keep its
// keys. Package server calls it periodically.
func (b *Broker) SweepDedupe(now time.Time) {
	if b.cfg.DedupeWindow <= 0 {
		return
	}
	for _, sp := range b.spaces {
		sp.dedupe.sweep(now.Add(-b.cfg.DedupeWindow))
	}
}

// duplicateReceipt answers a duplicate SEND: its RECEIPT only, in order
// behind the persistent SENDs in flight (the original among them, maybe).
func (s *Session) duplicateReceipt(f *frames.Frame) {
	if s.pipe.waiting() {
		s.pipeReceipt(f)
		return
	}
	s.receipt(f)
}

// txClaims are the claims a COMMIT made for its SENDs' keys, by op index
// (nil: the transaction has no key).
type txClaims []txClaim

type txClaim struct {
	claim     dedupeClaim
	duplicate bool
}

// claimTxKeys claims, in order, the keys of a committing transaction's
// SENDs that will be applied (not expired).
func (s *Session) claimTxKeys(ops []txOp, nowMs int64) txClaims {
	var claims txClaims
	for i, op := range ops {
		if op.cmd != frames.CmdSend || op.msg == nil || op.idemKey == "" || op.msg.expired(nowMs) {
			continue
		}
		if claims == nil {
			claims = make(txClaims, len(ops))
		}
		c, dup := s.claimKey(op.msg.Destination, []byte(op.idemKey))
		claims[i] = txClaim{claim: c, duplicate: dup}
	}
	return claims
}

// dup reports whether op i is a duplicate, to be left out.
func (c txClaims) dup(i int) bool { return c != nil && c[i].duplicate }

// release gives back the claims of ops from i on: they were not applied.
func (c txClaims) release(from int) {
	for i := len(c) - 1; i >= from; i-- { // newest first, as they were made
		c[i].claim.release()
	}
}

// dedupeCollector exposes how many idempotency keys are remembered.
type dedupeCollector struct {
	b    *Broker
	keys *prometheus.Desc
}

func newDedupeCollector(b *Broker) *dedupeCollector {
	return &dedupeCollector{b: b, keys: prometheus.NewDesc("stompbox_dedupe_keys",
		"Idempotency keys remembered now, all users and virtual hosts (bounded by dedupe.max_keys_per_user per user; forgotten after dedupe.window).", nil, nil)}
}

// Describe implements prometheus.Collector.
func (c *dedupeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.keys }

// Collect implements prometheus.Collector.
func (c *dedupeCollector) Collect(ch chan<- prometheus.Metric) {
	n := 0
	for _, sp := range c.b.spaces {
		keys, _ := sp.dedupe.count()
		n += keys
	}
	ch <- prometheus.MustNewConstMetric(c.keys, prometheus.GaugeValue, float64(n))
}
