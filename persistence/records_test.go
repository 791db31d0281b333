package persistence

import (
	"bytes"
	"testing"

	"github.com/stompbox/stompbox/broker"
	jt "github.com/stompbox/stompbox/persistence/journaltest"
)

// fanOut is the records of one persistent topic message to n durable
// subscriptions' queues: the same *Message in each.
func fanOut(m *broker.Message, n int) []broker.JournalRecord {
	recs := make([]broker.JournalRecord, n)
	for i := range recs {
		recs[i] = jt.Enqueue("/durable/u/c/s"+string(rune('a'+i)), m)
	}
	return recs
}

// bigMessage is message i with a body of n bytes.
func bigMessage(i, n int) *broker.Message {
	m := jt.Message(i)
	return broker.RecoveredMessage(m.ID, m.Destination, m.Headers, bytes.Repeat([]byte{byte(i)}, n), true, 0)
}

// A topic message to 20 durable subscriptions is stored once, not 20
// times, and replays as one Message shared by the 20 enqueues.
func TestFanOutStoredOnce(t *testing.T) {
	const n, body = 20, 64 << 10
	dir := t.TempDir()
	f := open(t, dir, Config{})
	before := f.Stats().Bytes
	recs := fanOut(bigMessage(1, body), n)
	mustAppend(t, f, recs...)
	if grew := f.Stats().Bytes - before; grew > body+4<<10 {
		t.Fatalf("the journal grew by %d bytes for one %d-byte body to %d queues, want it stored once", grew, body, n)
	}
	check := func(f *File) {
		t.Helper()
		got := replay(t, f)
		jt.Expect(t, got, recs)
		for _, r := range got[1:] {
			if r.Message != got[0].Message {
				t.Fatal("replayed enqueues of one fan-out carry different Messages, want one shared")
			}
		}
	}
	check(f)
	mustClose(t, f)
	check(open(t, dir, Config{}))
}

// The live bytes of a segment count a multi-enqueue once, split between
// its queues: each removal takes its share, and the last one leaves the
// segment with no live bytes, so compaction deletes it.
func TestFanOutAccounting(t *testing.T) {
	dir := t.TempDir()
	f := open(t, dir, Config{CompactBelow: -1})
	recs := fanOut(bigMessage(1, 1000), 3)
	mustAppend(t, f, recs...)
	sealNow(t, f)
	live := func() (int64, int, int64) {
		f.smu.Lock()
		defer f.smu.Unlock()
		s := f.segs[1]
		return s.live, s.liveRecs, s.size
	}
	l, n, size := live()
	if n != 3 || l != size-headerSize {
		t.Fatalf("segment 1: %d live records, %d live bytes of %d; want 3, %d (the whole record)", n, l, size, size-headerSize)
	}
	for i, r := range recs {
		mustAppend(t, f, jt.Remove(r))
		l2, n2, _ := live()
		if n2 != 2-i || l2 >= l || l-l2 < (size-headerSize)/3-1 {
			t.Fatalf("after removing %d of 3: %d live records, %d live bytes (was %d)", i+1, n2, l2, l)
		}
		l = l2
	}
	if l != 0 {
		t.Fatalf("%d live bytes left after every queue's removal", l)
	}
	f.compactSync()
	if exists(t, dir, 1) {
		t.Fatal("segment 1 is dead but was not deleted")
	}
}

// Compaction copies the still-live queues of a multi-enqueue as one
// record, the message once, keeping their sequence numbers (replay order).
func TestFanOutRewrite(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{CompactBelow: 0.5}
	f := open(t, dir, cfg)
	recs := fanOut(bigMessage(1, 4000), 5)
	mustAppend(t, f, recs...)
	for i := 2; i <= 10; i++ {
		mustAppend(t, f, q(i))
	}
	sealNow(t, f) // segment 1
	later := q(11)
	mustAppend(t, f, later)
	for i := 2; i <= 10; i++ {
		mustAppend(t, f, jt.Remove(q(i)))
	}
	for _, r := range recs[1:4] {
		mustAppend(t, f, jt.Remove(r))
	}
	before := f.Stats().Bytes
	f.compactSync()
	if exists(t, dir, 1) || f.Stats().SegmentsRewritten != 1 {
		t.Fatalf("segment 1 not rewritten (exists %v, %d rewritten)", exists(t, dir, 1), f.Stats().SegmentsRewritten)
	}
	if copied := f.Stats().Bytes - before; copied > 4000+1000 && copied > 0 { // the old segment is gone: bytes may even drop
		t.Fatalf("the copy took %d bytes: the body was copied more than once", copied)
	}
	want := []broker.JournalRecord{recs[0], recs[4], later}
	got := replay(t, f)
	jt.Expect(t, got, want)
	if got[0].Message != got[1].Message {
		t.Fatal("the copied queues replay with different Messages, want one shared")
	}
	mustClose(t, f)
	jt.Expect(t, replay(t, open(t, dir, cfg)), want)
}

