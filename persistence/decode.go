package persistence

import (
	"fmt"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/frames"
)

// view is one decoded record whose fields are views into the segment's
// bytes, valid while those are.
type view struct {
	op      broker.JournalOp
	seq     uint64
	size    int64  // bytes counted for it in its segment
	payload []byte // sequence number and payload, as written

	queue, id      []byte
	msgID, dest    []byte
	nhdr           int
	hdrs           []byte // nhdr encoded key/value pairs
	body           []byte
	persistent     bool
	expiresAt      int64
	clientID, name []byte
	topic          []byte
	user           []byte
	unowned        bool // a durable record of the version 1 form, without owner
	deliveries     int  // OpDeliveries
	epoch          []byte
	hseq           uint64 // OpHistoryAppend, OpHistoryTrim
	publishedAt    int64  // OpHistoryAppend

	// group is set for the enqueues of one multi-enqueue record: they
	// share its message (payload is nil; group.part has the message).
	group *multiGroup
}

// multiGroup is what the enqueues of one multi-enqueue record share.
type multiGroup struct {
	part []byte          // the message part, as written (message id to expiry)
	msg  *broker.Message // Replay: built by the first record() of the group, shared by the others
}

// views decodes a physical record into its records. It checks the whole
// record before returning any, so a malformed batch is rejected whole.
func views(typ byte, payload []byte) ([]view, error) {
	if typ == 0 || typ > maxRecordType {
		return nil, fmt.Errorf("%w: record type %d", errNewerRecord, typ)
	}
	if typ == typeMultiEnqueue {
		return multiViews(nil, payload, int64(frameHeader+1+len(payload)))
	}
	if typ != typeBatch {
		v, err := parseView(opOf(typ), payload)
		v.size = int64(frameHeader + 1 + len(payload))
		return []view{v}, err
	}
	r := reader{b: payload}
	count := int(r.u32())
	if r.err || count < 2 || count > len(payload)/(batchEntryHeader+8) {
		return nil, errMalformed
	}
	vs := make([]view, 0, count)
	for range count {
		typ := r.u8()
		p := r.bytes()
		if r.err {
			return nil, errMalformed
		}
		if typ == 0 || typ == typeBatch || typ > maxRecordType {
			return nil, fmt.Errorf("%w: record type %d in a batch", errNewerRecord, typ)
		}
		if typ == typeMultiEnqueue {
			var err error
			if vs, err = multiViews(vs, p, int64(batchEntryHeader+len(p))); err != nil {
				return nil, err
			}
			continue
		}
		v, err := parseView(opOf(typ), p)
		if err != nil {
			return nil, err
		}
		v.size = int64(batchEntryHeader + len(p))
		vs = append(vs, v)
	}
	if r.off != len(payload) {
		return nil, errMalformed
	}
	return vs, nil
}

// parseView decodes one record's sequence number and payload.
func parseView(op broker.JournalOp, payload []byte) (view, error) {
	v := view{op: op, payload: payload}
	r := reader{b: payload}
	v.seq = r.u64()
	switch op {
	case broker.OpEnqueue:
		v.queue = r.bytes()
		if err := parseMessage(&r, &v); err != nil {
			return v, err
		}
	case broker.OpRemove:
		v.queue, v.id = r.bytes(), r.bytes()
	case broker.OpDeliveries:
		v.queue, v.id = r.bytes(), r.bytes()
		v.deliveries = int(r.u32())
	case broker.OpHistoryAppend:
		v.queue, v.epoch = r.bytes(), r.bytes()
		v.hseq, v.publishedAt = r.u64(), int64(r.u64())
		if err := parseMessage(&r, &v); err != nil {
			return v, err
		}
	case broker.OpHistoryTrim, broker.OpHistorySeal:
		v.queue, v.epoch = r.bytes(), r.bytes()
		v.hseq = r.u64()
	case broker.OpHistoryDrop:
		v.queue, v.epoch = r.bytes(), r.bytes()
	case broker.OpDurableCreate, broker.OpDurableDelete:
		v.queue, v.clientID, v.name, v.topic = r.bytes(), r.bytes(), r.bytes(), r.bytes()
		// Version 1 wrote these four fields; version 2 adds the owner.
		// Compaction copies records unchanged, so either form can be in a
		// segment of either version.
		if v.unowned = r.off == len(payload); !v.unowned {
			v.user = r.bytes()
		}
	default:
		return v, errMalformed
	}
	if r.err || r.off != len(payload) {
		return v, errMalformed
	}
	return v, nil
}

