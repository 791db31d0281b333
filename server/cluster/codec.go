package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/frames"
)

// The payload of one message on NATS, encoded once per message and node:
//
//	version   1 byte (codecVersion)
//	flags     1 byte (bit 0: persistent)
//	expiresAt signed varint, ms since the epoch, 0 = never
//	id        uvarint length + bytes
//	dest      uvarint length + bytes
//	headers   uvarint count, then per header: uvarint key length + key,
//	          uvarint value length + value
//	body      the rest
//
// Decoding slices header bytes and the body out of the received payload
// (nats.go hands every message its own copy), so the body is never copied
// again: the decoded Message owns part of the payload.

const (
	codecVersion   byte = 1
	flagPersistent byte = 1 << 0
)

// errCodec is wrapped by every decode error.
var errCodec = errors.New("cluster: bad message payload")

// encodedSize is an upper bound of the encoded length of m.
func encodedSize(m *broker.Message) int {
	n := 2 + binary.MaxVarintLen64 + 3*binary.MaxVarintLen32 + len(m.ID) + len(m.Destination) + len(m.Body)
	for _, h := range m.Headers {
		n += 2*binary.MaxVarintLen32 + len(h.Key) + len(h.Value)
	}
	return n
}

// appendMessage appends the encoding of m to b.
func appendMessage(b []byte, m *broker.Message) []byte {
	var flags byte
	if m.Persistent {
		flags |= flagPersistent
	}
	b = append(b, codecVersion, flags)
	b = binary.AppendVarint(b, m.ExpiresAt)
	b = binary.AppendUvarint(b, uint64(len(m.ID)))
	b = append(b, m.ID...)
	b = binary.AppendUvarint(b, uint64(len(m.Destination)))
	b = append(b, m.Destination...)
	b = binary.AppendUvarint(b, uint64(len(m.Headers)))
	for _, h := range m.Headers {
		b = binary.AppendUvarint(b, uint64(len(h.Key)))
		b = append(b, h.Key...)
		b = binary.AppendUvarint(b, uint64(len(h.Value)))
		b = append(b, h.Value...)
	}
	return append(b, m.Body...)
}

// encodeMessage encodes m into a new payload of the right size.
func encodeMessage(m *broker.Message) []byte {
	return appendMessage(make([]byte, 0, encodedSize(m)), m)
}

// decoder walks a payload; its first error sticks.
type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s at byte %d", errCodec, what, d.off)
	}
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.off += n
	return v
}

// bytes returns the next length-prefixed field as a slice of the payload,
// its capacity clipped so that appending to it cannot overwrite what follows.
func (d *decoder) bytes(what string) []byte {
	n := d.uvarint(what)
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)-d.off) {
		d.fail(what + " length")
		return nil
	}
	end := d.off + int(n)
	v := d.b[d.off:end:end]
	d.off = end
	return v
}

// decodeMessage rebuilds the message encoded in payload. The Message keeps
// slices of payload: the caller must not reuse it.
func decodeMessage(payload []byte) (*broker.Message, error) {
	if len(payload) < 2 {
		return nil, fmt.Errorf("%w: %d bytes", errCodec, len(payload))
	}
	if payload[0] != codecVersion {
		return nil, fmt.Errorf("%w: version %d", errCodec, payload[0])
	}
	flags := payload[1]
	if flags&^flagPersistent != 0 {
		return nil, fmt.Errorf("%w: flags %#x", errCodec, flags)
	}
	d := decoder{b: payload, off: 2}
	expires, n := binary.Varint(payload[2:])
	if n <= 0 {
		return nil, fmt.Errorf("%w: expires", errCodec)
	}
	d.off += n
	id := d.bytes("id")
	dest := d.bytes("destination")
	count := d.uvarint("header count")
	// Each header takes at least two bytes: a count above that is garbage,
	// and checking it first keeps a forged count from allocating.
	if d.err == nil && count > uint64(len(payload)-d.off)/2 {
		d.fail("header count")
	}
	if d.err != nil {
		return nil, d.err
	}
	var headers []frames.Header
	if count > 0 {
		headers = make([]frames.Header, int(count))
		for i := range headers {
			headers[i].Key = d.bytes("header key")
			headers[i].Value = d.bytes("header value")
		}
		if d.err != nil {
			return nil, d.err
		}
	}
	body := payload[d.off:len(payload):len(payload)]
	return broker.RecoveredMessage(string(id), string(dest), headers, body, flags&flagPersistent != 0, expires), nil
}
