package broker

import (
	"bytes"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stompbox/stompbox/frames"
)

// FuzzSession runs a little program, decoded from the fuzz input, against
// one Broker: three client slots, each a Session behind a fake transport,
// send, subscribe, acknowledge, transact, disconnect, feed garbage and
// reconnect, and every session's output is taken and parsed after each step.
// At the end every session is released and auto-ack consumers drain every
// queue left (dead-letter queues included). It checks:
//
//   - no panic; Feed returns nil or ErrSessionClosed, and ErrSessionClosed
//     only after an ERROR or a DISCONNECT; nothing follows an ERROR;
//   - no loss: every queue message whose SEND (or COMMIT) was receipted is
//     settled exactly once: delivered to an auto-ack subscription, acked by
//     an ACK that took effect, or delivered in the final drain (dead letters
//     included); unless it may have expired. A COMMIT answered by ERROR
//     must have applied nothing;
//   - no duplicate: no queue message is settled twice;
//   - a queue message delivered again carries redelivered:true and its
//     delivery count; the first delivery does not; a topic message reaches a
//     subscription at most once; no expired message is delivered;
//   - afterwards the broker holds no queued bytes and no sessions.
//
// The model knows what it sent; garbage may carry frames it cannot see
// (an ACK, say), so a slot that was fed garbage makes every message it held
// "uncertain": settled at most once rather than exactly once.
func FuzzSession(f *testing.F) {
	for _, seed := range fuzzSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, program []byte) {
		r := newFuzzRun(t)
		r.run(program)
		r.finish()
	})
}

// The operations of a fuzz program: an op byte (mod opCount) and its
// argument bytes (0 past the end of the input).
const (
	opSend        = iota // slot, destination, flags (transaction, expires)
	opSubscribe          // slot, destination, ack mode, prefetch-count, id
	opAck                // slot, n-th outstanding delivery, transaction
	opNack               // slot, n-th outstanding delivery, transaction
	opBegin              // slot, transaction
	opCommit             // slot, transaction
	opAbort              // slot, transaction
	opDisconnect         // slot
	opGarbage            // slot, length, bytes
	opReconnect          // slot, version: Release, then CONNECT again
	opUnsubscribe        // slot, id
	opTick               // clock advance in 100 ms steps
	opCount
)

const (
	fuzzSlots    = 3
	fuzzMaxSteps = 300
)

var (
	fuzzSendDests = []string{"/queue/q0", "/queue/q1", "/queue/q2", "/topic/t.a", "/topic/t.b"}
	fuzzSubDests  = []string{"/queue/q0", "/queue/q1", "/queue/q2", "/topic/t.a", "/topic/t.b", "/topic/t.*", "/topic/#"}
	fuzzAckModes  = []string{"auto", "client", "client-individual"}
	fuzzVersions  = []string{"1.2", "1.1", "1.0"}
)

// fuzzRun is one program's world: the broker, its clock, the slots and what
// the model knows about every message body it sent.
type fuzzRun struct {
	t           *testing.T
	b           *Broker
	now         time.Time
	slots       [fuzzSlots]*fuzzSlot
	nextBody    int
	nextReceipt int
	bodies      map[string]*bodyState // queue messages sent, by body
	seenQueue   map[string]int        // deliveries seen per "destination message-id"
	seenTopic   map[string]bool       // "session subscription message-id"
}

// bodyState is the fate of one queue message, known by its unique body.
type bodyState struct {
	confirmed bool // its SEND (or COMMIT) was receipted
	mayExpire bool // sent with expires
	uncertain bool // held by a session the model cannot fully see
	settled   int  // auto-ack deliveries and ACKs that took effect
	drained   int  // deliveries to the final consumer
}

