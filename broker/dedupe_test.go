package broker

import (
	"errors"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stompbox/stompbox/frames"
)

// dedupeBroker has users (login:<name>, passcode:pw), virtual hosts a and
// b, and a fake clock.
func dedupeBroker(t *testing.T, cfg Config) (*Broker, *fakeClock) {
	t.Helper()
	clock := newFakeClock()
	cfg.Now, cfg.Authenticator = clock.Now, anyUserAuth{}
	cfg.VirtualHosts = []string{"a", "b"}
	return New(cfg), clock
}

func keyedUser(t *testing.T, b *Broker, user, host string) *client {
	t.Helper()
	c := newClient(t, b)
	c.connect("login:"+user, "passcode:pw", "host:"+host)
	return c
}

// sendKeyed sends body to dest with idempotency-key k and requires its
// RECEIPT.
func sendKeyed(t *testing.T, c *client, dest, k, body string, extra ...string) {
	t.Helper()
	r := "r-" + body
	c.mustSend(frames.CmdSend, body, append([]string{"destination:" + dest, "idempotency-key:" + k, "receipt:" + r}, extra...)...)
	if got := receiptIDs(c.poll()); !slices.Equal(got, []string{r}) {
		t.Fatalf("SEND %s (key %s): receipts %v, want [%s]", body, k, got, r)
	}
}

// A SEND repeating a key gets its RECEIPT and is not applied; the key is
// per user, per destination and per virtual host, for queues and topics.
func TestDedupeDropsRepeats(t *testing.T) {
	for _, dest := range []string{"/queue/d", "/topic/d"} {
		t.Run(dest, func(t *testing.T) {
			b, _ := dedupeBroker(t, Config{})
			sub := keyedUser(t, b, "reader", "a")
			sub.mustSend(frames.CmdSubscribe, "", "destination:"+dest, "id:s")
			alice := keyedUser(t, b, "alice", "a")
			sendKeyed(t, alice, dest, "k1", "m1")
			sendKeyed(t, alice, dest, "k1", "m1-again")
			alice2 := keyedUser(t, b, "alice", "a") // another connection of the same user
			sendKeyed(t, alice2, dest, "k1", "m1-third")
			sendKeyed(t, alice, dest+".other", "k1", "other-dest") // not subscribed: not seen
			sendKeyed(t, keyedUser(t, b, "bob", "a"), dest, "k1", "bob")
			sendKeyed(t, alice, dest, "k2", "m2")
			if got := bodies(sub.poll()); !slices.Equal(got, []string{"m1", "bob", "m2"}) {
				t.Fatalf("delivered %v, want m1 bob m2", got)
			}
			if n := b.stats.Duplicates.Load(); n != 2 {
				t.Errorf("duplicates counted %d, want 2", n)
			}
			// Another virtual host has its own keys.
			subB := keyedUser(t, b, "reader", "b")
			subB.mustSend(frames.CmdSubscribe, "", "destination:"+dest, "id:s")
			sendKeyed(t, keyedUser(t, b, "alice", "b"), dest, "k1", "in-b")
			if got := bodies(subB.poll()); !slices.Equal(got, []string{"in-b"}) {
				t.Fatalf("virtual host b delivered %v, want in-b", got)
			}
		})
	}
}

// A key is remembered for the window (inclusive), then forgotten; the
// sweep forgets the keys of users who stopped sending.
func TestDedupeWindow(t *testing.T) {
	const window = time.Minute
	b, clock := dedupeBroker(t, Config{DedupeWindow: window})
	sub := keyedUser(t, b, "reader", "a")
	sub.mustSend(frames.CmdSubscribe, "", "destination:/queue/w", "id:s")
	p := keyedUser(t, b, "alice", "a")
	sendKeyed(t, p, "/queue/w", "k", "first")
	clock.advance(window)
	sendKeyed(t, p, "/queue/w", "k", "at-the-window") // still a duplicate
	clock.advance(time.Millisecond)
	sendKeyed(t, p, "/queue/w", "k", "after-the-window")
	if got := bodies(sub.poll()); !slices.Equal(got, []string{"first", "after-the-window"}) {
		t.Fatalf("delivered %v, want first after-the-window", got)
	}
	sp := b.spaces["a"]
	if keys, users := sp.dedupe.count(); keys != 1 || users != 1 {
		t.Fatalf("%d keys of %d users held, want 1 of 1", keys, users)
	}
	b.SweepDedupe(clock.Now().Add(window))
	if keys, users := sp.dedupe.count(); keys != 1 {
		t.Fatalf("sweep at the window's end left %d keys of %d users, want 1", keys, users)
	}
	b.SweepDedupe(clock.Now().Add(window + time.Millisecond))
	if keys, users := sp.dedupe.count(); keys != 0 || users != 0 {
		t.Fatalf("sweep past the window left %d keys of %d users, want none", keys, users)
	}
}

