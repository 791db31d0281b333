package persistence

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"

	"github.com/stompbox/stompbox/broker"
)

// The on-disk format, version 3 (docs/persistence.md has it byte by byte).
// Version 3 put the record length under a checksum; version 2 added the
// owner to durable-subscription records. This build reads segments of
// every version, and records of any form in any segment (compaction copies
// a record's payload unchanged, re-framed for the segment it goes to).
// All integers are little-endian.
//
// A segment starts with a 24-byte file header:
//
//	magic "STOMPJNL" | version uint16 | flags uint16 (0) | segment number uint64 | CRC32C of the 20 bytes before
//
// then records, each (version 3)
//
//	length uint32 | CRC32C(type+payload) uint32 | CRC32C(the 8 bytes before) uint32 | type uint8 | payload
//
// where length counts type and payload. The header checksum makes a
// damaged length detectable, and lets recovery find the next record after
// damage by trying each offset cheaply. Versions 1 and 2 framed records as
//
//	length uint32 | CRC32C(type+payload) uint32 | type uint8 | payload
//
// The pre-allocated tail of a segment is zeros, which no record header
// matches. Type is a broker.JournalOp (1-4) for one record, or typeBatch
// for the records of one Append; typeDeliveries and typeMultiEnqueue came
// later (recordType, opOf).
const (
	magic         = "STOMPJNL"
	formatVersion = 3
	headerSize    = 24
	frameHeader   = 12 // length, data CRC, header CRC
	// legacyFrameHeader is the frame header of versions 1 and 2: length
	// and data CRC.
	legacyFrameHeader = 8
	// firstFramedVersion is the first version with frameHeader frames.
	firstFramedVersion = 3
	typeBatch          = 5
	// minFrameBody is the smallest length a record can have: a type byte
	// and a sequence number.
	minFrameBody = 1 + 8
	// batchEntryHeader is what a record inside a batch costs before its
	// payload: op uint8, payload length uint32.
	batchEntryHeader = 1 + 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func checksum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

var le = binary.LittleEndian

// segmentName is the file name of segment n: 20 decimal digits, so that
// names sort like numbers.
func segmentName(n uint64) string { return fmt.Sprintf("%020d.seg", n) }

// appendHeader appends the file header of segment n.
func appendHeader(dst []byte, n uint64) []byte {
	start := len(dst)
	dst = append(dst, magic...)
	dst = le.AppendUint16(dst, formatVersion)
	dst = le.AppendUint16(dst, 0)
	dst = le.AppendUint64(dst, n)
	return le.AppendUint32(dst, checksum(dst[start:]))
}

// logical is one broker.JournalRecord inside a physical record, as the
// flusher needs it to place the record and update the live set.
type logical struct {
	op         broker.JournalOp
	queue      string
	id         string // OpEnqueue, OpRemove, OpDeliveries (a durable is known by its queue: vhost, owner, client id, name)
	seqOff     int    // offset of the sequence number in the request's bytes
	size       int64  // bytes counted for this record in its segment's live total
	seq        uint64 // assigned by the flusher, or kept by a compaction copy
	deliveries int    // OpDeliveries: the count
	epoch      string // OpHistoryAppend, OpHistoryTrim, OpHistorySeal, OpHistoryDrop
	hseq       uint64 // OpHistoryAppend, OpHistoryTrim, OpHistorySeal: the offset's seq (a seal's: the next one)

	// For compaction copies, each record is its own frame.
	src                uint64 // segment copied from
	frameOff, frameLen int
}

// encode frames recs as one physical record (a batch when there are
// several, so that one Append is atomic on disk) with zero sequence
// numbers and CRC: the flusher assigns them in write order. Consecutive
// enqueues of one message (a topic message to its durable subscriptions)
// become one multi-enqueue, which holds the message once. It returns the
// bytes and one logical per record.
func encode(recs []broker.JournalRecord) ([]byte, []logical, error) {
	body, units := 0, 0
	for i := 0; i < len(recs); units++ {
		u, err := unitAt(recs, i)
		if err != nil {
			return nil, nil, err
		}
		body += u.size
		i = u.j
	}
	if units > 1 {
		body += 4 + batchEntryHeader*units
	}
	body++ // type
	if body > MaxRecordSize {
		return nil, nil, fmt.Errorf("%w: %d bytes in one Append (limit %d)", ErrInvalidRecord, body, MaxRecordSize)
	}
	buf := make([]byte, 0, frameHeader+body)
	buf = le.AppendUint32(buf, uint32(body))
	buf = le.AppendUint32(buf, 0) // CRCs, set by the flusher
	buf = le.AppendUint32(buf, 0)
	logs := make([]logical, len(recs))
	if units == 1 {
		u, _ := unitAt(recs, 0)
		buf = append(buf, u.typ(recs))
		buf = appendUnit(buf, recs, u, int64(frameHeader+body), logs)
		return buf, logs, nil
	}
	buf = append(buf, typeBatch)
	buf = le.AppendUint32(buf, uint32(units))
	for i := 0; i < len(recs); {
		u, _ := unitAt(recs, i)
		buf = append(buf, u.typ(recs))
		buf = le.AppendUint32(buf, uint32(u.size))
		buf = appendUnit(buf, recs, u, int64(batchEntryHeader+u.size), logs)
		i = u.j
	}
	return buf, logs, nil
}

// unit is one entry of a physical record: the record recs[i], or (j > i+1)
// the multi-enqueue of the one message of recs[i:j].
type unit struct {
	i, j int
	size int // payload bytes, sequence numbers included
}

func (u unit) typ(recs []broker.JournalRecord) byte {
	if u.j > u.i+1 {
		return typeMultiEnqueue
	}
	return recordType(recs[u.i].Op)
}

// unitAt is the unit that starts at recs[i]: a run of enqueues of the same
// message (the same *Message and message id) to different queues is one.
func unitAt(recs []broker.JournalRecord, i int) (unit, error) {
	n, err := payloadSize(&recs[i])
	if err != nil {
		return unit{}, err
	}
	r := &recs[i]
	j := i + 1
	for r.Op == broker.OpEnqueue && j < len(recs) && recs[j].Op == broker.OpEnqueue &&
		recs[j].Message == r.Message && recs[j].MessageID == r.MessageID {
		j++
	}
	if j == i+1 {
		return unit{i: i, j: j, size: 8 + n}, nil
	}
	size := 4 + n - 4 - len(r.Queue) // count, and the message part once
	for k := i; k < j; k++ {
		size += multiPairHeader + len(recs[k].Queue)
	}
	return unit{i: i, j: j, size: size}, nil
}

// appendUnit appends u's payload with zero sequence numbers and fills in
// the logicals of its records; u takes unitBytes in its segment, split
// between its records.
func appendUnit(buf []byte, recs []broker.JournalRecord, u unit, unitBytes int64, logs []logical) []byte {
	if u.j == u.i+1 {
		logs[u.i] = describe(&recs[u.i], len(buf), unitBytes)
		return appendPayload(buf, &recs[u.i])
	}
	k := u.j - u.i
	buf = le.AppendUint32(buf, uint32(k))
	for n := range k {
		r := &recs[u.i+n]
		logs[u.i+n] = describe(r, len(buf), share(unitBytes, k, n))
		buf = le.AppendUint64(buf, 0)
		buf = appendString(buf, r.Queue)
	}
	return appendMessage(buf, &recs[u.i])
}

// share is the part of total bytes counted for record n of k that share
// them: the whole split evenly, so their sum is total.
func share(total int64, k, n int) int64 {
	s := total / int64(k)
	if int64(n) < total%int64(k) {
		s++
	}
	return s
}

// describe is the logical of r, whose sequence number sits at seqOff.
func describe(r *broker.JournalRecord, seqOff int, size int64) logical {
	l := logical{op: r.Op, queue: r.Queue, seqOff: seqOff, size: size}
	switch r.Op {
	case broker.OpEnqueue, broker.OpRemove:
		l.id = r.MessageID
	case broker.OpDeliveries:
		l.id, l.deliveries = r.MessageID, clampCount(r.Deliveries)
	case broker.OpHistoryAppend, broker.OpHistoryTrim, broker.OpHistorySeal, broker.OpHistoryDrop:
		l.epoch, l.hseq = r.Epoch, r.HistorySeq
	}
	return l
}

// clampCount is a delivery count as the format stores it (uint32).
func clampCount(n int) int { return int(min(max(int64(n), 0), math.MaxUint32)) }

// The record types after the broker's ops (1-4) and typeBatch.
const (
	// typeDeliveries is an OpDeliveries record (its op number is the
	// batch's type).
	typeDeliveries = 6
	// typeMultiEnqueue is the enqueues of one message to several queues:
	// the queues with their sequence numbers, then the message once.
	typeMultiEnqueue = 7
	// multiPairHeader is what each queue of a multi-enqueue costs before
	// its name: sequence number uint64, name length uint32.
	multiPairHeader = 8 + 4
	// typeHistoryAppend and typeHistoryTrim are the topic history's
	// records (broker.OpHistoryAppend, broker.OpHistoryTrim).
	typeHistoryAppend = 8
	typeHistoryTrim   = 9
	// typeHistorySeal and typeHistoryDrop (broker.OpHistorySeal,
	// broker.OpHistoryDrop): a history complete at a clean shutdown, and
	// a history dropped.
	typeHistorySeal = 10
	typeHistoryDrop = 11
)

// recordType is the type byte of a single record of op.
func recordType(op broker.JournalOp) byte {
	switch op {
	case broker.OpDeliveries:
		return typeDeliveries
	case broker.OpHistoryAppend:
		return typeHistoryAppend
	case broker.OpHistoryTrim:
		return typeHistoryTrim
	case broker.OpHistorySeal:
		return typeHistorySeal
	case broker.OpHistoryDrop:
		return typeHistoryDrop
	}
	return byte(op)
}

// opOf is the op of a single record of type typ, or 0 if typ is not one.
func opOf(typ byte) broker.JournalOp {
	switch op := broker.JournalOp(typ); op {
	case broker.OpEnqueue, broker.OpRemove, broker.OpDurableCreate, broker.OpDurableDelete:
		return op
	}
	switch typ {
	case typeDeliveries:
		return broker.OpDeliveries
	case typeHistoryAppend:
		return broker.OpHistoryAppend
	case typeHistoryTrim:
		return broker.OpHistoryTrim
	case typeHistorySeal:
		return broker.OpHistorySeal
	case typeHistoryDrop:
		return broker.OpHistoryDrop
	}
	return 0
}

// payloadSize is the size of r's payload after the sequence number.
func payloadSize(r *broker.JournalRecord) (int, error) {
	switch r.Op {
	case broker.OpEnqueue, broker.OpHistoryAppend:
		m := r.Message
		if m == nil {
			return 0, fmt.Errorf("%w: %v of %q to %q without a message", ErrInvalidRecord, r.Op, r.MessageID, r.Queue)
		}
		n := 4*4 + len(r.Queue) + len(r.MessageID) + len(m.ID) + len(m.Destination)
		n += 4 // header count
		for _, h := range m.Headers {
			n += 8 + len(h.Key) + len(h.Value)
		}
		if r.Op == broker.OpHistoryAppend {
			n += 4 + len(r.Epoch) + 8 + 8 // epoch, history seq, published at
		}
		return n + 4 + len(m.Body) + 1 + 8, nil
	case broker.OpHistoryTrim, broker.OpHistorySeal:
		return 2*4 + len(r.Queue) + len(r.Epoch) + 8, nil
	case broker.OpHistoryDrop:
		return 2*4 + len(r.Queue) + len(r.Epoch), nil
	case broker.OpRemove:
		return 2*4 + len(r.Queue) + len(r.MessageID), nil
	case broker.OpDeliveries:
		return 2*4 + len(r.Queue) + len(r.MessageID) + 4, nil
	case broker.OpDurableCreate, broker.OpDurableDelete:
		d := r.Durable
		n := 4*4 + len(r.Queue) + len(d.ClientID) + len(d.Name) + len(d.Topic)
		if !d.Unowned {
			n += 4 + len(d.User) // the owner, since version 2
		}
		return n, nil
	}
	return 0, fmt.Errorf("%w: unknown op %d", ErrInvalidRecord, r.Op)
}

// appendPayload appends a zero sequence number and r's payload.
func appendPayload(dst []byte, r *broker.JournalRecord) []byte {
	dst = le.AppendUint64(dst, 0)
	switch r.Op {
	case broker.OpEnqueue:
		dst = appendString(dst, r.Queue)
		return appendMessage(dst, r)
	case broker.OpRemove:
		dst = appendString(dst, r.Queue)
		return appendString(dst, r.MessageID)
	case broker.OpDeliveries:
		dst = appendString(dst, r.Queue)
		dst = appendString(dst, r.MessageID)
		return le.AppendUint32(dst, uint32(clampCount(r.Deliveries)))
	case broker.OpHistoryAppend:
		dst = appendString(dst, r.Queue)
		dst = appendString(dst, r.Epoch)
		dst = le.AppendUint64(dst, r.HistorySeq)
		dst = le.AppendUint64(dst, uint64(r.PublishedAt))
		return appendMessage(dst, r)
	case broker.OpHistoryTrim, broker.OpHistorySeal:
		dst = appendString(dst, r.Queue)
		dst = appendString(dst, r.Epoch)
		return le.AppendUint64(dst, r.HistorySeq)
	case broker.OpHistoryDrop:
		dst = appendString(dst, r.Queue)
		return appendString(dst, r.Epoch)
	default:
		d := r.Durable
		dst = appendString(dst, r.Queue)
		dst = appendString(dst, d.ClientID)
		dst = appendString(dst, d.Name)
		dst = appendString(dst, d.Topic)
		if d.Unowned {
			return dst // the version 1 form: no owner field
		}
		return appendString(dst, d.User)
	}
}

// appendMessage appends the message part of enqueue r: everything after
// the queue, the same in an enqueue and in a multi-enqueue.
func appendMessage(dst []byte, r *broker.JournalRecord) []byte {
	m := r.Message
	dst = appendString(dst, r.MessageID)
	dst = appendString(dst, m.ID)
	dst = appendString(dst, m.Destination)
	dst = le.AppendUint32(dst, uint32(len(m.Headers)))
	for _, h := range m.Headers {
		dst = appendBytes(dst, h.Key)
		dst = appendBytes(dst, h.Value)
	}
	dst = appendBytes(dst, m.Body)
	var flags byte
	if m.Persistent {
		flags |= flagPersistent
	}
	dst = append(dst, flags)
	return le.AppendUint64(dst, uint64(m.ExpiresAt))
}

// flagPersistent is bit 0 of an enqueued message's flags byte.
const flagPersistent = 1

func appendString(dst []byte, s string) []byte {
	dst = le.AppendUint32(dst, uint32(len(s)))
	return append(dst, s...)
}

func appendBytes(dst, b []byte) []byte {
	dst = le.AppendUint32(dst, uint32(len(b)))
	return append(dst, b...)
}

// seal sets the sequence numbers of the logicals of one request, whose
// frame starts at frame[0], and then its checksums.
func seal(frame []byte, logs []logical) {
	for i := range logs {
		le.PutUint64(frame[logs[i].seqOff:], logs[i].seq)
	}
	sealFrame(frame)
}

// sealFrame sets the checksums of the frame at frame[0], whose length and
// body are in place.
func sealFrame(frame []byte) {
	n := le.Uint32(frame)
	le.PutUint32(frame[4:], checksum(frame[frameHeader:frameHeader+int(n)]))
	le.PutUint32(frame[8:], checksum(frame[:8]))
}