// fuzzSlot is one client connection slot and the model of its session.
type fuzzSlot struct {
	c           *client
	open        bool // connected and not yet ended
	ended       bool // ended (ERROR or DISCONNECT), not yet released
	errorSeen   bool
	tainted     bool
	subs        map[string]*fuzzSub
	outstanding []*fuzzDelivery         // unacked client/client-individual deliveries, in arrival order
	txs         map[string][]func()     // open transactions: effects to apply at COMMIT
	pending     map[string]func()       // by receipt id: what the frame did, applied on RECEIPT
	deliveredTo map[*bodyState]struct{} // queue messages this session received
	version     frames.Version          // negotiated
}

type fuzzSub struct {
	id    string
	mode  ackMode
	queue bool
}

type fuzzDelivery struct {
	sub   *fuzzSub
	ackID uint64
	ack   string // the MESSAGE's ack header
	msgID string
	body  *bodyState // nil if not a tracked queue message
}

func newFuzzRun(t *testing.T) *fuzzRun {
	r := &fuzzRun{t: t, now: time.UnixMilli(1_700_000_000_000),
		bodies: map[string]*bodyState{}, seenQueue: map[string]int{}, seenTopic: map[string]bool{}}
	r.b = New(Config{
		Now:                  func() time.Time { return r.now },
		MaxRedeliveries:      2,
		MaxQueueMessages:     24,
		MaxSubscriptions:     4,
		MaxTransactions:      2,
		MaxTransactionFrames: 4,
	})
	for i := range r.slots {
		r.slots[i] = &fuzzSlot{}
	}
	return r
}

// cursor reads a program; past its end every byte is 0.
type cursor struct {
	data []byte
	pos  int
}

func (c *cursor) next() int {
	if c.pos >= len(c.data) {
		c.pos++
		return 0
	}
	v := c.data[c.pos]
	c.pos++
	return int(v)
}

func (r *fuzzRun) run(program []byte) {
	cur := &cursor{data: program}
	for step := 0; cur.pos < len(program) && step < fuzzMaxSteps; step++ {
		op := cur.next() % opCount
		if op == opTick {
			r.now = r.now.Add(time.Duration(cur.next()%8) * 100 * time.Millisecond)
			continue
		}
		sl := r.slots[cur.next()%fuzzSlots]
		if op == opReconnect {
			r.release(sl)
			r.connect(sl, fuzzVersions[cur.next()%len(fuzzVersions)])
			r.pollAll()
			continue
		}
		if !sl.open {
			r.release(sl)
			r.connect(sl, "1.2")
		}
		switch op {
		case opSend:
			r.opSend(sl, cur.next(), cur.next())
		case opSubscribe:
			r.opSubscribe(sl, cur.next(), cur.next(), cur.next(), cur.next())
		case opAck, opNack:
			r.opAck(sl, op == opAck, cur.next(), cur.next())
		case opBegin:
			id := "x" + strconv.Itoa(cur.next()%2)
			r.feed(sl, frames.CmdBegin, "", func() { sl.txs[id] = nil }, "transaction:"+id)
		case opCommit:
			id := "x" + strconv.Itoa(cur.next()%2)
			r.feed(sl, frames.CmdCommit, "", func() {
				for _, apply := range sl.txs[id] {
					apply()
				}
				delete(sl.txs, id)
			}, "transaction:"+id)
		case opAbort:
			id := "x" + strconv.Itoa(cur.next()%2)
			r.feed(sl, frames.CmdAbort, "", func() { delete(sl.txs, id) }, "transaction:"+id)
		case opDisconnect:
			r.feed(sl, frames.CmdDisconnect, "", nil)
		case opGarbage:
			n := cur.next() % 48
			garbage := make([]byte, 0, n)
			for range n {
				b := byte(cur.next())
				if b == '~' { // keep the model's bodies and receipts unforgeable
					b = '_'
				}
				garbage = append(garbage, b)
			}
			r.taint(sl)
			r.feedRaw(sl, garbage)
		case opUnsubscribe:
			id := "s" + strconv.Itoa(cur.next()%5)
			r.feed(sl, frames.CmdUnsubscribe, "", func() {
				sub := sl.subs[id]
				delete(sl.subs, id)
				sl.outstanding = slices.DeleteFunc(sl.outstanding, func(d *fuzzDelivery) bool { return d.sub == sub })
			}, "id:"+id)
		}
	}
}