// Past DedupeMaxKeysPerUser the oldest keys are forgotten first, and a
// user's keys never exceed the bound however many it sends.
func TestDedupeMaxKeysPerUser(t *testing.T) {
	const max = 3
	b, _ := dedupeBroker(t, Config{DedupeMaxKeysPerUser: max})
	sub := keyedUser(t, b, "reader", "a")
	sub.mustSend(frames.CmdSubscribe, "", "destination:/queue/m", "id:s")
	p := keyedUser(t, b, "alice", "a")
	for i := 1; i <= 4; i++ {
		sendKeyed(t, p, "/queue/m", "k"+strconv.Itoa(i), "m"+strconv.Itoa(i))
	}
	sendKeyed(t, p, "/queue/m", "k4", "dup4")         // remembered
	sendKeyed(t, p, "/queue/m", "k1", "k1-forgotten") // pushed out by k4
	if got := bodies(sub.poll()); !slices.Equal(got, []string{"m1", "m2", "m3", "m4", "k1-forgotten"}) {
		t.Fatalf("delivered %v", got)
	}
	sp := b.spaces["a"]
	for i := range 10 * max {
		p.mustSend(frames.CmdSend, "x", "destination:/queue/m", "idempotency-key:many-"+strconv.Itoa(i))
		if keys, _ := sp.dedupe.count(); keys > max {
			t.Fatalf("after %d keys the user holds %d, want at most %d", i+1, keys, max)
		}
	}
	if u := sp.dedupe.users["alice"]; len(u.order)-u.head > 2*max {
		t.Fatalf("the user's claim list holds %d entries for %d keys", len(u.order)-u.head, len(u.keys))
	}
}

// An idempotency-key longer than MaxIDLength, or empty, is refused.
func TestDedupeKeyBounds(t *testing.T) {
	tests := []struct {
		name string
		key  string
		ok   bool
	}{
		{"at the bound", strings.Repeat("k", 16), true},
		{"past the bound", strings.Repeat("k", 17), false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, _ := dedupeBroker(t, Config{MaxIDLength: 16})
			p := keyedUser(t, b, "alice", "a")
			err := p.send(frames.CmdSend, "x", "destination:/queue/k", "idempotency-key:"+tt.key, "receipt:r")
			f := p.next()
			if tt.ok {
				if err != nil || f.Command != frames.CmdReceipt {
					t.Fatalf("got %s %v (%v), want RECEIPT", f.Command, headerLines(f), err)
				}
				return
			}
			if !isClosed(err) || f.Command != frames.CmdError || hdr(f, "error-code") != CodeInvalidHeader {
				t.Fatalf("got %s %v (%v), want ERROR invalid-header", f.Command, headerLines(f), err)
			}
		})
	}
}