// parseMessage decodes an enqueue's message part (message id to expiry)
// from r into v.
func parseMessage(r *reader, v *view) error {
	v.id, v.msgID, v.dest = r.bytes(), r.bytes(), r.bytes()
	v.nhdr = int(r.u32())
	start := r.off
	for i := 0; i < v.nhdr && !r.err; i++ {
		r.bytes()
		r.bytes()
	}
	v.hdrs = r.b[start:min(r.off, len(r.b))]
	v.body = r.bytes()
	flags := r.u8()
	v.persistent = flags&flagPersistent != 0
	v.expiresAt = int64(r.u64())
	if flags&^flagPersistent != 0 {
		return errMalformed
	}
	return nil
}

// multiViews decodes a multi-enqueue payload into one enqueue view per
// queue, appended to vs. The record takes unitBytes in its segment, split
// between its views (share), so that their sizes add up to it.
func multiViews(vs []view, payload []byte, unitBytes int64) ([]view, error) {
	r := reader{b: payload}
	k := int(r.u32())
	if r.err || k < 2 || k > len(payload)/multiPairHeader {
		return nil, errMalformed
	}
	first := len(vs)
	for range k {
		seq, queue := r.u64(), r.bytes()
		if r.err {
			return nil, errMalformed
		}
		vs = append(vs, view{op: broker.OpEnqueue, seq: seq, queue: queue})
	}
	var m view
	g := &multiGroup{part: payload[r.off:]}
	if err := parseMessage(&r, &m); err != nil || r.err || r.off != len(payload) {
		return nil, errMalformed
	}
	for n := range k {
		v := &vs[first+n]
		seq, queue := v.seq, v.queue
		*v = m
		v.op, v.seq, v.queue, v.group = broker.OpEnqueue, seq, queue, g
		v.size = share(unitBytes, k, n)
	}
	return vs, nil
}

// record builds the broker.JournalRecord of v with its own copies of
// everything: the message's header keys, values and body share one
// backing array, as a freshly published message's do. The enqueues of one
// multi-enqueue record share one Message, as they did when it was sent.
func (v *view) record() broker.JournalRecord {
	rec := broker.JournalRecord{Op: v.op, Queue: string(v.queue)}
	switch v.op {
	case broker.OpRemove:
		rec.MessageID = string(v.id)
	case broker.OpDeliveries:
		rec.MessageID, rec.Deliveries = string(v.id), v.deliveries
	case broker.OpDurableCreate, broker.OpDurableDelete:
		rec.Durable = broker.DurableSpec{User: string(v.user), ClientID: string(v.clientID), Name: string(v.name),
			Topic: string(v.topic), Unowned: v.unowned}
	case broker.OpHistoryTrim, broker.OpHistorySeal, broker.OpHistoryDrop:
		rec.Epoch, rec.HistorySeq = string(v.epoch), v.hseq
	case broker.OpEnqueue, broker.OpHistoryAppend:
		rec.MessageID = string(v.id)
		if v.op == broker.OpHistoryAppend {
			rec.Epoch, rec.HistorySeq, rec.PublishedAt = string(v.epoch), v.hseq, v.publishedAt
		}
		if v.group != nil && v.group.msg != nil {
			rec.Message = v.group.msg
			break
		}
		backing := make([]byte, 0, len(v.hdrs)+len(v.body))
		own := func(b []byte) []byte {
			start := len(backing)
			backing = append(backing, b...)
			return backing[start:len(backing):len(backing)]
		}
		headers := make([]frames.Header, 0, v.nhdr)
		r := reader{b: v.hdrs}
		for range v.nhdr {
			k, val := r.bytes(), r.bytes()
			headers = append(headers, frames.Header{Key: own(k), Value: own(val)})
		}
		rec.Message = broker.RecoveredMessage(string(v.msgID), string(v.dest), headers, own(v.body), v.persistent, v.expiresAt)
		if v.group != nil {
			v.group.msg = rec.Message
		}
	}
	return rec
}

// reader decodes little-endian fields; past the end it sets err and
// returns zeros.
type reader struct {
	b   []byte
	off int
	err bool
}

func (r *reader) take(n int) []byte {
	if r.err || n < 0 || n > len(r.b)-r.off {
		r.err = true
		return nil
	}
	b := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return b
}

func (r *reader) u8() byte {
	if b := r.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *reader) u32() uint32 {
	if b := r.take(4); b != nil {
		return le.Uint32(b)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if b := r.take(8); b != nil {
		return le.Uint64(b)
	}
	return 0
}

func (r *reader) bytes() []byte { return r.take(int(r.u32())) }