// inTx puts a SEND, ACK or NACK in transaction x0 or x1 when arg says so
// and the model has it open (so that most frames are valid), and returns
// what its RECEIPT means: apply now, or at COMMIT.
func inTx(sl *fuzzSlot, arg int, headers *[]string, apply func()) func() {
	id := "x" + strconv.Itoa(arg%4-2)
	if _, open := sl.txs[id]; arg%4 < 2 || !open {
		return apply
	}
	*headers = append(*headers, "transaction:"+id)
	return func() {
		if _, open := sl.txs[id]; open {
			sl.txs[id] = append(sl.txs[id], apply)
		}
	}
}

func (r *fuzzRun) opSend(sl *fuzzSlot, destArg, flags int) {
	dest := fuzzSendDests[destArg%len(fuzzSendDests)]
	r.nextBody++
	body := "~b" + strconv.Itoa(r.nextBody) + "~"
	headers := []string{"destination:" + dest}
	var st *bodyState
	if strings.HasPrefix(dest, "/queue/") {
		st = &bodyState{}
		r.bodies[body] = st
	}
	if flags&4 != 0 {
		expires := r.now.Add(time.Duration((flags>>3)%4) * 100 * time.Millisecond).UnixMilli()
		headers = append(headers, "expires:"+strconv.FormatInt(expires, 10))
		if st != nil {
			st.mayExpire = true
		}
	}
	confirm := func() {
		if st != nil {
			st.confirmed = true
		}
	}
	r.feed(sl, frames.CmdSend, body, inTx(sl, flags, &headers, confirm), headers...)
}

func (r *fuzzRun) opSubscribe(sl *fuzzSlot, destArg, modeArg, prefetchArg, idArg int) {
	dest := fuzzSubDests[destArg%len(fuzzSubDests)]
	sub := &fuzzSub{id: "s" + strconv.Itoa(idArg%5), mode: ackMode(modeArg % 3),
		queue: strings.HasPrefix(dest, "/queue/")}
	headers := []string{"destination:" + dest, "id:" + sub.id, "ack:" + fuzzAckModes[sub.mode]}
	// prefetch-count only on queues: on a topic, exceeding it closes the
	// subscriber as a slow consumer, which drops its whole outbox.
	if n := prefetchArg % 4; n > 0 && sub.queue {
		headers = append(headers, "prefetch-count:"+strconv.Itoa(n))
	}
	r.feed(sl, frames.CmdSubscribe, "", func() { sl.subs[sub.id] = sub }, headers...)
}

func (r *fuzzRun) opAck(sl *fuzzSlot, ack bool, nArg, txArg int) {
	cmd := frames.CmdNack
	if ack {
		cmd = frames.CmdAck
	}
	if len(sl.outstanding) == 0 {
		r.feed(sl, cmd, "", nil, "id:0.0", "message-id:none", "subscription:s0") // an ERROR
		return
	}
	d := sl.outstanding[nArg%len(sl.outstanding)]
	var headers []string
	if sl.version == frames.V12 {
		headers = []string{"id:" + d.ack}
	} else {
		headers = []string{"subscription:" + d.sub.id, "message-id:" + d.msgID}
	}
	apply := func() { r.settle(sl, d.sub, d.ackID, ack) }
	r.feed(sl, cmd, "", inTx(sl, txArg, &headers, apply), headers...)
}