// A refused SEND does not burn its key: under full_policy error the
// limit-exceeded SEND's key is free for the retry on a new connection;
// under block the held SEND is applied once room frees, not taken for its
// own duplicate.
func TestDedupeRefusedKeepsKey(t *testing.T) {
	t.Run("error", func(t *testing.T) {
		b, _ := dedupeBroker(t, Config{MaxQueueMessages: 1, FullPolicy: FullError})
		p := keyedUser(t, b, "alice", "a")
		p.mustSend(frames.CmdSend, "fill", "destination:/queue/f")
		err := p.send(frames.CmdSend, "keyed", "destination:/queue/f", "idempotency-key:k", "receipt:r")
		if f := p.next(); !isClosed(err) || hdr(f, "error-code") != CodeLimitExceeded {
			t.Fatalf("got %s %v, want ERROR limit-exceeded", f.Command, headerLines(f))
		}
		c := keyedUser(t, b, "reader", "a")
		c.mustSend(frames.CmdSubscribe, "", "destination:/queue/f", "id:s")
		sendKeyed(t, keyedUser(t, b, "alice", "a"), "/queue/f", "k", "keyed")
		if got := bodies(c.poll()); !slices.Equal(got, []string{"fill", "keyed"}) {
			t.Fatalf("delivered %v, want fill keyed", got)
		}
	})
	t.Run("block", func(t *testing.T) {
		b, clock := dedupeBroker(t, Config{MaxQueueMessages: 1})
		p := keyedUser(t, b, "alice", "a")
		p.mustSend(frames.CmdSend, "fill", "destination:/queue/f")
		p.mustSend(frames.CmdSend, "keyed", "destination:/queue/f", "idempotency-key:k", "receipt:r")
		if got := receiptIDs(p.poll()); len(got) != 0 {
			t.Fatalf("receipts %v while the queue is full", got)
		}
		c := keyedUser(t, b, "reader", "a")
		c.mustSend(frames.CmdSubscribe, "", "destination:/queue/f", "id:s", "ack:client-individual")
		var got []string
		for round := 0; round < 10 && len(got) < 2; round++ {
			for _, f := range c.poll() {
				if f.Command == frames.CmdMessage {
					got = append(got, string(f.Body))
					c.mustSend(frames.CmdAck, "", "id:"+hdr(f, "ack"))
				}
			}
			clock.advance(time.Second)
			p.poked()
		}
		if !slices.Equal(got, []string{"fill", "keyed"}) {
			t.Fatalf("delivered %v, want fill keyed", got)
		}
		if ids := receiptIDs(p.poll()); !slices.Equal(ids, []string{"r"}) {
			t.Fatalf("receipts %v, want r", ids)
		}
		if n := b.stats.Duplicates.Load(); n != 0 {
			t.Fatalf("%d duplicates counted, want 0: the retry is the same SEND", n)
		}
	})
}

// Inside a transaction the key counts at COMMIT: a repeat within the
// transaction or of a key already held is left out; an aborted
// transaction burns nothing.
func TestDedupeTransaction(t *testing.T) {
	b, _ := dedupeBroker(t, Config{})
	sub := keyedUser(t, b, "reader", "a")
	sub.mustSend(frames.CmdSubscribe, "", "destination:/queue/t", "id:s")
	p := keyedUser(t, b, "alice", "a")

	p.mustSend(frames.CmdBegin, "", "transaction:ab")
	p.mustSend(frames.CmdSend, "aborted", "destination:/queue/t", "transaction:ab", "idempotency-key:a")
	p.mustSend(frames.CmdAbort, "", "transaction:ab")
	sendKeyed(t, p, "/queue/t", "a", "a-outside")

	sendKeyed(t, p, "/queue/t", "held", "held-outside")
	p.mustSend(frames.CmdBegin, "", "transaction:tx")
	for i, k := range []string{"x", "x", "held", "y"} {
		p.mustSend(frames.CmdSend, "tx"+strconv.Itoa(i), "destination:/queue/t", "transaction:tx", "idempotency-key:"+k)
	}
	if got := bodies(sub.poll()); !slices.Equal(got, []string{"a-outside", "held-outside"}) {
		t.Fatalf("before COMMIT: delivered %v", got)
	}
	p.mustSend(frames.CmdCommit, "", "transaction:tx", "receipt:c")
	if got := receiptIDs(p.poll()); !slices.Equal(got, []string{"c"}) {
		t.Fatalf("COMMIT receipts %v", got)
	}
	if got := bodies(sub.poll()); !slices.Equal(got, []string{"tx0", "tx3"}) {
		t.Fatalf("COMMIT delivered %v, want tx0 tx3", got)
	}
	sendKeyed(t, p, "/queue/t", "y", "y-again")
	if got := bodies(sub.poll()); len(got) != 0 {
		t.Fatalf("a key committed in a transaction was not remembered: delivered %v", got)
	}
	if q, _ := b.spaces["a"].queue("/queue/t", nil); q.reservedCount != 0 || q.reservedBytes != 0 {
		t.Fatalf("%d messages, %d bytes still reserved after the COMMIT left duplicates out", q.reservedCount, q.reservedBytes)
	}
}