// A compaction copy of a multi-enqueue, one of whose queues removes the
// message between the compactor's read and the write, is framed again
// with the others only; with one left, as a plain enqueue.
func TestFanOutCopyReframed(t *testing.T) {
	recs := fanOut(bigMessage(1, 100), 3)
	buf, logs, err := encode(recs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range logs {
		logs[i].seq = uint64(10 + i)
	}
	seal(buf, logs)
	set := newLiveSet(map[uint64]*segment{1: {id: 1, sealed: true}, 2: {id: 2}})
	for i := range logs {
		set.apply(&logs[i], 1)
	}
	vs, err := views(buf[frameHeader], buf[frameHeader+1:])
	if err != nil {
		t.Fatal(err)
	}
	cbuf, clogs := set.appendCopies(nil, nil, vs, 1)
	if len(clogs) != 3 || cbuf[frameHeader] != typeMultiEnqueue {
		t.Fatalf("copy: %d records, type %d; want 3 in one multi-enqueue", len(clogs), cbuf[frameHeader])
	}
	decode := func(out []byte) (byte, []view) {
		t.Helper()
		var typ byte
		var got []view
		res := scan(append(appendHeader(nil, 3), out...), func(_ int, ty byte, payload []byte) error {
			typ = ty
			vs, err := views(ty, payload)
			got = append(got, vs...)
			return err
		})
		if res.end != headerSize+len(out) || len(res.damaged) != 0 || res.tail.len() != 0 || res.newer != nil {
			t.Fatalf("the copy does not decode: %+v", res)
		}
		return typ, got
	}
	for _, tt := range []struct {
		remove  int
		typ     byte
		wantSeq []uint64
	}{
		{1, typeMultiEnqueue, []uint64{10, 12}},
		{0, byte(broker.OpEnqueue), []uint64{12}},
	} {
		rm := logical{op: broker.OpRemove, queue: recs[tt.remove].Queue, id: recs[tt.remove].MessageID, seq: 20}
		set.apply(&rm, 2)
		out, keep := set.keepLive(cbuf, clogs)
		typ, got := decode(out)
		if typ != tt.typ || len(got) != len(tt.wantSeq) || len(keep) != len(tt.wantSeq) {
			t.Fatalf("after removing queue %d: type %d with %d records (%d kept), want type %d with %d",
				tt.remove, typ, len(got), len(keep), tt.typ, len(tt.wantSeq))
		}
		var size int64
		for i, v := range got {
			if v.seq != tt.wantSeq[i] || keep[i].seq != tt.wantSeq[i] || !bytes.Equal(v.body, recs[0].Message.Body) {
				t.Fatalf("record %d: seq %d (kept %d), want %d", i, v.seq, keep[i].seq, tt.wantSeq[i])
			}
			size += keep[i].size
		}
		if size != int64(len(out)) {
			t.Fatalf("kept records count %d bytes, the copy has %d", size, len(out))
		}
	}
}

// A message's delivery count survives a compaction that moves its enqueue
// to the newest segment, after the segment holding its count: the count
// is copied after it.
func TestDeliveriesFollowCompactedEnqueue(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{CompactBelow: 0.5}
	f := open(t, dir, cfg)
	a := q(1)
	mustAppend(t, f, a)
	for i := 2; i <= 10; i++ {
		mustAppend(t, f, q(i))
	}
	sealNow(t, f) // segment 1: a and what will be removed
	mustAppend(t, f, jt.Deliveries(a, 3))
	sealNow(t, f) // segment 2: a's count
	for i := 2; i <= 10; i++ {
		mustAppend(t, f, jt.Remove(q(i)))
	}
	f.compactSync()
	if exists(t, dir, 1) {
		t.Fatal("segment 1 not rewritten")
	}
	a.Deliveries = 3
	jt.Expect(t, replay(t, f), []broker.JournalRecord{a})
	mustClose(t, f)
	f = open(t, dir, cfg)
	jt.Expect(t, replay(t, f), []broker.JournalRecord{a})
	// The count moved with it: a new one replaces it, a remove ends both.
	mustAppend(t, f, jt.Deliveries(a, 4))
	a.Deliveries = 4
	jt.Expect(t, replay(t, f), []broker.JournalRecord{a})
	mustAppend(t, f, jt.Remove(a))
	f.compactSync()
	mustClose(t, f)
	jt.Expect(t, replay(t, open(t, dir, cfg)), nil)
}

// A delivery count is stored as a uint32: larger counts are kept at its
// maximum, negative ones at 0, never wrapped.
func TestDeliveriesCountBounds(t *testing.T) {
	a := q(1)
	for _, tt := range []struct{ in, want int }{{3, 3}, {-1, 0}, {1 << 40, 1<<32 - 1}} {
		buf, _, err := encode([]broker.JournalRecord{jt.Deliveries(a, tt.in)})
		if err != nil {
			t.Fatal(err)
		}
		vs, err := views(buf[frameHeader], buf[frameHeader+1:])
		if err != nil || len(vs) != 1 || vs[0].op != broker.OpDeliveries {
			t.Fatalf("count %d: %d views, err %v", tt.in, len(vs), err)
		}
		if got := vs[0].record(); got.Deliveries != tt.want || got.MessageID != a.MessageID || got.Queue != a.Queue {
			t.Fatalf("count %d decodes as %+v, want %d", tt.in, got, tt.want)
		}
	}
}