// settle applies an ACK or NACK that took effect to the model: client mode
// covers every delivery of the subscription up to ackID, as the broker does.
func (r *fuzzRun) settle(sl *fuzzSlot, sub *fuzzSub, ackID uint64, ack bool) {
	sl.outstanding = slices.DeleteFunc(sl.outstanding, func(d *fuzzDelivery) bool {
		covered := d.sub == sub && (d.ackID == ackID || sub.mode == ackClient && d.ackID < ackID)
		if covered && ack && d.body != nil && !sl.tainted {
			d.body.settled++
		}
		return covered
	})
}

// taint marks everything the slot holds, and will receive until it is
// released, as uncertain, and stops counting its settlements: garbage can
// hide frames of its own, or swallow the start of the model's next frame so
// that a receipt the model asked for answers a different frame.
func (r *fuzzRun) taint(sl *fuzzSlot) {
	sl.tainted = true
	for st := range sl.deliveredTo {
		st.uncertain = true
	}
}

func (r *fuzzRun) connect(sl *fuzzSlot, version string) {
	c := newClient(r.t, r.b)
	*sl = fuzzSlot{c: c, open: true, subs: map[string]*fuzzSub{}, txs: map[string][]func(){},
		pending: map[string]func(){}, deliveredTo: map[*bodyState]struct{}{}}
	c.connect("accept-version:" + version)
	sl.version = c.version
}

// release ends the slot's session for the broker, as a driver does after
// the last Feed; a session that ended must refuse more input first.
func (r *fuzzRun) release(sl *fuzzSlot) {
	if sl.c == nil {
		return
	}
	if sl.ended {
		if err := sl.c.feed("\n"); !errors.Is(err, ErrSessionClosed) {
			r.t.Fatalf("Feed on an ended session = %v, want ErrSessionClosed", err)
		}
	}
	r.poll(sl)
	sl.c.s.Release()
	r.pollAll() // requeued messages reach the other sessions
	*sl = fuzzSlot{}
}

// feed sends one frame with a receipt; onReceipt (nil: nothing) is what the
// frame did, applied to the model when the RECEIPT arrives. A frame answered
// by ERROR did nothing, so the model is left as it was.
func (r *fuzzRun) feed(sl *fuzzSlot, cmd frames.Command, body string, onReceipt func(), headers ...string) {
	r.nextReceipt++
	id := "~r" + strconv.Itoa(r.nextReceipt)
	sl.pending[id] = onReceipt
	r.feedRaw(sl, wireFrame(sl.version, cmd, body, append(headers, "receipt:"+id)...))
}