// Pipelined persistent SENDs: a duplicate of a SEND still in flight is not
// handed to the journal again and gets its RECEIPT in order, after the
// original's; a journal failure gives the key back.
func TestDedupePipelined(t *testing.T) {
	j, b, c, p := pipelinedQueue(t)
	p.mustSend(frames.CmdSend, "m1", "destination:/queue/q", "persistent:true", "idempotency-key:k", "receipt:r1")
	p.mustSend(frames.CmdSend, "m1", "destination:/queue/q", "persistent:true", "idempotency-key:k", "receipt:r2")
	p.mustSend(frames.CmdSend, "m3", "destination:/queue/q", "persistent:true", "receipt:r3")
	if n := j.submitted(); n != 2 {
		t.Fatalf("%d appends handed to the journal, want 2: the duplicate is not", n)
	}
	if fs := p.poll(); len(fs) != 0 {
		t.Fatalf("the duplicate's RECEIPT overtook its original: %v", receiptIDs(fs))
	}
	j.complete(t, 1, nil)
	p.poked()
	if fs := p.poll(); len(fs) != 0 {
		t.Fatalf("receipts before the first write completed: %v", receiptIDs(fs))
	}
	j.complete(t, 0, nil)
	p.poked()
	if got := receiptIDs(p.poll()); !slices.Equal(got, []string{"r1", "r2", "r3"}) {
		t.Fatalf("receipts %v, want r1 r2 r3", got)
	}
	if got := bodies(c.poll()); !slices.Equal(got, []string{"m1", "m3"}) {
		t.Fatalf("delivered %v, want m1 m3", got)
	}

	// A failed write burns nothing: the resend on a new connection goes in.
	p.mustSend(frames.CmdSend, "lost", "destination:/queue/q", "persistent:true", "idempotency-key:f", "receipt:rf")
	j.complete(t, 2, errors.New("disk on fire"))
	p.tr.pokes.Swap(0)
	_ = p.s.Poked()
	if f := p.next(); f.Command != frames.CmdError {
		t.Fatalf("got %s after a failed write, want ERROR", f.Command)
	}
	p2 := newClient(t, b)
	p2.connect() // anonymous, as p
	p2.mustSend(frames.CmdSend, "resent", "destination:/queue/q", "persistent:true", "idempotency-key:f", "receipt:rf2")
	if n := j.submitted(); n != 4 {
		t.Fatalf("%d appends, want 4: the resend after a failed write is no duplicate", n)
	}
	j.complete(t, 3, nil)
	p2.poked()
	if got := receiptIDs(p2.poll()); !slices.Equal(got, []string{"rf2"}) {
		t.Fatalf("receipts %v, want rf2", got)
	}
}

// pipelinedQueue is a broker with a pipelined journal the test completes
// by hand, a consumer c of /queue/q and a connected producer p.
func pipelinedQueue(t *testing.T) (*pipeJournal, *Broker, *client, *client) {
	j := &pipeJournal{}
	b := New(Config{Journal: j})
	c := newClient(t, b)
	c.connect()
	c.mustSend(frames.CmdSubscribe, "", "destination:/queue/q", "id:s")
	p := newClient(t, b)
	p.connect()
	return j, b, c, p
}

// A negative window turns deduplication off: repeats are applied.
func TestDedupeOff(t *testing.T) {
	b, _ := dedupeBroker(t, Config{DedupeWindow: -1})
	sub := keyedUser(t, b, "reader", "a")
	sub.mustSend(frames.CmdSubscribe, "", "destination:/queue/o", "id:s")
	p := keyedUser(t, b, "alice", "a")
	sendKeyed(t, p, "/queue/o", "k", "one")
	sendKeyed(t, p, "/queue/o", "k", "two")
	if got := bodies(sub.poll()); !slices.Equal(got, []string{"one", "two"}) {
		t.Fatalf("delivered %v, want one two", got)
	}
}

// A user's remembered keys cost a bounded amount each, and the store never
// holds more than DedupeMaxKeysPerUser of them: past the bound memory
// stays flat.
func TestDedupeMemoryPerKey(t *testing.T) {
	if testing.Short() {
		t.Skip("heap measurement: not in -short")
	}
	const max = 10_000
	b, _ := dedupeBroker(t, Config{DedupeMaxKeysPerUser: max})
	p := keyedUser(t, b, "alice", "a")
	send := func(i int) {
		p.mustSend(frames.CmdSend, "", "destination:/topic/mem", "idempotency-key:order-"+strconv.Itoa(100_000_000+i))
	}
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	for i := range max {
		send(i)
	}
	full := heap()
	for i := max; i < 4*max; i++ {
		send(i)
	}
	steady := heap() // the claim list's array holds up to twice the bound before it is compacted
	for i := 4 * max; i < 8*max; i++ {
		send(i)
	}
	after := heap()
	perKey := float64(full-before) / max
	t.Logf("%.0f bytes per remembered key (36-byte key+destination); at the bound's steady state %.0f; 4x more keys after that: %+d bytes",
		perKey, float64(steady-before)/max, int64(after)-int64(steady))
	if perKey > 300 {
		t.Errorf("%.0f bytes per key, want at most 300", perKey)
	}
	if steady > before+2*(full-before) {
		t.Errorf("heap %d bytes past the bound, want at most twice the %d of a full store", steady-before, full-before)
	}
	if after > steady+(full-before)/10 {
		t.Errorf("heap grew from %d to %d bytes in the steady state", steady, after)
	}
	if keys, _ := b.spaces["a"].dedupe.count(); keys != max {
		t.Errorf("%d keys held, want %d", keys, max)
	}
}

