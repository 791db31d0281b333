package persistence

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

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
// for the records of one Append.
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
	op     broker.JournalOp
	queue  string
	id     string // OpEnqueue, OpRemove (a durable is known by its queue: vhost, owner, client id, name)
	seqOff int    // offset of the sequence number in the request's bytes
	size   int64  // bytes counted for this record in its segment's live total
	seq    uint64 // assigned by the flusher, or kept by a compaction copy

	// For compaction copies, each record is its own frame.
	src                uint64 // segment copied from
	frameOff, frameLen int
}

// encode frames recs as one physical record (a batch when there are
// several, so that one Append is atomic on disk) with zero sequence
// numbers and CRC: the flusher assigns them in write order. It returns the
// bytes and one logical per record.
func encode(recs []broker.JournalRecord) ([]byte, []logical, error) {
	body := 0
	for i := range recs {
		n, err := payloadSize(&recs[i])
		if err != nil {
			return nil, nil, err
		}
		body += 8 + n
	}
	if len(recs) > 1 {
		body += 4 + batchEntryHeader*len(recs)
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
	if len(recs) == 1 {
		buf = append(buf, byte(recs[0].Op))
		logs[0] = describe(&recs[0], len(buf), int64(frameHeader+body))
		buf = appendPayload(buf, &recs[0])
		return buf, logs, nil
	}
	buf = append(buf, typeBatch)
	buf = le.AppendUint32(buf, uint32(len(recs)))
	for i := range recs {
		n, _ := payloadSize(&recs[i])
		buf = append(buf, byte(recs[i].Op))
		buf = le.AppendUint32(buf, uint32(8+n))
		logs[i] = describe(&recs[i], len(buf), int64(batchEntryHeader+8+n))
		buf = appendPayload(buf, &recs[i])
	}
	return buf, logs, nil
}

// describe is the logical of r, whose sequence number sits at seqOff.
func describe(r *broker.JournalRecord, seqOff int, size int64) logical {
	l := logical{op: r.Op, queue: r.Queue, seqOff: seqOff, size: size}
	if r.Op == broker.OpEnqueue || r.Op == broker.OpRemove {
		l.id = r.MessageID
	}
	return l
}

// payloadSize is the size of r's payload after the sequence number.
func payloadSize(r *broker.JournalRecord) (int, error) {
	switch r.Op {
	case broker.OpEnqueue:
		m := r.Message
		if m == nil {
			return 0, fmt.Errorf("%w: enqueue of %q to %q without a message", ErrInvalidRecord, r.MessageID, r.Queue)
		}
		n := 4*4 + len(r.Queue) + len(r.MessageID) + len(m.ID) + len(m.Destination)
		n += 4 // header count
		for _, h := range m.Headers {
			n += 8 + len(h.Key) + len(h.Value)
		}
		return n + 4 + len(m.Body) + 1 + 8, nil
	case broker.OpRemove:
		return 2*4 + len(r.Queue) + len(r.MessageID), nil
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
		m := r.Message
		dst = appendString(dst, r.Queue)
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
	case broker.OpRemove:
		dst = appendString(dst, r.Queue)
		return appendString(dst, r.MessageID)
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