// fuzzSeeds are hand-written programs covering each operation.
func fuzzSeeds() [][]byte {
	const (
		q0, q1, q2, ta, tb = 0, 1, 2, 3, 4 // send destinations
		star, hash         = 5, 6          // subscribe-only patterns
		auto, cli, ind     = 0, 1, 2       // ack modes
		noTx, x0, x1       = 0, 2, 3       // transaction args
		s0, s1, s2         = 0, 1, 2       // slots
		expires            = 4 | 1<<3      // expires in 100 ms
	)
	send := func(slot, dest, flags int) []byte { return []byte{opSend, byte(slot), byte(dest), byte(flags)} }
	sub := func(slot, dest, mode, prefetch, id int) []byte {
		return []byte{opSubscribe, byte(slot), byte(dest), byte(mode), byte(prefetch), byte(id)}
	}
	ack := func(slot, n, tx int) []byte { return []byte{opAck, byte(slot), byte(n), byte(tx)} }
	nack := func(slot, n, tx int) []byte { return []byte{opNack, byte(slot), byte(n), byte(tx)} }
	tx := func(op, slot, id int) []byte { return []byte{byte(op), byte(slot), byte(id)} }
	reconnect := func(slot, version int) []byte { return []byte{opReconnect, byte(slot), byte(version)} }
	unsub := func(slot, id int) []byte { return []byte{opUnsubscribe, byte(slot), byte(id)} }
	garbage := func(slot int, g string) []byte { return append([]byte{opGarbage, byte(slot), byte(len(g))}, g...) }
	prog := func(ops ...[]byte) []byte { return slices.Concat(ops...) }

	return [][]byte{
		// competing consumers, one acking individually, one auto
		prog(sub(s0, q0, ind, 0, 0), sub(s1, q0, auto, 0, 0), send(s2, q0, 0), send(s2, q0, 0),
			send(s2, q0, 0), ack(s0, 0, noTx), send(s2, q0, 0), ack(s0, 0, noTx)),
		// client acks, release with unacked, redelivery elsewhere
		prog(sub(s0, q1, cli, 0, 1), send(s2, q1, 0), send(s2, q1, 0), send(s2, q1, 0), ack(s0, 0, noTx),
			reconnect(s0, 0), sub(s1, q1, cli, 2, 0), ack(s1, 1, noTx)),
		// NACK until dead-lettered
		prog(sub(s0, q2, ind, 1, 0), send(s1, q2, 0), nack(s0, 0, noTx), nack(s0, 0, noTx), nack(s0, 0, noTx),
			send(s1, q2, 0), nack(s0, 0, noTx)),
		// transactions: commit, abort, ACK inside a transaction
		prog(sub(s0, q0, cli, 0, 0), tx(opBegin, s1, 0), send(s1, q0, x0), send(s1, ta, x0), tx(opCommit, s1, 0),
			tx(opBegin, s0, 1), ack(s0, 0, x1), tx(opAbort, s0, 1), tx(opBegin, s0, 0), ack(s0, 0, x0),
			tx(opCommit, s0, 0)),
		// a COMMIT whose ACK was settled outside it fails
		prog(sub(s0, q0, ind, 0, 0), send(s1, q0, 0), send(s1, q0, 0), tx(opBegin, s0, 0), ack(s0, 0, x0),
			ack(s0, 1, x0), ack(s0, 1, noTx), tx(opCommit, s0, 0), sub(s2, q0, auto, 0, 0)),
		// topics and wildcards, exact and pattern subscriptions
		prog(sub(s0, ta, auto, 0, 0), sub(s0, star, cli, 0, 1), sub(s1, hash, ind, 0, 0), sub(s2, tb, auto, 0, 0),
			send(s2, ta, 0), send(s2, tb, 0), ack(s0, 0, noTx), ack(s1, 1, noTx), unsub(s0, 1), send(s1, ta, 0)),
		// expiry while waiting in a queue
		prog(send(s0, q1, expires), send(s0, q1, 4), send(s0, q1, 0), []byte{opTick, 2}, sub(s1, q1, auto, 0, 0)),
		// STOMP 1.0 and 1.1 acknowledge by message-id
		prog(reconnect(s0, 1), reconnect(s1, 2), sub(s0, q2, ind, 0, 0), sub(s1, q2, cli, 0, 0),
			send(s2, q2, 0), send(s2, q2, 0), send(s2, q2, 0), ack(s0, 0, noTx), nack(s1, 0, noTx), ack(s1, 0, noTx)),
		// garbage, a duplicate subscription and DISCONNECT end sessions
		prog(sub(s0, q0, cli, 0, 0), send(s1, q0, 0), garbage(s0, "FROB\n\n\x00"), sub(s1, q0, auto, 0, 0),
			sub(s1, q1, auto, 0, 0), send(s2, q1, 0), []byte{opDisconnect, s2}, send(s2, q0, 0),
			garbage(s2, "\n\nSEND\ndestination:/queue/q0\n\nx\x00ACK\nid:1.1\n\n\x00")),
		// too many subscriptions and a full queue end sessions with limit-exceeded
		prog(sub(s0, q0, auto, 0, 0), sub(s0, q1, auto, 0, 1), sub(s0, q2, auto, 0, 2), sub(s0, ta, auto, 0, 3),
			sub(s0, tb, auto, 0, 4), bytes.Repeat(send(s1, q2, 0), 26)),
	}
}