// A resend from another connection while the original persistent SEND is
// still being written is not answered as a duplicate: that RECEIPT would
// promise what the write may still fail to keep. It goes in as new; once
// the original is on disk, repeats are duplicates again.
func TestDedupeResendWhileOriginalPending(t *testing.T) {
	j, b, c, p := pipelinedQueue(t)
	p.mustSend(frames.CmdSend, "orig", "destination:/queue/q", "persistent:true", "idempotency-key:k", "receipt:r1")
	p2 := newClient(t, b)
	p2.connect() // anonymous, as p: the same user
	p2.mustSend(frames.CmdSend, "resent", "destination:/queue/q", "persistent:true", "idempotency-key:k", "receipt:r2")
	if n := j.submitted(); n != 2 {
		t.Fatalf("%d appends, want 2: a resend while the original is pending is applied, not receipted blind", n)
	}
	if fs := p2.poll(); len(fs) != 0 {
		t.Fatalf("the resend was answered before anything was on disk: %v", receiptIDs(fs))
	}
	j.complete(t, 0, errors.New("disk on fire"))
	p.tr.pokes.Swap(0)
	_ = p.s.Poked()
	if f := p.next(); f.Command != frames.CmdError {
		t.Fatalf("got %s after the original's failed write, want ERROR", f.Command)
	}
	j.complete(t, 1, nil)
	p2.poked()
	if got := receiptIDs(p2.poll()); !slices.Equal(got, []string{"r2"}) {
		t.Fatalf("receipts %v, want r2", got)
	}
	if got := bodies(c.poll()); !slices.Equal(got, []string{"resent"}) {
		t.Fatalf("delivered %v, want only the resend: the original failed", got)
	}
	// The resend held no claim, so the key is free: the next SEND of it is
	// stored once and settles; a repeat after that is a duplicate.
	p2.mustSend(frames.CmdSend, "third", "destination:/queue/q", "persistent:true", "idempotency-key:k", "receipt:r3")
	j.complete(t, 2, nil)
	p2.poked()
	p3 := newClient(t, b)
	p3.connect()
	p3.mustSend(frames.CmdSend, "fourth", "destination:/queue/q", "persistent:true", "idempotency-key:k", "receipt:r4")
	if n := j.submitted(); n != 3 {
		t.Fatalf("%d appends, want 3: a repeat of a settled key is a duplicate", n)
	}
	if got := receiptIDs(p3.poll()); !slices.Equal(got, []string{"r4"}) {
		t.Fatalf("receipts %v, want r4 at once", got)
	}
}

// A claim's number is never used again, even after its user's entry was
// swept away: a SEND whose claim outlived the window must not settle (or
// release) the claim a resend made afterwards.
func TestDedupeClaimNumbersNotReused(t *testing.T) {
	var d dedupeStore
	s1, s3, s4 := &Session{}, &Session{}, &Session{}
	now := time.Unix(1000, 0)
	seq1, out := d.claim("u", "k", s1, now, time.Minute, 10) // pending: the write waits (a full journal)
	if out != claimNew {
		t.Fatalf("first claim: outcome %d", out)
	}
	later := now.Add(2 * time.Minute)
	d.sweep(later) // the window passed meanwhile: the user's entry goes
	seq3, out := d.claim("u", "k", s3, later, time.Minute, 10)
	if out != claimNew || seq3 == seq1 {
		t.Fatalf("resend's claim: outcome %d, number %d (the first was %d): want a new claim with a new number", out, seq3, seq1)
	}
	d.settle("u", "k", seq1) // the first write completes now
	if _, out := d.claim("u", "k", s4, later, time.Minute, 10); out != claimPendingElsewhere {
		t.Fatalf("a third send while the resend is pending: outcome %d, want pending elsewhere (%d): the old claim settled the new one", out, claimPendingElsewhere)
	}
	d.release("u", "k", seq1) // nor may an old release drop it
	if _, out := d.claim("u", "k", s3, later, time.Minute, 10); out != claimDuplicate {
		t.Fatalf("the resend's own repeat: outcome %d, want duplicate: an old release dropped the new claim", out)
	}
}
